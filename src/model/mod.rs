//! The KubeVirt and Multus objects as the engine reads them, and the webhook's own
//! configuration. Pure data and parsers: no IO except [`config::Config::load`].
pub mod annotations;
pub mod config;
pub mod identity;
pub mod kinds;
pub mod mac;
pub mod nad;
pub mod pool;
pub mod text;
pub mod vm;
