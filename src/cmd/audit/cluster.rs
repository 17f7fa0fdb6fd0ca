//! `audit`'s cluster half: the same client as `serve` (in-cluster, or `KUBECONFIG` /
//! `~/.kube/config`, plus `--kubeconfig` and `--context` as kubectl has them), and the same
//! lists ([`crate::cluster`]: a watch-cache snapshot decoded while it streams; pages when
//! the API server refuses one).
//!
//! One pass, in bounded memory: NADs first, then each guest kind; every object goes into the
//! view (its footprint) and is judged against the view so far, and only the object being
//! judged is held whole. A guest's verdict depends on the other guests only through what
//! they hold in common with it (a MAC, an address, a pinned address), so after the pass the
//! guests that share something with another ([`crate::inventory::Inventory::sharers`]: a
//! few, where there are conflicts) are read again one by one and judged against the whole
//! view. The rest are judged as they would be with every guest known.
use std::{io::Write, path::Path};

use std::sync::{Arc, Mutex, PoisonError};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    config::{KubeConfigOptions, Kubeconfig},
};

use super::{Error, Findings, Progress, Scope, View, name_of, namespace_of};
use crate::{
    admission,
    cluster::{Each, Item, Mode, PAGE},
    inventory::apply::Cached,
    model::{config::Config, kinds::Kind},
};

/// An error as one line: its message and its sources', without repeats.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}

/// A client, where it goes, and its default namespace.
pub struct Connection {
    pub client: Client,
    /// The API server's URL, for messages.
    pub server: String,
    /// The context's namespace, or the ServiceAccount's.
    pub namespace: String,
}

/// The client as `serve` builds it, or from `--kubeconfig` and `--context`.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Connection, Error> {
    let fail = |e: &dyn std::error::Error| Error::Client(one_line(e));
    let config = match (kubeconfig, context) {
        (None, None) => kube::Config::infer().await.map_err(|e| fail(&e))?,
        (file, context) => {
            let options = KubeConfigOptions {
                context: context.map(str::to_string),
                ..Default::default()
            };
            match file {
                Some(file) => {
                    let kubeconfig = Kubeconfig::read_from(file).map_err(|e| {
                        Error::Client(format!("{}: {}", file.display(), one_line(&e)))
                    })?;
                    kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
                }
                None => kube::Config::from_kubeconfig(&options).await,
            }
            .map_err(|e| fail(&e))?
        }
    };
    let namespace = config.default_namespace.clone();
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| fail(&e))?;
    Ok(Connection {
        client,
        server,
        namespace,
    })
}

fn api_resource(kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(kind.group(), kind.version(), kind.name()),
        kind.resource(),
    )
}

/// `virtualmachines.kubevirt.io/v1`, as a message names a resource.
fn resource_name(r: &ApiResource) -> String {
    format!("{}.{}/{}", r.plural, r.group, r.version)
}

/// A list's failure as `audit` reports it.
fn list_error(e: &crate::cluster::Error, resource: &str, server: &str) -> Error {
    match e {
        crate::cluster::Error::Expired(attempts) => Error::Expired {
            resource: resource.to_string(),
            attempts: *attempts,
        },
        e => Error::List {
            resource: resource.to_string(),
            server: server.to_string(),
            message: one_line(e),
        },
    }
}

/// What the pass builds, shared with the decoding thread.
struct State {
    view: View,
    findings: Findings,
    config: Config,
    scope: Scope,
    progress: Progress,
    /// What the list under way added to the view (`namespace`, `name`) and found, until it
    /// completes: a list that starts over, or fails, takes them back.
    added: Vec<(String, String)>,
    these: Findings,
    /// Notes for stderr (objects left out, kinds not served).
    notes: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Takes back what the list under way added and found.
    fn undo(&mut self) {
        for (ns, name) in std::mem::take(&mut self.added) {
            self.view.remove_guest(&ns, &name);
        }
        self.these = Findings::new();
    }

    fn nad(&mut self, raw: &str) {
        self.progress.tick("NetworkAttachmentDefinitions");
        // Restarts need nothing: a NAD listed again replaces itself.
        let result = admission::decode_object(raw)
            .map_err(|e| e.to_string())
            .and_then(|object| {
                self.view
                    .add_nad(&object)
                    .map_err(|e| format!("{}/{}: {e}", namespace_of(&object), name_of(&object)))
            });
        if let Err(e) = result {
            self.notes
                .push(format!("note: NetworkAttachmentDefinition {e} left out"));
        }
    }

    fn guest(&mut self, kind: Kind, raw: &str) {
        self.progress.tick(kind.name());
        let object = match admission::decode_object(raw) {
            Ok(object) => object,
            Err(e) => {
                self.notes
                    .push(format!("note: a {} left out: {e}", kind.name()));
                return;
            }
        };
        let (namespace, name) = (namespace_of(&object), name_of(&object));
        // Left out of the view if it cannot be read; judging it reports why.
        if self.view.add_guest(kind, &object).is_ok() {
            self.added.push((namespace.into(), name.into()));
        }
        if self.scope.includes(namespace) {
            self.these.judge(&self.view, &self.config, kind, &object);
        }
    }
}

/// Hands one kind's list items to the [`State`].
struct Pass {
    state: Shared,
    /// `None`: NetworkAttachmentDefinitions.
    kind: Option<Kind>,
}

impl Each for Pass {
    fn item(&mut self, item: Item<'_>) {
        let mut state = lock(&self.state);
        match (item, self.kind) {
            (Item::Restart, _) => state.undo(),
            (Item::Object(raw), None) => state.nad(raw.get()),
            (Item::Object(raw), Some(kind)) => state.guest(kind, raw.get()),
        }
    }
}

/// Audits the cluster behind `client`: every object of `scope`, with every namespace as the
/// cluster view. Notes (a kind whose CRD is missing, an object left out of the view) go to
/// `err`.
pub async fn audit(
    client: Client,
    server: &str,
    scope: &Scope,
    config: &Config,
    progress: Progress,
    err: &mut dyn Write,
) -> Result<Findings, Error> {
    let shared: Shared = Arc::new(Mutex::new(State {
        view: View::new(),
        findings: Findings::new(),
        config: config.clone(),
        scope: scope.clone(),
        progress,
        added: Vec::new(),
        these: Findings::new(),
        notes: Vec::new(),
    }));
    let mut mode = Mode::Snapshot;
    let mut served = Vec::new();
    let resources = std::iter::once((None, Cached::Nad.api_resource()))
        .chain(Kind::ALL.into_iter().map(|k| (Some(k), api_resource(k))));
    for (kind, ar) in resources {
        let resource = resource_name(&ar);
        loop {
            let pass = Pass {
                state: shared.clone(),
                kind,
            };
            let result = crate::cluster::list(&client, &ar, mode, PAGE, pass).await;
            let mut state = lock(&shared);
            match result {
                Ok(_) => {
                    let these = std::mem::take(&mut state.these);
                    state.findings.extend(these);
                    state.added.clear();
                    served.extend(kind);
                }
                Err(e) if e.status() == Some(404) => {
                    state.undo();
                    let note = match kind {
                        None => format!(
                            "note: {resource} is not served (is Multus installed?): every NAD reference is missing"
                        ),
                        Some(k) => format!(
                            "note: {resource} is not served (its CRD is not installed): no {} audited",
                            k.name()
                        ),
                    };
                    state.notes.push(note);
                }
                // As `serve` does: the API server refused a snapshot, so pages from now on.
                Err(e) if mode == Mode::Snapshot && e.refused() => {
                    state.undo();
                    mode = Mode::Pages;
                    continue;
                }
                Err(e) => return Err(list_error(&e, &resource, server)),
            }
            break;
        }
    }

    let (view, mut findings, notes) = {
        let mut state = lock(&shared);
        (
            std::mem::take(&mut state.view),
            std::mem::take(&mut state.findings),
            std::mem::take(&mut state.notes),
        )
    };
    // The guests whose verdict names others, judged again now that every guest is known.
    let again: Vec<(Kind, String, String)> = view
        .inventory
        .sharers()
        .into_iter()
        .filter(|(kind, who)| served.contains(kind) && scope.includes(who.namespace))
        .map(|(kind, who)| (kind, who.namespace.to_string(), who.name.to_string()))
        .collect();
    for (kind, namespace, name) in again {
        let ar = api_resource(kind);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
        let object = api.get_opt(&name).await.map_err(|e| {
            list_error(
                &crate::cluster::Error::Request(e),
                &resource_name(&ar),
                server,
            )
        })?;
        findings.forget(kind, &namespace, &name);
        // Deleted since it was listed: nothing to judge.
        if let Some(object) = object {
            findings.judge(&view, config, kind, &object);
        }
    }
    for note in &notes {
        writeln!(err, "{note}")?;
    }
    findings.sort();
    Ok(findings)
}

/// The cluster path against a mocked API server: pages, continue tokens, 410 Gone, 404.
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use hyper::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;
    use crate::cmd::audit::Counts;

    fn nad(name: &str, cni: &str) -> Value {
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"config": format!("{{\"cniVersion\":\"0.3.1\",\"type\":\"{cni}\",\"ipam\":{{\"type\":\"host-local\",\"subnet\":\"10.0.0.0/24\"}}}}")}
        })
    }

    fn vm(ns: &str, name: &str, nad: &str, address: &str) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                "annotations": {"kubevirt-net-webhook.io/networks": format!("{{\"ext\": \"{address}\"}}")}},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}}]}},
                "networks": [{"name": "ext", "multus": {"networkName": format!("infra/{nad}")}}]}}}
        })
    }

    fn list(items: Vec<Value>, next: Option<&str>) -> Response<Body> {
        let body = json!({"apiVersion": "v1", "kind": "List",
            "metadata": {"resourceVersion": "7", "continue": next.unwrap_or("")},
            "items": items});
        Response::new(Body::from(serde_json::to_vec(&body).unwrap()))
    }

    fn status(code: u16, body: &str) -> Response<Body> {
        let mut r = Response::new(Body::from(body.as_bytes().to_vec()));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        r
    }

    fn gone() -> Response<Body> {
        status(
            410,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"The provided continue parameter is too old","reason":"Expired","code":410}"#,
        )
    }

    /// A mocked API server: `answer(path, continue, calls so far on that path)` for lists;
    /// a GET of one object is answered from `objects`; with `refuse_snapshots`, a list at
    /// `resourceVersion=0` gets a 500. Every request's path and query is logged.
    fn serve(
        objects: Vec<Value>,
        refuse_snapshots: bool,
        answer: impl Fn(&str, Option<&str>, usize) -> Response<Body> + Send + 'static,
    ) -> (Client, Arc<Mutex<Vec<String>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let uri = request.uri().clone();
                let path = uri.path().to_string();
                let query = uri.query().unwrap_or("");
                let token = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("continue="))
                    .map(str::to_string);
                let calls = {
                    let mut log = seen.lock().unwrap();
                    log.push(uri.to_string());
                    log.iter()
                        .filter(|u| u.split('?').next() == Some(path.as_str()))
                        .count()
                };
                let parts: Vec<&str> = path.split('/').collect();
                // /apis/group/version/namespaces/ns/plural/name
                let response = if parts.len() == 8 && parts[4] == "namespaces" {
                    match objects.iter().find(|o| {
                        o["metadata"]["namespace"] == parts[5] && o["metadata"]["name"] == parts[7]
                    }) {
                        Some(o) => Response::new(Body::from(serde_json::to_vec(o).unwrap())),
                        None => status(404, NOT_FOUND),
                    }
                } else if refuse_snapshots && query.contains("resourceVersion=0") {
                    status(500, REFUSED)
                } else {
                    answer(&path, token.as_deref(), calls)
                };
                reply.send_response(response);
            }
        });
        (Client::new(service, "default"), log)
    }

    const NOT_FOUND: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}"#;
    const REFUSED: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: no progress notify","reason":"InternalError","code":500}"#;

    async fn run(client: Client, scope: Scope) -> (Result<Findings, Error>, String) {
        let mut err = Vec::new();
        let result = audit(
            client,
            "https://mock",
            &scope,
            &Config::default(),
            Progress::new(false),
            &mut err,
        )
        .await;
        (result, String::from_utf8(err).unwrap())
    }

    const NADS: &str = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions";
    const VMS: &str = "/apis/kubevirt.io/v1/virtualmachines";

    #[tokio::test]
    async fn pages_are_followed_a_410_restarts_and_a_missing_crd_is_skipped() {
        let (p, clean) = (
            vm("a", "p", "br", "10.0.0.5/24"),
            vm("a", "clean", "br", "10.0.0.9/24"),
        );
        let (q, m) = (
            vm("b", "q", "br", "10.0.0.5/24"),
            vm("b", "m", "mv", "10.0.0.7/24"),
        );
        let objects = vec![p.clone(), clean.clone(), q.clone(), m.clone()];
        let (client, log) = serve(objects, true, move |path, token, calls| {
            match (path, token) {
                (NADS, _) => list(vec![nad("br", "bridge"), nad("mv", "macvlan")], None),
                (VMS, None) => list(vec![p.clone(), clean.clone()], Some("page-2")),
                // The second page's token has expired, once: the list starts over.
                (VMS, Some("page-2")) if calls == 2 => gone(),
                (VMS, Some("page-2")) => list(vec![q.clone(), m.clone()], None),
                ("/apis/pool.kubevirt.io/v1beta1/virtualmachinepools", _) => {
                    status(404, "404 page not found")
                }
                (_, _) => list(vec![], None),
            }
        });
        let (result, err) = run(client, Scope::All).await;
        let findings = result.unwrap();
        let rows: Vec<(&str, &str, &str)> = findings
            .rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str(), r.rule.id()))
            .collect();
        // Each row once, although page 1 was read twice.
        assert_eq!(
            rows,
            [
                ("a", "p", "address-conflict"),
                ("b", "m", "bridge-binding"),
                ("b", "q", "address-conflict"),
            ]
        );
        assert!(
            findings.rows[0].message.contains("VM b/q"),
            "{:?}",
            findings.rows[0]
        );
        assert!(
            findings.rows[2].message.contains("VM a/p"),
            "{:?}",
            findings.rows[2]
        );
        assert_eq!(
            findings.namespaces["a"],
            Counts {
                clean: 1,
                failed: 1,
                errors: 0
            }
        );
        assert_eq!(
            findings.namespaces["b"],
            Counts {
                clean: 0,
                failed: 2,
                errors: 0
            }
        );
        assert!(
            err.contains("virtualmachinepools.pool.kubevirt.io/v1beta1 is not served"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let log = log.lock().unwrap();
        // The one snapshot, refused; pages from then on.
        assert!(
            log[0].starts_with(NADS) && log[0].contains("resourceVersion=0"),
            "{log:?}"
        );
        assert!(
            log[1..].iter().filter(|u| u.contains('?')).all(|u| {
                !u.contains("resourceVersion=0")
                    && u.contains(&format!("limit={}", crate::cluster::PAGE))
            }),
            "{log:?}"
        );
        let vm_lists: Vec<&String> = log.iter().filter(|u| u.starts_with(VMS)).collect();
        // Page 1 at any state, 410, page 1 again at the newest state, page 2: one pass.
        assert_eq!(vm_lists.len(), 4, "{log:?}");
        assert!(crate::cluster::first_page(vm_lists[0]), "{log:?}");
        assert!(crate::cluster::next_page(vm_lists[1], "page-2"), "{log:?}");
        assert!(
            crate::cluster::first_consistent_page(vm_lists[2]),
            "{log:?}"
        );
        assert!(crate::cluster::next_page(vm_lists[3], "page-2"), "{log:?}");
        // The two holders of 10.0.0.5 are read again, and only they.
        let gets: Vec<&String> = log.iter().filter(|u| !u.contains('?')).collect();
        assert_eq!(
            gets,
            [
                "/apis/kubevirt.io/v1/namespaces/a/virtualmachines/p",
                "/apis/kubevirt.io/v1/namespaces/b/virtualmachines/q"
            ]
        );
    }

    #[tokio::test]
    async fn one_snapshot_per_kind_and_a_conflict_found_late_is_reported_on_both() {
        // `q` comes after `p` in the list: `p` was judged before `q` was known.
        let (p, q) = (
            vm("a", "p", "br", "10.0.0.5/24"),
            vm("b", "q", "br", "10.0.0.5/24"),
        );
        let objects = vec![p.clone(), q.clone()];
        let (client, log) = serve(objects, false, move |path, _, _| match path {
            NADS => list(vec![nad("br", "bridge")], None),
            // A continue token in a snapshot is not followed: it is the whole list.
            VMS => list(vec![p.clone(), q.clone()], Some("ignored")),
            _ => list(vec![], None),
        });
        let (result, err) = run(client, Scope::All).await;
        let findings = result.unwrap();
        assert!(err.is_empty(), "{err}");
        let rows: Vec<(&str, &str)> = findings
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.message.as_str()))
            .collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].0 == "p" && rows[0].1.contains("VM b/q"), "{rows:?}");
        assert!(rows[1].0 == "q" && rows[1].1.contains("VM a/p"), "{rows:?}");
        let log = log.lock().unwrap();
        let lists: Vec<&String> = log.iter().filter(|u| u.contains('?')).collect();
        assert_eq!(lists.len(), 1 + Kind::ALL.len(), "{log:?}");
        assert!(
            lists
                .iter()
                .all(|u| u.contains("resourceVersion=0") && !u.contains("limit")),
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn a_namespace_is_judged_against_every_namespace() {
        let (p, q) = (
            vm("a", "p", "br", "10.0.0.5/24"),
            vm("b", "q", "br", "10.0.0.5/24"),
        );
        let objects = vec![p.clone(), q.clone()];
        let (client, log) = serve(objects, false, move |path, _, _| match path {
            NADS => list(vec![nad("br", "bridge")], None),
            VMS => list(vec![p.clone(), q.clone()], None),
            _ => list(vec![], None),
        });
        let (result, _) = run(client, Scope::Namespace("b".into())).await;
        let findings = result.unwrap();
        assert_eq!(findings.rows.len(), 1);
        assert_eq!(findings.rows[0].name, "q");
        assert!(findings.rows[0].message.contains("VM a/p"));
        assert_eq!(findings.namespaces.keys().collect::<Vec<_>>(), ["b"]);
        // `p` is outside the scope: not read again.
        let log = log.lock().unwrap();
        assert!(!log.iter().any(|u| u.contains("namespaces/a/")), "{log:?}");
    }

    #[tokio::test]
    async fn a_list_that_keeps_expiring_fails() {
        let (client, _) = serve(vec![], true, |path, token, _| match (path, token) {
            (VMS, None) => list(vec![vm("a", "p", "br", "10.0.0.5/24")], Some("x")),
            (VMS, Some(_)) => gone(),
            _ => list(vec![], None),
        });
        let (result, _) = run(client, Scope::All).await;
        let e = result.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Expired {
                    attempts: crate::cluster::ATTEMPTS,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("virtualmachines.kubevirt.io/v1"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_refused_list_is_an_error_with_the_reason() {
        let (client, _) = serve(vec![], false, |path, _, _| match path {
            NADS => status(
                403,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"network-attachment-definitions.k8s.cni.cncf.io is forbidden: User \"x\" cannot list resource","reason":"Forbidden","code":403}"#,
            ),
            _ => list(vec![], None),
        });
        let (result, _) = run(client, Scope::All).await;
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains("cannot list network-attachment-definitions")
                && e.contains("from https://mock")
                && e.contains("forbidden"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
