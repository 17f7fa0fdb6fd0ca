//! Shared test support for the integration tests, benches and examples. Use it with
//! `mod support;` (benches and examples include [`fixtures`] by path).
//!
//! - [`fixtures`]: the one builder of VMs, NADs and engine/admission questions.
//! - [`schema`]: validate objects against the real KubeVirt CRD schemas, the way
//!   kube-apiserver would (unknown fields, types, required, enums, ...).
//! - [`guest`]: render cloud-init network config with the guest's real tools
//!   (`cloud-init devel net-convert`, `netplan generate`).
//! - [`server`]: certificates, a TLS/HTTP client, and an in-process server.
//! - [`boot`]: boot a real Debian guest under qemu with the webhook's cloud-init and read back
//!   its links, addresses, routes and DNS (`guest-image/` builds that guest).
//! - [`webhook`]: the `kubevirt-net-webhook review -o json` command, and VM field helpers.
//! - [`apiserver`]: a real kube-apiserver and etcd on loopback (binaries from
//!   `tests/apiserver/build.sh`), and `serve` registered with it; [`apiserver::Process`], a
//!   child process in its own group, killed with it.
//! - [`kustomize`]: `deploy/` rendered by `kubectl kustomize`.
//!
//! Each test binary uses only part of this, hence the `dead_code` allowances.
#![allow(dead_code)]

pub mod apiserver;
pub mod boot;
pub mod fixtures;
pub mod guest;
pub mod kustomize;
pub mod schema;
pub mod server;
pub mod webhook;

/// All test data lives under this folder of the repository: `cases/` (scenarios with their
/// expected behaviour at the top), `crds/` (KubeVirt's, Multus', OpenReports' and
/// prometheus-operator's CRDs),
/// `kubevirt-examples/` (KubeVirt's own example manifests, Apache-2.0).
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// A file under [`DATA`].
pub fn data(path: &str) -> std::path::PathBuf {
    std::path::Path::new(DATA).join(path)
}
