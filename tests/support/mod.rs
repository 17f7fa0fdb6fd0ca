//! Shared test support for the integration tests. Use it with `mod support;`.
//!
//! - [`schema`]: validate objects against the real KubeVirt VirtualMachine CRD schema, the
//!   way kube-apiserver would (unknown fields, types, required, enums, ...).
//! - [`guest`]: render cloud-init network config with the guest's real tools
//!   (`cloud-init devel net-convert`, `netplan generate`).
//! - [`boot`]: boot a real Debian guest under qemu with the webhook's cloud-init and read back
//!   its links, addresses, routes and DNS (`guest-image/` builds that guest).
//! - [`webhook`]: the `kubevirt-net-webhook review -o json` command, and VM field helpers.
//!
//! Each test binary uses only part of this, hence the `dead_code` allowances.
#![allow(dead_code)]

pub mod boot;
pub mod guest;
pub mod schema;
pub mod webhook;
