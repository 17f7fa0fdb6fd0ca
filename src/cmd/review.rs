//! `kubevirt-net-webhook review`: the webhook's answers for manifests on disk, for CI
//! pipelines (SPEC §4). The same engine and protocol layer as the server.
use std::{io::Write, path::PathBuf};

use clap::ValueEnum;
use kube::core::DynamicObject;
use serde_json::Value;

use crate::{
    admission::{self, Answer, Endpoint, Parsed},
    inventory::{self, Inventory, apply::Cached},
    manifests::{self, Document},
    model::{
        config::{self, Config, Enforcement},
        kinds::{self, Kind},
        vm::Vm,
    },
};

/// Arguments of `kubevirt-net-webhook review`.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// VM manifests: files or directories of YAML/JSON (multi-document), or `-` for stdin.
    /// NetworkAttachmentDefinitions among them are used as context; an input may also be a
    /// whole AdmissionReview.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Directory (or file) of NetworkAttachmentDefinitions the VMs reference.
    #[arg(long, value_name = "DIR")]
    pub nads: Option<PathBuf>,
    /// Directory (or file) of the cluster's other VMs, for MAC and address conflict checks.
    #[arg(long, value_name = "DIR")]
    pub vms: Option<PathBuf>,
    /// Webhook configuration file (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `warn` answers as `/validate/warn` does: violations become warnings, nothing is
    /// denied. Overrides the configuration's `enforcement`.
    #[arg(long, value_name = "deny|warn")]
    pub enforcement: Option<Enforcement>,
    /// What to print on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
}

/// Output formats of `review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The mutated VMs, as a YAML stream.
    Yaml,
    /// The mutated VMs as JSON (a List when there are several).
    Json,
    /// One RFC 6902 JSON Patch per VM, one per line.
    Patch,
    /// The AdmissionReview responses of /mutate and then /validate, one per line.
    Review,
}

/// Input errors: `review` exits 2 on them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest could not be read or parsed.
    #[error(transparent)]
    Manifest(#[from] manifests::Error),
    /// A NAD or VM of the context could not be read.
    #[error(transparent)]
    Inventory(#[from] inventory::files::Error),
    /// The configuration file is bad.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// An object could not be decoded.
    #[error("{origin}: {kind} {name}: {message}")]
    Object {
        origin: String,
        kind: String,
        name: String,
        message: String,
    },
    /// Output could not be written.
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    /// The mutated object could not be written as YAML.
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// Counts for the summary line and the exit code.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub allowed: usize,
    pub denied: usize,
}

/// One question to answer: a manifest turned into a request, or an AdmissionReview as given.
struct Item {
    origin: String,
    parsed: Parsed,
}

fn object_error(doc: &Document, message: impl ToString) -> Error {
    let namespace = kinds::namespace(
        None,
        doc.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str),
    );
    Error::Object {
        origin: doc.origin.clone(),
        kind: doc.kind().to_string(),
        name: doc.display_name(namespace),
        message: message.to_string(),
    }
}

/// The question an input document asks, if any.
fn item_of(doc: &Document, index: usize) -> Result<Option<Item>, Error> {
    let parsed = if doc.kind() == "AdmissionReview" {
        // Exactly the bytes a server would get, through the same parser.
        let body = serde_json::to_vec(&doc.value).expect("JSON values serialize");
        admission::parse(&body).map_err(|e| object_error(doc, e))?
    } else if let Some(kind) = Kind::of_manifest(doc.api_version(), doc.kind()) {
        let parsed = Parsed::manifest_with_uid(&doc.value, None, &format!("review-{index}"))
            .map_err(|e| object_error(doc, e))?;
        // A manifest that does not decode is the author's to fix: an input error, naming
        // the field, rather than a denial.
        let object = parsed.request().and_then(|r| r.object.as_ref());
        if let Some(object) = object {
            Vm::from_object(kind, object).map_err(|e| object_error(doc, e))?;
        }
        parsed
    } else {
        return Ok(None);
    };
    Ok(Some(Item {
        origin: doc.origin.clone(),
        parsed,
    }))
}

/// Puts a reviewed guest into the inventory, so that later inputs see what it claims.
fn remember(inventory: &mut Inventory, parsed: &Parsed, object: Option<&DynamicObject>) {
    let Some(req) = parsed.request() else { return };
    let (Some(kind), Some(object)) = (Kind::of(&req.kind.group, &req.kind.kind), object) else {
        return;
    };
    // The guests that hold MACs and addresses: VMs, and standalone VMIs (the inventory
    // leaves a VM's own VMI to its VM).
    if matches!(kind, Kind::VirtualMachine | Kind::VirtualMachineInstance) {
        let namespace = kinds::namespace(
            req.namespace.as_deref(),
            object.metadata.namespace.as_deref(),
        );
        let _ = inventory.upsert_vm_object(kind, object, namespace);
    }
}

/// The object after the mutating webhook's patch, as the validating webhook sees it.
fn mutated(item: &Item, answer: &Answer) -> Result<Option<DynamicObject>, Error> {
    let Some(object) = item.parsed.request().and_then(|r| r.object.as_ref()) else {
        return Ok(None);
    };
    let patch = answer.patch();
    if patch.0.is_empty() {
        return Ok(Some(object.clone()));
    }
    let mut value = serde_json::to_value(object).expect("objects serialize");
    let fail = |message: String| Error::Object {
        origin: item.origin.clone(),
        kind: answer.facts.kind.clone(),
        name: format!("{}/{}", answer.facts.namespace, answer.facts.name),
        message,
    };
    json_patch::patch(&mut value, &patch)
        .map_err(|e| fail(format!("the webhook's own patch does not apply: {e}")))?;
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| fail(format!("the patched object does not decode: {e}")))
}

/// Runs the review, writing results to `out` and messages to `err`.
pub fn review(
    args: &ReviewArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Summary, Error> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(enforcement) = args.enforcement {
        config.enforcement = enforcement;
    }
    let mut inputs = Vec::new();
    for path in &args.files {
        inputs.extend(manifests::read_path(path)?);
    }
    let mut inventory = Inventory::new();
    if let Some(dir) = &args.nads {
        inventory::files::add_documents(Cached::Nad, &manifests::read_path(dir)?, &mut inventory)?;
    }
    inventory::files::add_documents(Cached::Nad, &inputs, &mut inventory)?;
    if let Some(dir) = &args.vms {
        let docs = manifests::read_path(dir)?;
        inventory::files::add_documents(Cached::Vm, &docs, &mut inventory)?;
        inventory::files::add_documents(Cached::Vmi, &docs, &mut inventory)?;
    }
    let mut items = Vec::new();
    for (i, doc) in inputs.iter().enumerate() {
        items.extend(item_of(doc, i + 1)?);
    }
    // Every input VM is part of the cluster the others are checked against.
    for item in &items {
        let object = item.parsed.request().and_then(|r| r.object.as_ref());
        remember(&mut inventory, &item.parsed, object);
    }
    let mut summary = Summary::default();
    let mut outputs = Vec::new();
    for item in &items {
        let m = item.parsed.answer(Endpoint::Mutate, &inventory, &config);
        let object = mutated(item, &m)?;
        let v = match &object {
            Some(object) => item.parsed.with_object(object.clone()).answer(
                Endpoint::Validate,
                &inventory,
                &config,
            ),
            None => item.parsed.answer(Endpoint::Validate, &inventory, &config),
        };
        let name = match (&m.facts.name, &m.facts.namespace) {
            (name, _) if name.is_empty() && m.facts.kind.is_empty() => m.uid().to_string(),
            (name, ns) if name.is_empty() => format!("{ns}/<generateName>"),
            (name, ns) => format!("{ns}/{name}"),
        };
        for w in m.warnings().iter().chain(v.warnings()) {
            writeln!(err, "{name}: warning: {w}")?;
        }
        if !(m.allowed() && v.allowed()) {
            let message = if m.allowed() {
                v.message()
            } else {
                m.message()
            };
            writeln!(err, "{name}: denied: {message}")?;
            summary.denied += 1;
        } else {
            summary.allowed += 1;
        }
        remember(&mut inventory, &item.parsed, object.as_ref());
        match args.output {
            Output::Patch => writeln!(
                out,
                "{}",
                serde_json::to_string(&m.patch()).expect("patches serialize")
            )?,
            Output::Review => {
                writeln!(out, "{}", m.to_value())?;
                writeln!(out, "{}", v.to_value())?;
            }
            Output::Yaml | Output::Json => {}
        }
        outputs.extend(object);
    }
    match args.output {
        Output::Yaml => {
            for (i, obj) in outputs.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", to_yaml(obj)?)?;
            }
        }
        Output::Json => {
            let mut items: Vec<Value> = outputs
                .iter()
                .map(|o| serde_json::to_value(o).expect("objects serialize"))
                .collect();
            let doc = match items.len() {
                1 => items.remove(0),
                _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
            };
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON serializes")
            )?;
        }
        Output::Patch | Output::Review => {}
    }
    writeln!(
        err,
        "{} allowed, {} denied",
        summary.allowed, summary.denied
    )?;
    Ok(summary)
}

/// YAML that every Kubernetes tool reads back as written: serde-saphyr quotes the scalars a
/// YAML 1.1 reader (kubectl's Go YAML, PyYAML) would type, such as `yes`, `on`, `~`, `012`
/// and `=`.
pub fn to_yaml(object: &impl serde::Serialize) -> Result<String, Error> {
    Ok(serde_saphyr::to_string(object)?)
}
