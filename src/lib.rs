//! kubevirt-net-webhook: an admission webhook that repairs and validates the networking of
//! KubeVirt guests (VirtualMachines, VMIs, VMI replica sets, VM pools) on Multus secondary
//! networks.
//!
//! - [`model`]: the objects as the engine reads them (guest, NAD, annotations, MACs, config).
//! - [`inventory`]: the cluster view (NADs, other VMs' MACs and addresses) and how events and
//!   files fill it.
//! - [`engine`]: the decision, a pure function of the object, the inventory and the config.
//! - [`admission`]: the one path from an AdmissionReview (or a manifest) to its answer.
//! - [`server`] and [`cmd`]: the HTTPS shell and the command line, over the same path.
//! - [`cluster`]: whole resources listed from the API server (the caches' and `audit`'s).
pub mod admission;
pub mod cluster;
pub mod cmd;
pub mod engine;
pub mod inventory;
pub mod manifests;
pub mod model;
pub mod server;
#[cfg(test)]
mod test_log;
