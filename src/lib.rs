//! kubevirt-net-webhook: an admission webhook that repairs and validates the networking of
//! KubeVirt VirtualMachines on Multus secondary networks.
//!
//! The decision lives in [`engine`], a pure function of the VM, the NADs it references, the
//! cluster's other VMs ([`inventory`]) and the [`config`]. The server and the CLI are shells.
pub mod admission;
pub mod annotations;
pub mod certs;
pub mod cli;
pub mod config;
pub mod engine;
pub mod inventory;
pub mod mac;
pub mod manifests;
pub mod nad;
pub mod review;
pub mod server;
pub mod vm;
