//! Certificate rotation as kubelet does it for Secret volumes: timestamped directories, a
//! `..data` symlink swapped atomically, and `tls.crt`/`tls.key` linking through `..data`.
mod support;

use std::{
    os::unix::fs::symlink,
    path::Path,
    time::{Duration, Instant},
};

use rustls::pki_types::CertificateDer;
use support::server::{Leaf, Running};

/// Writes a new timestamped directory and points `..data` at it with an atomic rename.
fn publish(dir: &Path, stamp: &str, cert_pem: &str, key_pem: &str) {
    let target = format!("..2026_11_23_00_00_00.{stamp}");
    std::fs::create_dir(dir.join(&target)).unwrap();
    std::fs::write(dir.join(&target).join("tls.crt"), cert_pem).unwrap();
    std::fs::write(dir.join(&target).join("tls.key"), key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(&target, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

fn kubelet_layout(dir: &Path, leaf: &Leaf) {
    publish(dir, "1", &leaf.cert_pem, &leaf.key_pem);
    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    symlink("..data/tls.key", dir.join("tls.key")).unwrap();
}

/// Opens new connections until one presents `expected`, for at most `within`.
async fn presented_within(
    server: &Running,
    expected: &CertificateDer<'_>,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(der) =
            support::server::peer_certificate(server.addr, server.client_config()).await
            && der == *expected
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn reload_count(metrics: &str, result: &str) -> u64 {
    let prefix = format!("kubevirt_net_webhook_certificate_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

async fn rotate_and_check(poll: Duration) {
    let first = std::sync::OnceLock::new();
    let server = Running::start(|args, ca, dir| {
        let secret = dir.join("secret");
        std::fs::create_dir(&secret).unwrap();
        let leaf = ca.leaf();
        kubelet_layout(&secret, &leaf);
        first.set(leaf.der).unwrap();
        args.tls_cert = secret.join("tls.crt");
        args.tls_key = secret.join("tls.key");
        args.cert_poll_interval = poll;
    })
    .await;
    let secret = server.dir.path().join("secret");
    let first = first.into_inner().unwrap();
    assert_eq!(
        support::server::peer_certificate(server.addr, server.client_config())
            .await
            .unwrap(),
        first
    );
    // Two rotations: the second one is what a watch on the file paths alone would miss.
    let mut last = None;
    for stamp in ["2", "3"] {
        let leaf = server.ca.leaf();
        publish(&secret, stamp, &leaf.cert_pem, &leaf.key_pem);
        assert!(
            presented_within(&server, &leaf.der, Duration::from_secs(15)).await,
            "rotation {stamp} not picked up"
        );
        last = Some(leaf);
    }
    let last = last.unwrap();

    // A certificate with the previous key: rejected, the previous pair keeps serving.
    let errors = reload_count(&server.metrics().await, "error");
    let mismatched = server.ca.leaf();
    publish(&secret, "4", &mismatched.cert_pem, &last.key_pem);
    let deadline = Instant::now() + Duration::from_secs(15);
    while reload_count(&server.metrics().await, "error") == errors {
        assert!(Instant::now() < deadline, "the bad pair was never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        support::server::peer_certificate(server.addr, server.client_config())
            .await
            .unwrap(),
        last.der
    );
    let metrics = server.metrics().await;
    assert!(reload_count(&metrics, "success") >= 3, "{metrics}");
    server.assert_healthy().await;
}

/// Directory watch (with a long poll so that the watch must do it).
#[tokio::test]
async fn rotation_by_directory_watch() {
    rotate_and_check(Duration::from_secs(3600)).await;
}

/// Polling alone also picks rotations up (e.g. where inotify is unavailable).
#[tokio::test]
async fn rotation_by_polling() {
    rotate_and_check(Duration::from_millis(500)).await;
}
