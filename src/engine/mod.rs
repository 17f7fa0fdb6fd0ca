//! The whole decision, with no IO: given a VirtualMachine, the cluster's NADs and other VMs
//! ([`Inventory`]) and the [`Config`], what patch, which warnings, which denials.
//!
//! [`mutate`] repairs what can be repaired (SPEC §2.1, §2.3, §2.4); [`validate`] denies what
//! is still wrong (SPEC §2.1, §2.2, §2.3, §2.5). Each rule lives in its own module.
use serde_json::{Value, json};

use crate::{
    annotations,
    config::Config,
    inventory::{Inventory, VmName},
    vm::{self, VirtualMachine},
};

mod addresses;
mod binding;
pub mod cloudinit;
pub mod guest_names;
mod macs;
mod names;
pub mod netconfig_v1;

/// Errors that stop the engine from deciding at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object is not a VirtualMachine the engine can read.
    #[error("cannot decode the VirtualMachine: {0}")]
    Decode(#[from] vm::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// One admission question.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub operation: Operation,
    /// The namespace the VM lives in (the request's, or the object's, or `default`).
    pub namespace: &'a str,
    pub object: &'a Value,
    /// The stored object, on UPDATE.
    pub old_object: Option<&'a Value>,
}

/// What `/mutate` answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutation {
    pub patch: json_patch::Patch,
    pub warnings: Vec<String>,
}

/// What `/validate` answers: denied when `denials` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub warnings: Vec<String>,
    pub denials: Vec<String>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.denials.is_empty()
    }

    /// The denials as one message, as kube-apiserver shows a single `status.message`.
    pub fn message(&self) -> String {
        self.denials.join("; ")
    }
}

/// The facts every rule reads.
struct Ctx<'a> {
    vm: VirtualMachine,
    /// The object as sent, for patch paths that depend on which fields are present.
    raw: &'a Value,
    namespace: &'a str,
    inventory: &'a Inventory,
    config: &'a Config,
}

impl<'a> Ctx<'a> {
    fn new(req: &Request<'a>, inventory: &'a Inventory, config: &'a Config) -> Result<Self> {
        Ok(Self {
            vm: VirtualMachine::from_value(req.object)?,
            raw: req.object,
            namespace: req.namespace,
            inventory,
            config,
        })
    }

    fn me(&self) -> VmName<'_> {
        VmName {
            namespace: self.namespace,
            name: self.vm.metadata.name.as_deref().unwrap_or(""),
        }
    }

    /// Describes another VM without revealing anything across namespaces (SPEC §2.5).
    fn describe_other(&self, other: VmName<'_>) -> String {
        if other.namespace == self.namespace {
            format!("VM {:?} in this namespace", other.name)
        } else {
            "a VM in another namespace".to_string()
        }
    }

    /// The NAD `(namespace, name)` of the VM network `network`, if it is a Multus network.
    fn nad_of(&self, network: &str) -> Option<(&str, &str)> {
        self.vm.network(network)?.nad_ref(self.namespace)
    }
}

/// JSON Patch operations, collected as values and checked into a [`json_patch::Patch`] once.
#[derive(Debug, Default)]
struct Ops(Vec<Value>);

impl Ops {
    fn add(&mut self, path: String, value: Value) {
        self.0
            .push(json!({"op": "add", "path": path, "value": value}));
    }

    fn replace(&mut self, path: String, value: Value) {
        self.0
            .push(json!({"op": "replace", "path": path, "value": value}));
    }

    fn remove(&mut self, path: String) {
        self.0.push(json!({"op": "remove", "path": path}));
    }

    fn into_patch(self) -> json_patch::Patch {
        serde_json::from_value(Value::Array(self.0)).expect("ops are well-formed JSON Patch")
    }
}

/// `/mutate`: renames, MACs, cloud-init network config. Never denies.
pub fn mutate(req: &Request<'_>, inventory: &Inventory, config: &Config) -> Result<Mutation> {
    let mut ctx = Ctx::new(req, inventory, config)?;
    if ctx.vm.annotation(annotations::MUTATE).map(str::trim) == Some("false") {
        return Ok(Mutation::default());
    }
    let old = match (req.operation, req.old_object) {
        (Operation::Update, Some(old)) => VirtualMachine::from_value(old).ok(),
        _ => None,
    };
    let mut ops = Ops::default();
    let mut warnings = Vec::new();
    names::reconcile(&mut ctx, &mut ops, &mut warnings);
    names::drop_redundant_multus_annotation(&ctx, &mut ops, &mut warnings);
    macs::assign(&mut ctx, old.as_ref(), &mut ops, &mut warnings);
    cloudinit::write(&ctx, &mut ops, &mut warnings);
    Ok(Mutation {
        patch: ops.into_patch(),
        warnings,
    })
}

/// `/validate`: everything still wrong, each denial naming the field and the fix.
pub fn validate(req: &Request<'_>, inventory: &Inventory, config: &Config) -> Result<Verdict> {
    let ctx = Ctx::new(req, inventory, config)?;
    let mut verdict = Verdict::default();
    names::check(&ctx, &mut verdict);
    binding::check(&ctx, &mut verdict);
    macs::check(&ctx, &mut verdict);
    addresses::check(&ctx, &mut verdict);
    cloudinit::check(&ctx, &mut verdict);
    Ok(verdict)
}
