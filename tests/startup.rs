//! Start-up against a slow API server (issue #22): while the caches are still listing,
//! `serve` is alive (`/healthz` 200, so the liveness probe leaves it alone however long a
//! large cluster takes) and not ready (`/readyz` 503, so no admission traffic reaches it);
//! it is ready as soon as the lists are in. The API server here is a stand-in on loopback
//! that holds the VM list back for a while.
mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use support::server::Ca;

/// How long the stand-in holds the VM list back.
const HELD: Duration = Duration::from_secs(4);

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An API server stand-in: empty lists at once, the VM list after [`HELD`], watches held
/// open without events. `released` is set when the VM list has been answered.
fn stand_in(released: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let released = released.clone();
            std::thread::spawn(move || connection(stream, started, &released));
        }
    });
    addr
}

fn connection(stream: TcpStream, started: Instant, released: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        if target.contains("watch=true") {
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        if target.contains("/virtualmachines?") {
            std::thread::sleep(HELD.saturating_sub(started.elapsed()));
        }
        let list =
            r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"5"},"items":[]}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{list}",
            list.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
        if target.contains("/virtualmachines?") {
            released.store(true, Ordering::SeqCst);
        }
    }
}

fn admin_status(admin: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(admin) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn alive_but_not_ready_while_the_caches_list_then_ready() {
    let released = Arc::new(AtomicBool::new(false));
    let api = stand_in(released.clone());
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf().write_to(dir.path());
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{api}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    let (listen, admin) = (free_port(), free_port());
    let _serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_kubevirt-net-webhook"))
            .arg("serve")
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg(format!("--listen={listen}"))
            .arg(format!("--admin-listen={admin}"))
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(20);
    while admin_status(admin, "/healthz") != 200 {
        assert!(Instant::now() < until, "the admin port never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // While the VM list is held back: alive, not ready, every time it is asked.
    let mut asked = 0;
    while !released.load(Ordering::SeqCst) {
        let (health, ready) = (
            admin_status(admin, "/healthz"),
            admin_status(admin, "/readyz"),
        );
        if released.load(Ordering::SeqCst) {
            break; // the answer may have been read in between
        }
        assert_eq!((health, ready), (200, 503), "while listing");
        asked += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        asked >= 5,
        "asked only {asked} times while the list was held"
    );
    // Ready once the lists are in.
    let until = Instant::now() + Duration::from_secs(10);
    while admin_status(admin, "/readyz") != 200 {
        assert!(Instant::now() < until, "not ready after the lists were in");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(admin_status(admin, "/healthz"), 200);
}
