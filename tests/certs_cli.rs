//! `kubevirt-net-webhook certs` end to end: the real binary writes files that openssl accepts.
//!
//! Needs the `openssl` CLI (Debian package `openssl`); the tests fail, not skip, without it,
//! because a certificate nobody verified is the thing this test exists to catch.
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kubevirt-net-webhook");

fn certs(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("certs")
        .args(args)
        .output()
        .expect("run kubevirt-net-webhook")
}

fn openssl(args: &[&str]) -> Output {
    match Command::new("openssl").args(args).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run the openssl CLI ({e}); install it (Debian package `openssl`) to run this test"
        ),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn generate_into(dir: &Path) {
    let out = certs(&[
        "--service",
        "kubevirt-net-webhook",
        "--namespace",
        "kubevirt-net-webhook",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "certs failed: {}", text(&out.stderr));
}

#[test]
fn writes_a_chain_openssl_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out"); // does not exist yet: certs must create it
    generate_into(&dir);

    let ca = dir.join("ca.crt");
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let verify = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        ca.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(
        verify.status.success() && text(&verify.stdout).contains(": OK"),
        "openssl verify failed: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );

    let san = openssl(&[
        "x509",
        "-in",
        crt.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(san.status.success(), "{}", text(&san.stderr));
    let san = text(&san.stdout);
    for name in [
        "DNS:kubevirt-net-webhook.kubevirt-net-webhook.svc",
        "DNS:kubevirt-net-webhook.kubevirt-net-webhook.svc.cluster.local",
    ] {
        // Compare whole entries: the .svc name is a prefix of the .svc.cluster.local one.
        assert!(
            san.split([',', '\n']).any(|entry| entry.trim() == name),
            "{name} missing from subjectAltName: {san}"
        );
    }

    // The key belongs to the certificate: same public key.
    let from_cert = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-pubkey"]);
    let from_key = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert!(from_cert.status.success() && from_key.status.success());
    assert_eq!(text(&from_cert.stdout), text(&from_key.stdout));

    // The CA is a CA; the serving certificate is not.
    let ca_text = openssl(&["x509", "-in", ca.to_str().unwrap(), "-noout", "-text"]);
    assert!(text(&ca_text.stdout).contains("CA:TRUE"));
    let crt_text =
        text(&openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-text"]).stdout);
    assert!(crt_text.contains("CA:FALSE"), "{crt_text}");
    assert!(
        crt_text.contains("TLS Web Server Authentication"),
        "{crt_text}"
    );
    assert!(crt_text.contains("prime256v1"), "{crt_text}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tls.key must be private");
    }
}

#[test]
fn refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    generate_into(tmp.path());
    let before = std::fs::read(tmp.path().join("tls.crt")).unwrap();

    let out = certs(&[
        "--service",
        "kubevirt-net-webhook",
        "--namespace",
        "kubevirt-net-webhook",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(tmp.path().join("tls.crt")).unwrap(), before);

    let out = certs(&[
        "--service",
        "kubevirt-net-webhook",
        "--namespace",
        "kubevirt-net-webhook",
        "--out",
        tmp.path().to_str().unwrap(),
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(std::fs::read(tmp.path().join("tls.crt")).unwrap(), before);
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--service", "Web_Hook", "--namespace", "ns", "--out", dir],
            &["error:", "--service", "\"Web_Hook\"", "DNS-1035"],
        ),
        (
            &["--service", "hook", "--namespace", "ns.x", "--out", dir],
            &["error:", "--namespace", "\"ns.x\"", "DNS-1123"],
        ),
        (&["--service", "hook", "--namespace", ""], &["--out"]),
        (
            &[
                "--service",
                "hook",
                "--namespace",
                "ns",
                "--out",
                dir,
                "--days",
                "0",
            ],
            &["--days"],
        ),
    ];
    for (args, expected) in cases {
        let out = certs(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for needle in *expected {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in {stderr}"
            );
        }
    }
    // Nothing was written by the failed runs.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
