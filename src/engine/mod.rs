//! The whole decision, with no IO: given a guest (any kind of SPEC §2.8), the cluster's NADs
//! and other VMs ([`Inventory`]) and the [`Config`], what patch, which warnings, which denials.
//!
//! [`mutate`] repairs what can be repaired; [`validate`] denies what is still wrong. Each rule
//! lives in its own module, named as in SPEC:
//!
//! | SPEC | module | mutate | validate |
//! |---|---|---|---|
//! | §2.1 name reconciliation | [`names`] | renames, drops the redundant Multus annotation | unpaired and duplicate names |
//! | §2.2 binding/CNI compatibility | [`binding`] | | bridge on macvlan/ipvlan, missing NADs |
//! | §2.3 deterministic MACs | [`macs`] | MACs | bad and conflicting MACs |
//! | §2.4 cloud-init network config | [`cloudinit`], [`guest_names`] | network config | oversized config |
//! | §2.5 requested addresses | [`addresses`] | (read by cloudinit) | bad and conflicting addresses |
//! | §2.7 tenant boundary | [`tenancy`] | (forbidden NADs are invisible) | forbidden NAD references |
//! | §2.8 every kind | [`kinds`] | templates: names only | MACs and addresses in shared templates |
//! | §2.10 address pools | [`pools`] | pool addresses into the networks annotation | full pools |
//! | limits | [`limits`] | nothing beyond them (warning) | beyond them |
use std::{borrow::Cow, collections::BTreeMap};

use kube::core::{DynamicObject, admission::Operation};

use crate::{
    inventory::{Inventory, VmName},
    model::{
        annotations::{self, AddressRequest},
        config::Config,
        kinds::Kind,
        nad::{Nad, NadRef},
        vm::{self, Vm},
    },
};

mod addresses;
mod binding;
mod by_name;
pub mod cloudinit;
pub mod guest_names;
mod kinds;
mod limits;
mod macs;
mod names;
pub mod patch;
pub mod pools;
mod tenancy;
pub mod violations;

use patch::Ops;
use violations::{Findings, Keys, Stored};
pub use violations::{Rule, Violation};

/// Errors that stop the engine from deciding at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object is not a guest the engine can read.
    #[error("cannot decode the {kind}: {source}")]
    Decode {
        kind: &'static str,
        source: vm::Error,
    },
    /// The patch's text did not read back as a JSON Patch (a bug: the engine writes it).
    #[error("the patch written is not a JSON Patch: {source}")]
    Patch { source: serde_json::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One admission question: a CREATE or UPDATE of one of our kinds.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub kind: Kind,
    pub operation: &'a Operation,
    /// The namespace the object lives in (see [`crate::model::kinds::namespace`]).
    pub namespace: &'a str,
    pub object: Object<'a>,
    /// The stored object, on UPDATE.
    pub old_object: Option<Object<'a>>,
}

/// An object as the engine is given it: kube's tree, or the guest view already read from
/// the request's text in one pass (see `admission::read`).
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    Tree(&'a DynamicObject),
    View(&'a Vm<'a>),
}

impl<'a> Object<'a> {
    /// The guest view of the object, as a `kind`.
    fn vm(self, kind: Kind) -> vm::Result<Cow<'a, Vm<'a>>> {
        match self {
            Object::Tree(object) => Vm::from_object(kind, object).map(Cow::Owned),
            Object::View(vm) => Ok(Cow::Borrowed(vm)),
        }
    }

    /// `metadata.deletionTimestamp` is set.
    fn deleting(self) -> bool {
        match self {
            Object::Tree(object) => object.metadata.deletion_timestamp.is_some(),
            Object::View(vm) => vm.deleting,
        }
    }
}

/// What `/mutate` answers, its patch as the answer carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchText {
    /// The JSON Patch's text; empty when nothing changes.
    pub patch: Vec<u8>,
    pub warnings: Vec<String>,
}

/// What `/mutate` answers, its patch decoded ([`mutate`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutation {
    pub patch: json_patch::Patch,
    pub warnings: Vec<String>,
}

/// What `/validate` answers: denied when `denials` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub warnings: Vec<String>,
    pub denials: Vec<Violation>,
    /// Violations the stored object has too (SPEC §2.11): allowed, with a warning each.
    pub ratcheted: Vec<Violation>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.denials.is_empty()
    }

    /// The denials as one message, as kube-apiserver shows a single `status.message`.
    pub fn message(&self) -> String {
        let messages: Vec<&str> = self.denials.iter().map(|v| v.message.as_str()).collect();
        messages.join("; ")
    }
}

/// The facts every rule reads.
struct Ctx<'a> {
    /// Borrowed when the request was read in one pass; a rule that changes it (a rename, an
    /// annotation) copies it then.
    vm: Cow<'a, Vm<'a>>,
    /// The stored object, on UPDATE (when it decodes).
    old: Option<Cow<'a, Vm<'a>>>,
    namespace: &'a str,
    inventory: &'a Inventory,
    config: &'a Config,
    /// The `kubevirt-net-webhook.io/networks` annotation, parsed once per decision: several
    /// rules read it, and pools (SPEC §2.10) add to it.
    requests: annotations::Result<Requests>,
}

/// Requested addresses by VM network name.
pub(super) type Requests = BTreeMap<String, AddressRequest>;

impl<'a> Ctx<'a> {
    fn new(req: &Request<'a>, inventory: &'a Inventory, config: &'a Config) -> Result<Self> {
        let old = match (req.operation, req.old_object) {
            (Operation::Update, Some(old)) => old.vm(req.kind).ok(),
            _ => None,
        };
        let vm = req.object.vm(req.kind).map_err(|source| Error::Decode {
            kind: req.kind.name(),
            source,
        })?;
        Ok(Self {
            requests: parse_requests(&vm),
            vm,
            old,
            namespace: req.namespace,
            inventory,
            config,
        })
    }

    /// Sets the networks annotation to `text` (pools, SPEC §2.10), keeping the parsed copy
    /// in step.
    fn set_networks_annotation(&mut self, text: String) {
        self.vm
            .to_mut()
            .annotations
            .insert(annotations::NETWORKS.into(), text.into());
        self.requests = parse_requests(&self.vm);
    }

    fn me(&self) -> VmName<'_> {
        VmName {
            namespace: self.namespace,
            name: self.vm.name.as_deref().unwrap_or(""),
        }
    }

    /// Describes another VM without revealing anything across namespaces (SPEC §2.7).
    fn describe_other(&self, other: VmName<'_>) -> String {
        describe_other(self.namespace, other)
    }

    /// The NAD reference of the VM network `network`, if it is a Multus network.
    fn nad_of(&self, network: &str) -> Option<NadRef<'_>> {
        self.vm.network(network)?.nad_ref(self.namespace)
    }

    /// The NAD behind `r` as this VM may see it: `None` when it does not exist or when the
    /// tenant boundary forbids it, so that no rule depends on a forbidden NAD (SPEC §2.7).
    fn nad(&self, r: NadRef<'_>) -> Option<&'a Nad> {
        match tenancy::access(self, r) {
            tenancy::Access::Allowed(nad) => nad,
            tenancy::Access::Forbidden => None,
        }
    }

    /// Whether the tenant boundary forbids `r`: then nothing about it (other VMs on it
    /// included) may shape an answer.
    fn forbidden(&self, r: NadRef<'_>) -> bool {
        matches!(tenancy::access(self, r), tenancy::Access::Forbidden)
    }

    /// An UPDATE of a VM that runs and stays running (SPEC §2.9): its VMI exists (the stored
    /// object's `status.created`) and the update does not stop it. KubeVirt marks such a VM
    /// `RestartRequired` when its cloud-init volume changes.
    fn running_update(&self) -> bool {
        self.old.as_ref().is_some_and(|old| old.created) && !self.vm.halted
    }

    /// `namespace/name`, as the managed marker names the VM.
    fn identity(&self) -> String {
        format!(
            "{}/{}",
            self.namespace,
            self.vm.name.as_deref().unwrap_or("")
        )
    }

    /// Whether the user opted this guest out of mutation (SPEC §2.6).
    fn mutation_disabled(&self) -> bool {
        self.vm.annotation(annotations::MUTATE).map(str::trim) == Some("false")
    }
}

/// How a message to a guest in `namespace` names `other`: by name in the same namespace,
/// not at all in another (SPEC §2.7). `audit` replaces these words for administrators.
pub fn describe_other(namespace: &str, other: VmName<'_>) -> String {
    if other.namespace == namespace {
        format!("VM {:?} in this namespace", other.name)
    } else {
        "a VM in another namespace".to_string()
    }
}

fn parse_requests(vm: &Vm) -> annotations::Result<Requests> {
    vm.annotation(annotations::NETWORKS)
        .map_or_else(|| Ok(Requests::new()), annotations::parse_networks)
}

/// `/mutate`: renames, MACs, cloud-init network config. Never denies.
///
/// The rules run in this order, each seeing what the previous ones changed: names first (the
/// others pair interfaces with networks by name), then MACs (the network config matches them),
/// then pool addresses (written where the network config reads requested addresses), then the
/// network config.
pub fn mutate_text(req: &Request<'_>, inventory: &Inventory, config: &Config) -> Result<PatchText> {
    if deleting(req) {
        return Ok(PatchText::default());
    }
    let mut ctx = Ctx::new(req, inventory, config)?;
    if ctx.mutation_disabled() || kinds::decided_with_its_vm(&ctx.vm) {
        return Ok(PatchText::default());
    }
    if let Some(what) = limits::exceeded(&ctx) {
        return Ok(PatchText {
            patch: Vec::new(),
            warnings: vec![format!("not mutated: {what}")],
        });
    }
    let mut ops = Ops::default();
    let mut warnings = Vec::new();
    names::reconcile(&mut ctx, &mut ops, &mut warnings);
    names::drop_redundant_multus_annotation(&ctx, &mut ops, &mut warnings);
    // A shared template has no identity: its replicas get MACs and config when created.
    if !ctx.vm.kind.is_shared_template() {
        macs::assign(&mut ctx, &mut ops, &mut warnings);
        pools::assign(&mut ctx, &mut ops, &mut warnings);
        cloudinit::write(&mut ctx, &mut ops, &mut warnings);
    }
    Ok(PatchText {
        patch: ops.into_bytes(),
        warnings,
    })
}

/// [`mutate_text`] with the patch decoded into json-patch's operations, for callers that
/// look at them (the tests, the benches).
pub fn mutate(req: &Request<'_>, inventory: &Inventory, config: &Config) -> Result<Mutation> {
    let PatchText { patch, warnings } = mutate_text(req, inventory, config)?;
    let patch = if patch.is_empty() {
        json_patch::Patch(Vec::new())
    } else {
        serde_json::from_slice(&patch).map_err(|source| Error::Patch { source })?
    };
    Ok(Mutation { patch, warnings })
}

/// `/validate`: everything still wrong, each denial naming the field and the fix.
///
/// On UPDATE, what the stored object already had is ratcheted (SPEC §2.11): allowed with a
/// warning, so that a VM admitted before the webhook (or before its NAD changed) can still be
/// started, stopped, labelled and fixed. The stored object is evaluated only when the new one
/// has a violation.
pub fn validate(req: &Request<'_>, inventory: &Inventory, config: &Config) -> Result<Verdict> {
    if deleting(req) {
        return Ok(Verdict::default());
    }
    let ctx = Ctx::new(req, inventory, config)?;
    let evaluate = || stored_violations(req, inventory, config);
    let stored = ctx.old.is_some().then(|| Stored::new(&evaluate));
    let mut findings = Findings::new(stored);
    check(&ctx, &mut findings);
    Ok(Verdict {
        warnings: findings.warnings,
        denials: findings.denials,
        ratcheted: findings.ratcheted,
    })
}

/// Every rule of `/validate`, in the order their messages are shown.
fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    if kinds::decided_with_its_vm(&ctx.vm) || !limits::check(ctx, verdict) {
        return;
    }
    names::check(ctx, verdict);
    tenancy::check(ctx, verdict);
    binding::check(ctx, verdict);
    addresses::check(ctx, verdict);
    if ctx.vm.kind.is_shared_template() {
        kinds::check_shared_template(ctx, verdict);
    } else {
        macs::check(ctx, verdict);
        pools::check(ctx, verdict);
        cloudinit::check(ctx, verdict);
    }
}

/// The violations of the stored object of an UPDATE, judged as if it were created now with
/// the same NADs, cluster view (itself excluded) and configuration.
fn stored_violations(req: &Request<'_>, inventory: &Inventory, config: &Config) -> Keys {
    let Some(old) = req.old_object else {
        return Keys::default();
    };
    let as_created = Request {
        operation: &Operation::Create,
        object: old,
        old_object: None,
        ..*req
    };
    let Ok(ctx) = Ctx::new(&as_created, inventory, config) else {
        return Keys::default(); // a stored object that does not decode has nothing to keep
    };
    let mut findings = Findings::new(None);
    check(&ctx, &mut findings);
    findings.keys
}

/// An object being deleted (`metadata.deletionTimestamp` set) is let through unchanged by
/// both webhooks (SPEC §2.11): removing its finalizers must always work.
fn deleting(req: &Request<'_>) -> bool {
    req.object.deleting()
}
