//! `kubevirt-net-webhook review`: the webhook's answers for manifests on disk, for CI
//! pipelines (SPEC §4). The same engine and protocol layer as the server.
use std::{io::Write, path::PathBuf};

use clap::ValueEnum;
use serde_json::Value;

use crate::{
    admission::{self, Endpoint},
    config::{self, Config},
    engine::Operation,
    inventory::Inventory,
    manifests::{self, Document},
    nad::Nad,
    vm::VirtualMachine,
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
}

/// Counts for the summary line and the exit code.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub allowed: usize,
    pub denied: usize,
}

/// One VM to review.
struct Item {
    origin: String,
    uid: String,
    operation: Operation,
    namespace: String,
    object: Value,
    old_object: Option<Value>,
    dry_run: bool,
}

fn object_error(doc: &Document, ns: &str, message: impl ToString) -> Error {
    Error::Object {
        origin: doc.origin.clone(),
        kind: doc.kind().to_string(),
        name: doc.display_name(ns),
        message: message.to_string(),
    }
}

fn namespace_of(obj: &Value) -> String {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string()
}

fn is_vm(doc: &Document) -> bool {
    doc.kind() == "VirtualMachine" && doc.api_version().starts_with("kubevirt.io/")
}

/// The VMs of an input document: a VM, or the VM inside an AdmissionReview.
fn items_of(doc: &Document, index: usize) -> Result<Option<Item>, Error> {
    if is_vm(doc) {
        let ns = namespace_of(&doc.value);
        VirtualMachine::from_value(&doc.value).map_err(|e| object_error(doc, &ns, e))?;
        return Ok(Some(Item {
            origin: doc.origin.clone(),
            uid: format!("review-{index}"),
            operation: Operation::Create,
            namespace: ns,
            object: doc.value.clone(),
            old_object: None,
            dry_run: false,
        }));
    }
    if doc.kind() != "AdmissionReview" {
        return Ok(None);
    }
    let req = doc
        .value
        .get("request")
        .ok_or_else(|| object_error(doc, "-", "AdmissionReview has no request"))?;
    if req.pointer("/kind/kind").and_then(Value::as_str) != Some("VirtualMachine") {
        return Ok(None);
    }
    let operation = match req.get("operation").and_then(Value::as_str) {
        Some("CREATE") => Operation::Create,
        Some("UPDATE") => Operation::Update,
        _ => return Ok(None),
    };
    let object = req
        .get("object")
        .cloned()
        .ok_or_else(|| object_error(doc, "-", "request.object is missing"))?;
    let namespace = req
        .get("namespace")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| namespace_of(&object));
    VirtualMachine::from_value(&object)
        .map_err(|e| object_error(doc, &namespace, format!("request.object: {e}")))?;
    Ok(Some(Item {
        origin: doc.origin.clone(),
        uid: req
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        operation,
        namespace,
        object,
        old_object: req.get("oldObject").filter(|v| !v.is_null()).cloned(),
        dry_run: req.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
    }))
}

fn load_nads(docs: &[Document], inventory: &mut Inventory) -> Result<(), Error> {
    for doc in docs
        .iter()
        .filter(|d| d.kind() == "NetworkAttachmentDefinition")
    {
        let nad = Nad::from_object(&doc.value).map_err(|e| object_error(doc, "default", e))?;
        inventory.upsert_nad(nad);
    }
    Ok(())
}

/// Runs the review, writing results to `out` and messages to `err`.
pub fn review(
    args: &ReviewArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Summary, Error> {
    let config = Config::load(args.config.as_deref())?;
    let mut inputs = Vec::new();
    for path in &args.files {
        inputs.extend(manifests::read_path(path)?);
    }
    let mut inventory = Inventory::new();
    if let Some(dir) = &args.nads {
        load_nads(&manifests::read_path(dir)?, &mut inventory)?;
    }
    load_nads(&inputs, &mut inventory)?;
    if let Some(dir) = &args.vms {
        for doc in manifests::read_path(dir)?.iter().filter(|d| is_vm(d)) {
            inventory
                .upsert_vm_object(&doc.value, "default")
                .map_err(|e| object_error(doc, "default", e))?;
        }
    }
    let mut items = Vec::new();
    for (i, doc) in inputs.iter().enumerate() {
        items.extend(items_of(doc, i + 1)?);
    }
    // Every input VM is part of the cluster the others are checked against.
    for item in &items {
        inventory
            .upsert_vm_object(&item.object, &item.namespace)
            .map_err(|message| Error::Object {
                origin: item.origin.clone(),
                kind: "VirtualMachine".into(),
                name: item.namespace.clone(),
                message,
            })?;
    }
    let mut summary = Summary::default();
    let mut mutated = Vec::new();
    for item in &items {
        let name = format!(
            "{}/{}",
            item.namespace,
            item.object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<generateName>")
        );
        let ask = |endpoint, object: &Value, inventory: &Inventory| {
            let body = admission::request_for(
                &item.uid,
                item.operation,
                &item.namespace,
                object,
                item.old_object.as_ref(),
                item.dry_run,
            );
            admission::review(body.to_string().as_bytes(), endpoint, inventory, &config)
                .expect("a well-formed AdmissionReview")
        };
        let m = ask(Endpoint::Mutate, &item.object, &inventory);
        let mut object = item.object.clone();
        json_patch::patch(&mut object, &m.patch).map_err(|e| Error::Object {
            origin: item.origin.clone(),
            kind: "VirtualMachine".into(),
            name: name.clone(),
            message: format!("the webhook's own patch does not apply: {e}"),
        })?;
        let v = ask(Endpoint::Validate, &object, &inventory);
        for w in m.warnings.iter().chain(&v.warnings) {
            writeln!(err, "{name}: warning: {w}")?;
        }
        if let (false, Some(message)) = (
            v.allowed && m.allowed,
            v.message.as_ref().or(m.message.as_ref()),
        ) {
            writeln!(err, "{name}: denied: {message}")?;
            summary.denied += 1;
        } else {
            summary.allowed += 1;
        }
        let _ = inventory.upsert_vm_object(&object, &item.namespace);
        match args.output {
            Output::Patch => writeln!(
                out,
                "{}",
                serde_json::to_string(&m.patch).expect("patch serializes")
            )?,
            Output::Review => {
                writeln!(out, "{}", m.review)?;
                writeln!(out, "{}", v.review)?;
            }
            Output::Yaml | Output::Json => {}
        }
        mutated.push(object);
    }
    match args.output {
        Output::Yaml => {
            for (i, obj) in mutated.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(
                    out,
                    "{}",
                    serde_yaml_ng::to_string(obj).expect("JSON values serialize to YAML")
                )?;
            }
        }
        Output::Json => {
            let doc = match mutated.as_slice() {
                [one] => one.clone(),
                _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": mutated}),
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
