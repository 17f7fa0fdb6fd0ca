//! The real server, in-process over TLS: answers, the bad-input catalog, probes, metrics,
//! shutdown. Certificate rotation is in `server_rotation.rs`.
mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine as _;
use hyper::StatusCode;
use kubevirt_net_webhook::{
    cmd::review::{self, Output, ReviewArgs},
    manifests,
    server::{ServeArgs, Server},
};
use serde_json::{Value, json};
use support::server::{CASES, Http, Running};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The AdmissionReview kube-apiserver sends for `vm` in `namespace`.
fn request_for(
    uid: &str,
    operation: &str,
    namespace: &str,
    vm: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let mut review = support::fixtures::admission_review(
        "admission.k8s.io/v1",
        uid,
        operation,
        Some(vm),
        old,
        dry_run,
    );
    review["request"]["namespace"] = json!(namespace);
    review
}

fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(CASES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "test data missing under {CASES}");
    files
}

/// What `review -o patch` prints for one file, with the same NADs and VMs as the server.
fn review_patches(file: &Path) -> (Vec<Value>, String) {
    let args = ReviewArgs {
        files: vec![file.to_path_buf()],
        nads: Some(CASES.into()),
        vms: Some(CASES.into()),
        config: None,
        enforcement: None,
        output: Output::Patch,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    review::review(&args, &mut out, &mut err).unwrap();
    let patches = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (patches, String::from_utf8(err).unwrap())
}

fn patch_of(response: &Value) -> Value {
    match response.get("patch").and_then(Value::as_str) {
        None => json!([]),
        Some(b64) => serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap(),
    }
}

fn vms_of(file: &Path) -> Vec<Value> {
    manifests::read_path(file)
        .unwrap()
        .into_iter()
        .filter(|d| d.kind() == "VirtualMachine")
        .map(|d| d.value)
        .collect()
}

#[tokio::test]
async fn answers_match_review_over_tls() {
    let server = Running::start(|_, _, _| {}).await;
    let mut http = server.http().await;
    let mut denied = Vec::new();
    for file in case_files() {
        let (expected, stderr) = review_patches(&file);
        let vms = vms_of(&file);
        assert_eq!(vms.len(), expected.len(), "{}", file.display());
        for (i, (vm, expected)) in vms.iter().zip(&expected).enumerate() {
            let ns = vm["metadata"]["namespace"].as_str().unwrap_or("default");
            let uid = format!("uid-{}-{i}", file.file_name().unwrap().to_string_lossy());
            let request = request_for(&uid, "CREATE", ns, vm, None, false);
            let (status, review) = http.post_json("/mutate", &request).await;
            assert_eq!(status, StatusCode::OK, "{review}");
            let response = &review["response"];
            assert_eq!(response["uid"], json!(uid));
            assert_eq!(review["apiVersion"], json!("admission.k8s.io/v1"));
            assert_eq!(&patch_of(response), expected, "{}", file.display());

            // Server-side dry run gets exactly the same answer.
            let dry = request_for(&uid, "CREATE", ns, vm, None, true);
            assert_eq!(http.post_json("/mutate", &dry).await.1, review);

            // The mutated object is stable: mutating it again changes nothing.
            let mut mutated = vm.clone();
            let patch: json_patch::Patch = serde_json::from_value(expected.clone()).unwrap();
            json_patch::patch(&mut mutated, &patch).unwrap();
            let again = request_for(&uid, "CREATE", ns, &mutated, None, false);
            let (_, review2) = http.post_json("/mutate", &again).await;
            assert_eq!(
                patch_of(&review2["response"]),
                json!([]),
                "{}",
                file.display()
            );

            let (status, v) = http.post_json("/validate", &again).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(v["response"]["uid"], json!(uid));
            let allowed = v["response"]["allowed"].as_bool().unwrap();
            assert_eq!(
                allowed,
                !stderr.contains("denied:"),
                "{}: {v}",
                file.display()
            );
            if !allowed {
                denied.push((file.clone(), v["response"]["status"]["message"].clone()));
            }
        }
    }
    let [(file, message)] = denied.as_slice() else {
        panic!("exactly one case is denied: {denied:?}");
    };
    assert!(file.ends_with("macvlan-bridge-denied.yaml"));
    let message = message.as_str().unwrap();
    assert!(
        message.contains("macvlan") && message.contains("external"),
        "{message}"
    );
    server.assert_healthy().await;
}

#[tokio::test]
async fn other_kinds_pass_untouched_and_http2_works() {
    let server = Running::start(|_, _, _| {}).await;
    let pod = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "pod-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE", "object": {"metadata": {"name": "p"}, "spec": {}}}});

    let mut h2 = support::server::Http::tls(server.addr, server.ca.client_config(&[b"h2"])).await;
    assert!(h2.is_h2(), "ALPN must negotiate h2");
    for path in ["/mutate", "/validate"] {
        let (status, review) = h2.post_json(path, &pod).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            review["response"],
            json!({"uid": "pod-1", "allowed": true, "status": {}})
        );
    }
    // HTTP/2 carries VM reviews too, several on one connection.
    let vm = &vms_of(&PathBuf::from(CASES).join("macvlan-bridge-denied.yaml"))[0];
    for i in 0..3 {
        let req = request_for(&format!("h2-{i}"), "CREATE", "default", vm, None, false);
        let (status, review) = h2.post_json("/validate", &req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(review["response"]["allowed"], json!(false));
        assert_eq!(review["response"]["uid"], json!(format!("h2-{i}")));
    }
    // A client offering both gets h2; one offering only HTTP/1.1 gets that.
    let both =
        support::server::tls_connect(server.addr, server.ca.client_config(&[b"h2", b"http/1.1"]))
            .await
            .unwrap();
    assert_eq!(both.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert!(!server.http().await.is_h2());
}

#[tokio::test]
async fn bad_input_catalog() {
    let server = Running::start(|args, _, _| {
        args.header_read_timeout = Duration::from_secs(1);
        args.request_timeout = Duration::from_secs(2);
    })
    .await;
    let mut http = server.http().await;

    // Not JSON, not an AdmissionReview, no request: 400 with a short text.
    for body in [
        b"{not json".to_vec(),
        br#"{"apiVersion": "v1", "kind": "Pod"}"#.to_vec(),
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(),
    ] {
        let (status, text) = http.send("POST", "/mutate", body).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!text.is_empty() && text.len() < 200, "{text:?}");
    }
    server.assert_healthy().await;

    // A VM that does not decode: 200, denied, uid echoed, on both endpoints.
    let broken = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"template": {"spec": {"networks": "not-a-list"}}}});
    for path in ["/mutate", "/validate"] {
        let req = request_for("broken-1", "CREATE", "default", &broken, None, false);
        let (status, review) = http.post_json(path, &req).await;
        assert_eq!(status, StatusCode::OK, "{review}");
        assert_eq!(review["response"]["uid"], json!("broken-1"));
        assert_eq!(review["response"]["allowed"], json!(false));
    }
    // A request whose fields have the wrong types still gets its uid back.
    let odd = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "odd-1", "kind": 5, "operation": ["CREATE"]}});
    let (status, review) = http.post_json("/validate", &odd).await;
    assert_eq!(
        (status, &review["response"]["uid"]),
        (StatusCode::OK, &json!("odd-1"))
    );

    // Wrong method, wrong path.
    assert_eq!(http.get("/mutate").await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        http.get("/validate").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(http.get("/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        http.send("POST", "/healthz", "x").await.unwrap().0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // 20 MiB: refused, whether announced by Content-Length or not (HTTP/2 streams it). The
    // server may answer 413 and close before the client has written it all: then the client
    // sees its write cut off instead of the answer. Either way nothing is decoded.
    let big = vec![b' '; 20 << 20];
    let refused = |result: Result<(StatusCode, hyper::body::Bytes), hyper::Error>| match result {
        Ok((status, _)) => assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_body_write_aborted() || e.to_string().contains("body write") || e.is_closed(),
            "{e:?}"
        ),
    };
    refused(
        server
            .http()
            .await
            .send("POST", "/mutate", big.clone())
            .await,
    );
    let mut h2 = Http::tls(server.addr, server.ca.client_config(&[b"h2"])).await;
    refused(h2.send("POST", "/validate", big).await);
    server.assert_healthy().await;

    // Half a request's headers, then silence: closed by the header read timeout.
    let mut slow = support::server::tls_connect(server.addr, server.client_config())
        .await
        .unwrap();
    slow.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Len")
        .await
        .unwrap();
    assert_closed_within(&mut slow, Duration::from_secs(10)).await;
    // Headers, then half the body: 408 (or closed) by the request timeout.
    let mut slow = support::server::tls_connect(server.addr, server.client_config())
        .await
        .unwrap();
    slow.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"api",
    )
    .await
    .unwrap();
    let text = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A TCP client that never starts TLS: closed by the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert_closed_within(&mut silent, Duration::from_secs(10)).await;
    // Plain HTTP on the TLS port: never a 200.
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_closed(&mut plain, Duration::from_secs(10)).await;
    assert!(!text.contains(" 200 "), "{text}");

    server.assert_healthy().await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("kubevirt_net_webhook_requests_total{endpoint=\"mutate\",operation=\"CREATE\",allowed=\"false\",dry_run=\"false\"} 1"),
        "{metrics}"
    );
}

async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {within:?}"
    );
    String::from_utf8_lossy(&buf).into_owned()
}

async fn assert_closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) {
    let text = read_until_closed(s, within).await;
    assert!(!text.contains(" 200 "), "{text}");
}

#[tokio::test]
async fn probes_metrics_and_shutdown() {
    let mut server = Running::start(|args, _, _| {
        args.shutdown_delay = Duration::from_secs(30);
    })
    .await;
    let mut admin = Http::plain(server.admin).await;
    assert_eq!(admin.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(server.http().await.get("/readyz").await.0, StatusCode::OK);

    let vm = &vms_of(&PathBuf::from(CASES).join("seed-wukong-static-ip.yaml"))[0];
    let mut http = server.http().await;
    for dry_run in [false, true] {
        let req = request_for("m-1", "CREATE", "default", vm, None, dry_run);
        assert_eq!(http.post_json("/mutate", &req).await.0, StatusCode::OK);
    }
    let metrics = admin.get("/metrics").await.1;
    let nads = manifests::read_path(Path::new(CASES))
        .unwrap()
        .iter()
        .filter(|d| d.kind() == "NetworkAttachmentDefinition")
        .count();
    let nad_objects = format!("kubevirt_net_webhook_cache_objects{{kind=\"nad\"}} {nads}");
    for needle in [
        "kubevirt_net_webhook_requests_total{endpoint=\"mutate\",operation=\"CREATE\",allowed=\"true\",dry_run=\"false\"} 1",
        "kubevirt_net_webhook_requests_total{endpoint=\"mutate\",operation=\"CREATE\",allowed=\"true\",dry_run=\"true\"} 1",
        "kubevirt_net_webhook_request_duration_seconds_count{endpoint=\"mutate\"} 2",
        "kubevirt_net_webhook_requests_in_flight 0",
        "kubevirt_net_webhook_cache_ready{kind=\"nad\"} 1",
        "kubevirt_net_webhook_cache_ready{kind=\"vm\"} 1",
        nad_objects.as_str(),
        "kubevirt_net_webhook_certificate_reloads_total{result=\"success\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    let expiry = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubevirt_net_webhook_certificate_expiry_timestamp_seconds "))
        .unwrap();
    assert!(expiry.parse::<i64>().unwrap() > 1_700_000_000, "{expiry}");

    // Shutdown: not ready at once, still answering during the delay.
    server.stop();
    let mut ready = StatusCode::OK;
    for _ in 0..100 {
        ready = admin.get("/readyz").await.0;
        if ready != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    let req = request_for("late", "CREATE", "default", vm, None, false);
    let (status, review) = http.post_json("/mutate", &req).await;
    assert_eq!(
        (status, &review["response"]["uid"]),
        (StatusCode::OK, &json!("late"))
    );
}

#[tokio::test]
async fn shutdown_drains_and_stops_listening() {
    let mut server = Running::start(|_, _, _| {}).await;
    let mut http = server.http().await;
    assert_eq!(http.get("/healthz").await.0, StatusCode::OK);
    server.stop();
    // The idle keep-alive connection is closed and the server task ends, well before the
    // drain timeout.
    let task = server.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(4), task)
        .await
        .expect("drained")
        .unwrap();
    assert!(http.send("GET", "/healthz", "").await.is_err());
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn bad_config_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "macPrefix: \"03\"\n").unwrap();
    let mut args = ServeArgs::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    args.config = Some(config);
    args.nads = Some(CASES.into());
    args.vms = Some(CASES.into());
    args.listen = "127.0.0.1:0".parse().unwrap();
    args.admin_listen = "127.0.0.1:0".parse().unwrap();
    let e = Server::bind(args).await.unwrap_err().to_string();
    assert!(e.contains("macPrefix") && e.contains("config.yaml"), "{e}");
}

#[tokio::test]
async fn not_ready_without_a_certificate_until_one_appears() {
    let server = Running::start(|args, _, dir| {
        args.tls_cert = dir.join("later.crt");
        args.tls_key = dir.join("later.key");
        args.cert_poll_interval = Duration::from_millis(200);
    })
    .await;
    let mut admin = Http::plain(server.admin).await;
    assert_eq!(
        admin.get("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        support::server::tls_connect(server.addr, server.client_config())
            .await
            .is_err(),
        "no certificate, no handshake"
    );
    let leaf = server.ca.leaf();
    std::fs::write(server.dir.path().join("later.key"), &leaf.key_pem).unwrap();
    std::fs::write(server.dir.path().join("later.crt"), &leaf.cert_pem).unwrap();
    let mut ready = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..150 {
        ready = admin.get("/readyz").await.0;
        if ready == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::OK);
    let presented = support::server::peer_certificate(server.addr, server.client_config())
        .await
        .unwrap();
    assert_eq!(presented, leaf.der);
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight() {
    let mut server = Running::start(|_, _, _| {}).await;
    let vm = &vms_of(&PathBuf::from(CASES).join("seed-wukong-static-ip.yaml"))[0];
    let body = request_for("in-flight", "CREATE", "default", vm, None, false).to_string();
    let (head, tail) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = support::server::tls_connect(server.addr, server.client_config())
        .await
        .unwrap();
    let headers = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(headers.as_bytes()).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.flush().await.unwrap();
    // Ordering only: let the server parse the headers before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The server waits for the request: `run` has not returned.
    assert!(!server.task.as_ref().unwrap().is_finished());
    stream.write_all(tail).await.unwrap();
    stream.flush().await.unwrap();
    let text = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"uid\":\"in-flight\""), "{text}");
    let task = server.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("drained")
        .unwrap();
}

/// SPEC §2.11 over TLS: `/validate/warn` allows what `/validate` denies, with the denial as
/// a warning; an UPDATE keeping a stored violation is ratcheted; each answer lists its
/// violations in `auditAnnotations`, and the metric counts them per rule and action.
#[tokio::test]
async fn warn_endpoint_ratcheting_audit_annotations_and_metrics() {
    let server = Running::start(|_, _, _| {}).await;
    let mut http = server.http().await;
    let vm = &vms_of(&PathBuf::from(CASES).join("macvlan-bridge-denied.yaml"))[0];
    let create = request_for("v-1", "CREATE", "default", vm, None, false);
    let (_, denied) = http.post_json("/validate", &create).await;
    let (status, warned) = http.post_json("/validate/warn", &create).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(denied["response"]["allowed"], false, "{denied}");
    assert_eq!(warned["response"]["allowed"], true, "{warned}");
    let message = denied["response"]["status"]["message"].as_str().unwrap();
    let warnings = warned["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().ends_with(message)
                && w.as_str().unwrap().contains("[bridge-binding]")),
        "{warned}"
    );
    let update = request_for("v-2", "UPDATE", "default", vm, Some(vm), false);
    let (_, ratcheted) = http.post_json("/validate", &update).await;
    assert_eq!(ratcheted["response"]["allowed"], true, "{ratcheted}");
    for (answer, action) in [
        (&denied, "deny"),
        (&warned, "warn"),
        (&ratcheted, "ratchet"),
    ] {
        let audit = answer["response"]["auditAnnotations"]["violations"]
            .as_str()
            .unwrap_or_else(|| panic!("no audit annotation: {answer}"));
        let audit: Value = serde_json::from_str(audit).unwrap();
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["rule"] == "bridge-binding" && v["action"] == action),
            "{audit}"
        );
    }
    let metrics = server.metrics().await;
    for action in ["deny", "warn", "ratchet"] {
        let line = format!(
            "kubevirt_net_webhook_violations_total{{rule=\"bridge-binding\",action=\"{action}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    assert!(metrics.contains(
        "kubevirt_net_webhook_violations_total{rule=\"mac-conflict\",action=\"deny\"} 0"
    ));
    assert!(metrics.contains(
        "kubevirt_net_webhook_requests_total{endpoint=\"validate/warn\",operation=\"CREATE\",allowed=\"true\",dry_run=\"false\"} 1"
    ));
}
