//! `kubevirt-net-webhook audit`: every violation each stored object has today (SPEC §4.1), as
//! `/validate` would find it on that object's CREATE with all the other stored objects as the
//! cluster view. It changes nothing: it is how a platform team sees the blast radius before
//! turning enforcement on (SPEC §2.11).
//!
//! The objects come from files (`-f`, like `review`) or from the cluster ([`cluster`], page by
//! page). Either way the work is in two steps over the same pure parts:
//!
//! 1. [`View`]: one [`Inventory`] of every NAD and every stored guest's footprint (VMs and
//!    standalone VMIs; shared templates hold no MAC or address of their own).
//! 2. [`Findings::judge`]: each object, asked of the engine as a CREATE (the inventory
//!    excludes the object itself by namespace/name). Conflicts among stored objects are found
//!    on every holder, and the message names all the others, across namespaces: the reader
//!    is an administrator, not a tenant.
//!
//! Output: [`Format::Table`], [`Format::Json`] or [`Format::Report`] (one OpenReports
//! `Report` per namespace).
pub mod cluster;

use std::{
    collections::{BTreeMap, HashSet},
    io::Write,
    net::IpAddr,
    path::PathBuf,
};

use clap::ValueEnum;
use kube::core::{DynamicObject, admission::Operation};
use serde_json::{Value, json};

use crate::{
    engine::{self, Request, Rule, Violation},
    inventory::{self, Inventory, VmName, apply::Cached},
    manifests::{self, Document},
    model::{
        config::{self, Config},
        kinds::{self, Kind},
        mac::Mac,
        nad::{self, Nad, NadRef},
        vm,
    },
};

/// Arguments of `kubevirt-net-webhook audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Report the objects of this namespace only (the cluster view, for conflicts, is still
    /// every namespace). Default: the kubeconfig context's namespace; with -f, every
    /// namespace.
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Report the objects of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Read the stored objects from files or directories of YAML/JSON (multi-document, `List`
    /// included, `-` for stdin) instead of the cluster. NetworkAttachmentDefinitions among
    /// them are used too.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Directory (or file) of NetworkAttachmentDefinitions, with -f.
    #[arg(long, value_name = "DIR", requires = "files")]
    pub nads: Option<PathBuf>,
    /// Webhook configuration file (YAML), as given to `serve`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// The kubeconfig file. Default: KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// ServiceAccount.
    #[arg(long, value_name = "FILE", conflicts_with = "files")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: its current context.
    #[arg(long, value_name = "NAME", conflicts_with = "files")]
    pub context: Option<String>,
    /// Print a progress line on stderr every 10,000 objects read (the default when stderr is
    /// a terminal).
    #[arg(long)]
    pub progress: bool,
}

/// Output formats of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns: namespace, kind, name, rule, message.
    Table,
    /// A JSON list of objects: namespace, kind, name, rule, subject, message.
    Json,
    /// One OpenReports `openreports.io/v1alpha1` Report per namespace, as a YAML stream
    /// ready for `kubectl apply -f -`.
    Report,
}

/// Why `audit` could not finish: it exits 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest could not be read or parsed.
    #[error(transparent)]
    Manifest(#[from] manifests::Error),
    /// A NetworkAttachmentDefinition of the input could not be read.
    #[error(transparent)]
    Inventory(#[from] inventory::files::Error),
    /// The configuration file is bad.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// A stored object could not be judged: it does not decode as its kind.
    #[error("{origin}{kind} {namespace}/{name}: {message}")]
    Object {
        /// Where it came from (`file: `), empty for the cluster.
        origin: String,
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    /// Some stored objects of the cluster could not be judged (each was named on stderr).
    #[error("{0} stored object(s) could not be judged (named above)")]
    Undecodable(usize),
    /// No Kubernetes client could be configured (kubeconfig, context, in-cluster).
    #[error("cannot configure the Kubernetes client: {0}")]
    Client(String),
    /// A list request failed: the API server is unreachable, or refused it.
    #[error("cannot list {resource} from {server}: {message}")]
    List {
        resource: String,
        server: String,
        message: String,
    },
    /// A list kept expiring (410 Gone) while it was read page by page.
    #[error(
        "cannot list {resource}: the list expired (410 Gone) {attempts} times while it was read page by page; try again when the cluster is quieter"
    )]
    Expired { resource: String, attempts: usize },
    /// The async runtime for the cluster client could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Output could not be written.
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    /// A report could not be written as YAML.
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// Which objects are reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    All,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    fn includes(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespace(ns) => ns == namespace,
        }
    }
}

/// The cluster view every object is judged against: NADs and the footprints of every stored
/// guest that holds MACs or addresses of its own (VMs and standalone VMIs).
#[derive(Debug, Default)]
pub struct View {
    pub inventory: Inventory,
    /// `namespace/name` of the standalone VMIs among the holders, to call them VMIs when
    /// they are named.
    vmis: HashSet<String>,
}

/// Whether a VMI belongs to a VM: then it is the VM's, judged and counted with it.
fn owned_by_a_vm(kind: Kind, object: &DynamicObject) -> bool {
    kind == Kind::VirtualMachineInstance
        && object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Kind::of_manifest(&o.api_version, &o.kind) == Some(Kind::VirtualMachine))
}

fn namespace_of(object: &DynamicObject) -> &str {
    kinds::namespace(None, object.metadata.namespace.as_deref())
}

fn name_of(object: &DynamicObject) -> &str {
    object.metadata.name.as_deref().unwrap_or("")
}

impl View {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stored guest's footprint. Shared templates (VMIRS, pools) and VMIs owned by a
    /// VM hold nothing of their own and are left out.
    pub fn add_guest(&mut self, kind: Kind, object: &DynamicObject) -> Result<(), vm::Error> {
        if kind.is_shared_template() || owned_by_a_vm(kind, object) {
            return Ok(());
        }
        let namespace = namespace_of(object);
        self.inventory.upsert_vm_object(kind, object, namespace)?;
        if kind == Kind::VirtualMachineInstance {
            self.vmis.insert(format!("{namespace}/{}", name_of(object)));
        }
        Ok(())
    }

    /// Drops a guest again (a list restarted after a 410 Gone).
    pub fn remove_guest(&mut self, namespace: &str, name: &str) {
        self.inventory.remove_vm(namespace, name);
        self.vmis.remove(&format!("{namespace}/{name}"));
    }

    /// Adds a NetworkAttachmentDefinition.
    pub fn add_nad(&mut self, object: &DynamicObject) -> Result<(), nad::Error> {
        self.inventory.upsert_nad(Nad::from_object(object)?);
        Ok(())
    }

    /// `VM ns/name` (or `VMI ns/name`): an administrator reads this, so the namespace is
    /// shown.
    fn describe(&self, holder: VmName<'_>) -> String {
        let key = format!("{}/{}", holder.namespace, holder.name);
        let what = if self.vmis.contains(&key) {
            "VMI"
        } else {
            "VM"
        };
        format!("{what} {key}")
    }
}

/// One violation of one stored object: a row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
    /// The object's `apiVersion` (its kind's, when it names none).
    pub api_version: String,
    pub uid: Option<String>,
    pub rule: Rule,
    pub subject: String,
    pub message: String,
}

impl Row {
    /// The `-o json` form.
    pub fn to_json(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "kind": self.kind.name(),
            "name": self.name,
            "rule": self.rule.id(),
            "subject": self.subject,
            "message": self.message,
        })
    }
}

/// Per namespace: how many objects were judged without a violation, with one, or not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub clean: usize,
    pub failed: usize,
    pub errors: usize,
}

/// Everything `audit` found.
#[derive(Debug, Default)]
pub struct Findings {
    pub rows: Vec<Row>,
    /// Every namespace with a judged object, so that a Report is written (and an old one
    /// replaced) for a namespace that has become clean.
    pub namespaces: BTreeMap<String, Counts>,
    /// Objects that could not be judged, each as a one-line reason.
    pub errors: Vec<Error>,
}

impl Findings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges one stored object as its CREATE would be judged, with `view` as the cluster.
    pub fn judge(&mut self, view: &View, config: &Config, kind: Kind, object: &DynamicObject) {
        if owned_by_a_vm(kind, object) {
            return; // the VM's: the engine lets it through unchanged
        }
        let namespace = namespace_of(object);
        let counts = self.namespaces.entry(namespace.to_string()).or_default();
        let request = Request {
            kind,
            operation: &Operation::Create,
            namespace,
            object: engine::Object::Tree(object),
            old_object: None,
        };
        let verdict = match engine::validate(&request, &view.inventory, config) {
            Ok(verdict) => verdict,
            Err(e) => {
                counts.errors += 1;
                self.errors.push(Error::Object {
                    origin: String::new(),
                    kind: kind.name(),
                    namespace: namespace.to_string(),
                    name: name_of(object).to_string(),
                    message: e.to_string(),
                });
                return;
            }
        };
        if verdict.denials.is_empty() {
            counts.clean += 1;
            return;
        }
        counts.failed += 1;
        let me = VmName {
            namespace,
            name: name_of(object),
        };
        let api_version = object
            .types
            .as_ref()
            .map(|t| t.api_version.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("{}/{}", kind.group(), kind.version()));
        for violation in verdict.denials {
            let message = name_every_holder(view, me, &violation).unwrap_or(violation.message);
            self.rows.push(Row {
                namespace: namespace.to_string(),
                kind,
                name: me.name.to_string(),
                api_version: api_version.clone(),
                uid: object.metadata.uid.clone(),
                rule: violation.rule,
                subject: violation.subject,
                message,
            });
        }
    }

    /// Takes back what [`Findings::judge`] found for one object, to judge it again.
    pub fn forget(&mut self, kind: Kind, namespace: &str, name: &str) {
        let is = |ns: &str, k: Kind, n: &str| ns == namespace && k == kind && n == name;
        let before = self.rows.len();
        self.rows.retain(|r| !is(&r.namespace, r.kind, &r.name));
        let had_rows = self.rows.len() != before;
        let errors = self.errors.len();
        self.errors.retain(|e| {
            !matches!(e, Error::Object { kind: k, namespace: ns, name: n, .. }
                if ns == namespace && *k == kind.name() && n == name)
        });
        let Some(counts) = self.namespaces.get_mut(namespace) else {
            return;
        };
        if errors != self.errors.len() {
            counts.errors -= 1;
        } else if had_rows {
            counts.failed -= 1;
        } else {
            counts.clean = counts.clean.saturating_sub(1);
        }
    }

    /// Adds what `other` found (one kind's objects, listed in full).
    pub fn extend(&mut self, other: Findings) {
        self.rows.extend(other.rows);
        for (ns, c) in other.namespaces {
            let mine = self.namespaces.entry(ns).or_default();
            mine.clean += c.clean;
            mine.failed += c.failed;
            mine.errors += c.errors;
        }
        self.errors.extend(other.errors);
    }

    /// Rows by namespace, kind (in [`Kind::ALL`]'s order) and name; an object's own rows
    /// keep the engine's order.
    pub fn sort(&mut self) {
        let kind_order = |k: Kind| Kind::ALL.iter().position(|x| *x == k);
        self.rows.sort_by(|a, b| {
            (&a.namespace, kind_order(a.kind), &a.name).cmp(&(
                &b.namespace,
                kind_order(b.kind),
                &b.name,
            ))
        });
    }
}

/// A MAC or address conflict's message, rewritten to name every other holder where the
/// webhook names one (and hides other namespaces). `None`: not a conflict, or nothing to add.
fn name_every_holder(view: &View, me: VmName<'_>, violation: &Violation) -> Option<String> {
    if !matches!(violation.rule, Rule::MacConflict | Rule::AddressConflict) {
        return None;
    }
    // The subject ends with `<MAC or address> on NAD <namespace/name>` (engine::macs and
    // engine::addresses): the same Display forms the inventory is keyed by.
    let (rest, nad) = violation.subject.rsplit_once(" on NAD ")?;
    let (_, value) = rest.rsplit_once(' ')?;
    let inventory = &view.inventory;
    let (holders, first) = match violation.rule {
        Rule::MacConflict => {
            let mac = Mac::parse(value)?;
            (
                inventory.mac_holders(nad, mac),
                inventory.mac_user(nad, mac, me),
            )
        }
        _ => {
            let ip: IpAddr = value.parse().ok()?;
            let r = NadRef::resolve(nad, kinds::DEFAULT_NAMESPACE);
            let pinned_here = inventory
                .nad(r.namespace, r.name)
                .and_then(|n| n.ipam.pinned)
                .is_some_and(|p| p.addr() == ip);
            let mut holders = inventory.address_holders(nad, ip);
            if pinned_here {
                holders.extend(inventory.pinned_holders(nad));
            }
            let first = inventory.address_user(nad, ip, me).or_else(|| {
                pinned_here
                    .then(|| inventory.pinned_user(nad, me))
                    .flatten()
            });
            (holders, first)
        }
    };
    let mut named: Vec<String> = Vec::new();
    for holder in holders.into_iter().filter(|h| *h != me) {
        let text = view.describe(holder);
        if !named.contains(&text) {
            named.push(text);
        }
    }
    if named.is_empty() {
        return None;
    }
    let all = match named.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => return None,
    };
    // The webhook's words for the one holder it names.
    let phrase = engine::describe_other(me.namespace, first?);
    Some(if violation.message.contains(&phrase) {
        violation.message.replacen(&phrase, &all, 1)
    } else {
        format!("{} (held by {all})", violation.message)
    })
}

/// What the run found, for the exit code: 0 none, 1 some.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub objects: usize,
    pub violations: usize,
}

/// Counts objects read and prints a progress line every [`Progress::EVERY`].
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    read: usize,
}

impl Progress {
    pub const EVERY: usize = 10_000;

    pub fn new(enabled: bool) -> Self {
        Self { enabled, read: 0 }
    }

    /// One more object read while `doing`.
    pub fn tick(&mut self, doing: &str) {
        self.read += 1;
        if self.enabled && self.read.is_multiple_of(Self::EVERY) {
            eprintln!("audit: {} objects read ({doing})", self.read);
        }
    }
}

/// Runs `audit`: stdout gets the findings, stderr notes and the summary line.
pub fn run(args: &AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<Summary, Error> {
    let config = Config::load(args.config.as_deref())?;
    let progress =
        Progress::new(args.progress || std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let findings = if args.files.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        // kube-rs logs a failed request as an ERROR line of its own; audit reports it in its
        // one-line reason, so kube-rs's lines stay out unless RUST_LOG asks for them.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off"));
        let quiet = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish();
        let _quiet = tracing::subscriber::set_default(quiet);
        runtime.block_on(async {
            let cluster::Connection {
                client,
                server,
                namespace: default_namespace,
            } = cluster::connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
            let scope = match (&args.namespace, args.all_namespaces) {
                (Some(ns), _) => Scope::Namespace(ns.clone()),
                (None, true) => Scope::All,
                (None, false) => Scope::Namespace(default_namespace),
            };
            cluster::audit(client, &server, &scope, &config, progress, err).await
        })?
    } else {
        let scope = match &args.namespace {
            Some(ns) => Scope::Namespace(ns.clone()),
            None => Scope::All,
        };
        from_files(args, &scope, &config)?
    };
    write_findings(findings, args.output, out, err)
}

/// `-f`/`--nads`: the documents are in memory already, so each is judged from them.
fn from_files(args: &AuditArgs, scope: &Scope, config: &Config) -> Result<Findings, Error> {
    // An audit reads a whole cluster's dump: `review`'s limits, which guard CI runners
    // against hostile repositories, would be too tight (as for `serve --vms`).
    let limits = manifests::Limits {
        max_file_bytes: 1 << 30,
        max_total_bytes: usize::MAX,
    };
    let mut view = View::new();
    if let Some(dir) = &args.nads {
        let nads = manifests::read_path_with(dir, &limits)?;
        inventory::files::add_documents(Cached::Nad, &nads, &mut view.inventory)?;
    }
    // Stdin can be read once: its objects are kept for the second pass. Files are read
    // twice instead, one at a time, so a cluster's dump never sits in memory whole: first
    // into the cluster view (NADs, and each guest's MACs and addresses only), then judged.
    let mut stdin = Vec::new();
    for path in &args.files {
        manifests::visit_path_with(path, &limits, |docs| -> Result<(), Error> {
            inventory::files::add_documents(Cached::Nad, &docs, &mut view.inventory)?;
            for doc in &docs {
                let Some(kind) = Kind::of_manifest(doc.api_version(), doc.kind()) else {
                    continue;
                };
                let object = decode(doc, kind)?;
                view.add_guest(kind, &object)
                    .map_err(|e| object_error(&doc.origin, kind, &object, e))?;
            }
            if path == std::path::Path::new("-") {
                stdin = docs;
            }
            Ok(())
        })?;
    }
    let mut findings = Findings::new();
    let mut judge = |docs: &[Document]| -> Result<(), Error> {
        for doc in docs {
            let Some(kind) = Kind::of_manifest(doc.api_version(), doc.kind()) else {
                continue;
            };
            let object = decode(doc, kind)?;
            if !scope.includes(namespace_of(&object)) {
                continue;
            }
            findings.judge(&view, config, kind, &object);
            // A file is the operator's to fix: an object that does not decode stops the run.
            if let Some(Error::Object {
                kind,
                namespace,
                name,
                message,
                ..
            }) = findings.errors.pop()
            {
                return Err(Error::Object {
                    origin: format!("{}: ", doc.origin),
                    kind,
                    namespace,
                    name,
                    message,
                });
            }
        }
        Ok(())
    };
    for path in &args.files {
        if path == std::path::Path::new("-") {
            judge(&stdin)?;
        } else {
            manifests::visit_path_with(path, &limits, |docs| judge(&docs))?;
        }
    }
    findings.sort();
    Ok(findings)
}

fn decode(doc: &Document, kind: Kind) -> Result<DynamicObject, Error> {
    serde_json::from_value(doc.value.clone()).map_err(|e| Error::Object {
        origin: format!("{}: ", doc.origin),
        kind: kind.name(),
        namespace: String::new(),
        name: doc.display_name(""),
        message: e.to_string(),
    })
}

fn object_error(origin: &str, kind: Kind, object: &DynamicObject, e: impl ToString) -> Error {
    Error::Object {
        origin: if origin.is_empty() {
            String::new()
        } else {
            format!("{origin}: ")
        },
        kind: kind.name(),
        namespace: namespace_of(object).to_string(),
        name: name_of(object).to_string(),
        message: e.to_string(),
    }
}

/// Writes the findings in `format` and the summary line; an object that could not be judged
/// (in the cluster) is named on stderr and makes the run an error.
fn write_findings(
    mut findings: Findings,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Summary, Error> {
    findings.sort();
    match format {
        Format::Table => write_table(&findings.rows, out)?,
        Format::Json => {
            let rows: Vec<Value> = findings.rows.iter().map(Row::to_json).collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&rows).expect("JSON serializes")
            )?;
        }
        Format::Report => {
            for (i, report) in reports(&findings).iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                // The same YAML writer as `review`: what YAML 1.1 readers (kubectl) read back.
                write!(out, "{}", serde_saphyr::to_string(report)?)?;
            }
        }
    }
    for e in &findings.errors {
        writeln!(err, "error: {e}")?;
    }
    let objects: usize = findings
        .namespaces
        .values()
        .map(|c| c.clean + c.failed + c.errors)
        .sum();
    let failed: usize = findings.namespaces.values().map(|c| c.failed).sum();
    writeln!(
        err,
        "{objects} objects audited, {failed} with violations, {} violations",
        findings.rows.len()
    )?;
    if !findings.errors.is_empty() {
        return Err(Error::Undecodable(findings.errors.len()));
    }
    Ok(Summary {
        objects,
        violations: findings.rows.len(),
    })
}

/// Aligned columns; the message, last, is not padded.
fn write_table(rows: &[Row], out: &mut dyn Write) -> std::io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let header = ["NAMESPACE", "KIND", "NAME", "RULE"];
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip([
            row.namespace.as_str(),
            row.kind.name(),
            &row.name,
            row.rule.id(),
        ]) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 5]| {
        for (cell, w) in cells.iter().zip(widths) {
            write!(out, "{cell:<w$}  ")?;
        }
        writeln!(out, "{}", cells[4])
    };
    line(out, [header[0], header[1], header[2], header[3], "MESSAGE"])?;
    for row in rows {
        line(
            out,
            [
                &row.namespace,
                row.kind.name(),
                &row.name,
                row.rule.id(),
                // One row, one line: a message never holds a newline, but be sure.
                &row.message.replace('\n', " "),
            ],
        )?;
    }
    Ok(())
}

/// The source, policy and Report name the OpenReports objects carry.
pub const REPORT_SOURCE: &str = "kubevirt-net-webhook";

/// One OpenReports `Report` per namespace with an audited object (so that re-applying
/// replaces the Report of a namespace that has become clean). `summary.fail` counts the
/// results (one per violation); `pass` the objects without a violation, which get no result
/// of their own (a Report is one etcd object: 100,000 pass results would not fit); `error`
/// the objects that could not be judged.
pub fn reports(findings: &Findings) -> Vec<Value> {
    findings
        .namespaces
        .iter()
        .map(|(namespace, counts)| {
            let results: Vec<Value> = findings
                .rows
                .iter()
                .filter(|r| &r.namespace == namespace)
                .map(|r| {
                    let mut resource = json!({
                        "apiVersion": r.api_version,
                        "kind": r.kind.name(),
                        "name": r.name,
                        "namespace": r.namespace,
                    });
                    if let Some(uid) = &r.uid {
                        resource["uid"] = json!(uid);
                    }
                    json!({
                        "source": REPORT_SOURCE,
                        "policy": REPORT_SOURCE,
                        "rule": r.rule.id(),
                        "result": "fail",
                        "scored": true,
                        "message": r.message,
                        "properties": {"subject": r.subject},
                        "resources": [resource],
                    })
                })
                .collect();
            json!({
                "apiVersion": "openreports.io/v1alpha1",
                "kind": "Report",
                "metadata": {
                    "name": REPORT_SOURCE,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": REPORT_SOURCE},
                },
                "source": REPORT_SOURCE,
                "summary": {
                    "pass": counts.clean,
                    "fail": results.len(),
                    "warn": 0,
                    "error": counts.errors,
                    "skip": 0,
                },
                "results": results,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn nad(name: &str, cni: &str) -> DynamicObject {
        obj(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"config": format!("{{\"cniVersion\":\"0.3.1\",\"type\":\"{cni}\",\"ipam\":{{\"type\":\"host-local\",\"subnet\":\"10.0.0.0/24\"}}}}")}
        }))
    }

    fn vm(ns: &str, name: &str, nad: &str, address: &str) -> DynamicObject {
        obj(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                "annotations": {"kubevirt-net-webhook.io/networks": format!("{{\"ext\": \"{address}\"}}")}},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}}]}},
                "networks": [{"name": "ext", "multus": {"networkName": format!("infra/{nad}")}}]}}}
        }))
    }

    fn audit(objects: &[DynamicObject]) -> Findings {
        let mut view = View::new();
        view.add_nad(&nad("br", "bridge")).unwrap();
        view.add_nad(&nad("mv", "macvlan")).unwrap();
        for o in objects {
            view.add_guest(Kind::VirtualMachine, o).unwrap();
        }
        let mut findings = Findings::new();
        for o in objects {
            findings.judge(&view, &Config::default(), Kind::VirtualMachine, o);
        }
        findings.sort();
        findings
    }

    #[test]
    fn a_conflict_is_reported_on_every_holder_naming_all_the_others() {
        let f = audit(&[
            vm("a", "p", "br", "10.0.0.5/24"),
            vm("b", "q", "br", "10.0.0.5/24"),
            vm("c", "r", "br", "10.0.0.5/24"),
            vm("c", "clean", "br", "10.0.0.6/24"),
        ]);
        let rows: Vec<(&str, &str, &str)> = f
            .rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str(), r.rule.id()))
            .collect();
        assert_eq!(
            rows,
            [
                ("a", "p", "address-conflict"),
                ("b", "q", "address-conflict"),
                ("c", "r", "address-conflict")
            ]
        );
        let p = &f.rows[0].message;
        assert!(
            p.contains("VM b/q and VM c/r") && !p.contains("another namespace"),
            "{p}"
        );
        assert!(
            f.rows[2].message.contains("VM a/p and VM b/q"),
            "{}",
            f.rows[2].message
        );
        assert_eq!(
            f.namespaces["c"],
            Counts {
                clean: 1,
                failed: 1,
                errors: 0
            }
        );
    }

    #[test]
    fn bridge_on_macvlan_is_reported_and_a_vm_owned_vmi_is_skipped() {
        let mut bad = vm("a", "p", "mv", "10.0.0.5/24");
        let f = audit(std::slice::from_ref(&bad));
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.rows[0].rule, Rule::BridgeBinding);
        assert_eq!(f.rows[0].uid.as_deref(), Some("uid-p"));
        // The same guest as a VM's VMI is the VM's.
        bad.types = Some(kube::core::TypeMeta {
            api_version: "kubevirt.io/v1".into(),
            kind: "VirtualMachineInstance".into(),
        });
        bad.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachine".into(),
                name: "p".into(),
                uid: "uid-p".into(),
                ..Default::default()
            },
        ]);
        let mut findings = Findings::new();
        findings.judge(
            &View::new(),
            &Config::default(),
            Kind::VirtualMachineInstance,
            &bad,
        );
        assert!(findings.rows.is_empty() && findings.namespaces.is_empty());
    }

    #[test]
    fn every_namespace_gets_a_report_with_its_summary() {
        let f = audit(&[
            vm("a", "p", "mv", "10.0.0.5/24"),
            vm("b", "clean", "br", "10.0.0.6/24"),
        ]);
        let reports = reports(&f);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0]["metadata"]["namespace"], "a");
        assert_eq!(reports[0]["summary"]["fail"], 1);
        assert_eq!(reports[0]["results"][0]["rule"], "bridge-binding");
        assert_eq!(reports[0]["results"][0]["resources"][0]["uid"], "uid-p");
        assert_eq!(reports[1]["summary"]["pass"], 1);
        assert_eq!(reports[1]["results"], json!([]));
    }

    #[test]
    fn the_table_is_aligned() {
        let f = audit(&[
            vm("a", "p", "mv", "10.0.0.5/24"),
            vm("longer-namespace", "q", "mv", "10.0.0.6/24"),
        ]);
        let mut out = Vec::new();
        write_table(&f.rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let col = |l: &str| l.find("VirtualMachine").or_else(|| l.find("KIND"));
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines[0].starts_with("NAMESPACE") && lines[0].ends_with("MESSAGE"));
    }
}
