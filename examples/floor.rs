//! The independent floor of `loadtest --compare` (issue #19): the empty admission webhook a
//! new user would write with stock crates, and nothing of this project's server. axum 0.8
//! served by axum-server over rustls, a multi-threaded tokio runtime, mimalloc as the webhook
//! itself runs with; it reads only `request.uid` (borrowed from the body) and allows.
//!
//! ```text
//! cargo build --release --example floor
//! target/release/examples/floor --listen 127.0.0.1:8443 --tls-cert tls.crt --tls-key tls.key
//! ```
use std::{net::SocketAddr, path::PathBuf};

use axum::{
    Json, Router,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use axum_server::tls_rustls::RustlsConfig;
use clap::Parser;
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An empty admission webhook over TLS: allows every AdmissionReview.
#[derive(Parser)]
struct Args {
    /// HTTPS address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Serving certificate chain (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Private key of the serving certificate (PEM).
    #[arg(long)]
    tls_key: PathBuf,
}

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Request<'a>,
}

#[derive(Deserialize)]
struct Request<'a> {
    uid: &'a str,
}

async fn review(body: Bytes) -> Response {
    match serde_json::from_slice::<Review>(&body) {
        Ok(review) => Json(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review.request.uid, "allowed": true},
        }))
        .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("one crypto provider");
    let tls = RustlsConfig::from_pem_file(&args.tls_cert, &args.tls_key)
        .await
        .expect("certificate and key");
    let app = Router::new()
        .route("/mutate", post(review))
        .route("/validate", post(review));
    axum_server::bind_rustls(args.listen, tls)
        .serve(app.into_make_service())
        .await
        .expect("serve");
}
