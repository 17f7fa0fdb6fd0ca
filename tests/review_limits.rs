//! Issue #12, `review` on hostile input: symlink loops, deep flow nesting, oversized files.
//! Each runs the binary with a time bound and expects a clear answer (exit 2 naming the
//! file, or every VM once).
use std::{
    io::Write as _,
    path::Path,
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static-ip-vm.yaml");

/// Runs `review` with `args` (and `stdin`), killing it if it takes longer than `limit`.
fn review(args: &[&str], stdin: Option<Vec<u8>>, limit: Duration) -> (Output, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubevirt-net-webhook"))
        .arg("review")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes); // the child may stop reading at its limit
        });
    }
    let pid = child.id();
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => (output.unwrap(), started.elapsed()),
        Err(_) => {
            // Only the child this test started, by its pid.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("review {args:?} still running after {limit:?}");
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn symlink_loops_end_and_every_file_is_read_once() {
    // Before: `loop -> .` counted the same VM 41 times; two such links walked 2^40 paths.
    let dir = tempfile::tempdir().unwrap();
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();
    std::fs::copy(EXAMPLE, vms.join("vm.yaml")).unwrap();
    symlink(".", vms.join("loop"));
    symlink(".", vms.join("a"));
    symlink(".", vms.join("b"));
    symlink("..", vms.join("up"));
    symlink("vm.yaml", vms.join("same-file.yaml"));
    let (o, took) = review(
        &["-f", vms.to_str().unwrap(), "-o", "json"],
        None,
        Duration::from_secs(20),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.ends_with("1 allowed, 0 denied\n"), "{err}");
    let printed = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        printed.matches("\"kind\": \"VirtualMachine\"").count(),
        1,
        "the VM is printed once: {printed}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A link that loops on itself is an input error naming it, not a hang.
    let lonely = dir.path().join("lonely");
    std::fs::create_dir(&lonely).unwrap();
    symlink("self.yaml", lonely.join("self.yaml"));
    let (o, _) = review(
        &["-f", lonely.to_str().unwrap()],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("self.yaml"), "{}", stderr(&o));
}

#[test]
fn deep_flow_nesting_is_refused_at_once() {
    // Before: 40,000 nested `[` (80 kB) took 3.7 s in libyaml, quadratic in the depth.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    let n = 200_000;
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: A\nx: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        ),
    )
    .unwrap();
    let (o, took) = review(
        &["-f", path.to_str().unwrap()],
        None,
        Duration::from_secs(20),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("deep.yaml, line 3: flow collections") && err.contains("deeper than 128"),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // JSON too (one line, all flow), and on stdin.
    let json = format!("{}{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes();
    let (o, took) = review(&["-f", "-"], Some(json), Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("<stdin>, line 1"), "{}", stderr(&o));
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn oversized_inputs_are_refused_naming_them() {
    // Before: no limit, and parsing takes up to ~80x the input in memory.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let nine_mib = format!("apiVersion: v1\nkind: A\nx: \"{}\"\n", "y".repeat(9 << 20));
    std::fs::write(&big, &nine_mib).unwrap();
    let (o, _) = review(
        &["-f", big.to_str().unwrap()],
        None,
        Duration::from_secs(20),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("big.yaml: larger than 8 MiB, the limit for one input file"),
        "{err}"
    );
    let (o, _) = review(
        &["-f", "-"],
        Some(nine_mib.into_bytes()),
        Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("<stdin>: larger than 8 MiB"),
        "{}",
        stderr(&o)
    );

    // Many files under the per-file limit: the walk stops at the total.
    let many = dir.path().join("many");
    std::fs::create_dir(&many).unwrap();
    let seven_mib = format!("apiVersion: v1\nkind: A\nx: \"{}\"\n", "z".repeat(7 << 20));
    for i in 0..5 {
        std::fs::write(many.join(format!("part-{i}.yaml")), &seven_mib).unwrap();
    }
    let (o, _) = review(
        &["-f", many.to_str().unwrap()],
        None,
        Duration::from_secs(30),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("more than 32 MiB of manifests in all") && err.contains("part-4.yaml"),
        "{err}"
    );
}
