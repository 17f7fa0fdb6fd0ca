//! Shared test support for the integration tests. Use it with `mod support;`.
//!
//! - [`schema`]: validate objects against the real KubeVirt VirtualMachine CRD schema, the
//!   way kube-apiserver would (unknown fields, types, required, enums, ...).
//! - [`guest`]: render cloud-init network config with the guest's real tools
//!   (`cloud-init devel net-convert`, `netplan generate`).
//!
//! Each test binary uses only part of this, hence the `dead_code` allowances.
#![allow(dead_code)]

pub mod guest;
pub mod schema;
