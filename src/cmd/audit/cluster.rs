//! `audit`'s cluster half: the same client as `serve` (in-cluster, or `KUBECONFIG` /
//! `~/.kube/config`, plus `--kubeconfig` and `--context` as kubectl has them), every kind
//! listed page by page.
//!
//! Memory: two passes. The first lists NADs and every guest kind in all namespaces and keeps
//! only the inventory (NADs and footprints: megabytes for 100,000 VMs, as the server's
//! caches); the second lists the guest kinds again (only the namespace asked for, with `-n`)
//! and judges each page's objects as they arrive, so no more than one page of whole objects
//! is held at any time. The price is a second read of the guests; an object created between
//! the two passes is judged, but the objects judged before it did not see it.
use std::{io::Write, path::Path};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use super::{Error, Findings, Progress, Scope, View, name_of, namespace_of};
use crate::{
    inventory::apply::Cached,
    model::{config::Config, kinds::Kind},
};

/// Objects per list page.
pub const PAGE: u32 = 500;
/// How many times one kind's list is started after its continue token expired (410 Gone).
pub const ATTEMPTS: usize = 3;

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

/// One thing a paged list hands on.
#[derive(Debug)]
pub enum Item {
    /// The list starts over (its continue token expired): forget what it handed on so far.
    Restart,
    /// The next object (boxed: it is large beside `Restart`).
    Object(Box<DynamicObject>),
}

/// How a list ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Every object was handed on.
    Done,
    /// The resource does not exist (its CRD is not installed): 404 on the first page.
    Missing,
}

/// Lists every object of `api`, [`PAGE`] at a time, handing each to `each`. A 410 Gone (the
/// continue token expired: the API server compacted past it) starts the list over, at most
/// [`ATTEMPTS`] times in all.
pub async fn list_all(
    api: &Api<DynamicObject>,
    server: &str,
    resource: &str,
    mut each: impl FnMut(Item),
) -> Result<Listed, Error> {
    let mut attempt = 1;
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        match api.list(&params).await {
            Ok(list) => {
                for object in list.items {
                    each(Item::Object(Box::new(object)));
                }
                match list.metadata.continue_ {
                    Some(next) if !next.is_empty() => token = Some(next),
                    _ => return Ok(Listed::Done),
                }
            }
            Err(kube::Error::Api(status)) if status.code == 410 => {
                if attempt == ATTEMPTS {
                    return Err(Error::Expired {
                        resource: resource.to_string(),
                        attempts: attempt,
                    });
                }
                attempt += 1;
                token = None;
                each(Item::Restart);
            }
            Err(kube::Error::Api(status)) if status.code == 404 && token.is_none() => {
                return Ok(Listed::Missing);
            }
            Err(e) => {
                return Err(Error::List {
                    resource: resource.to_string(),
                    server: server.to_string(),
                    message: one_line(&e),
                });
            }
        }
    }
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

/// Audits the cluster behind `client`: every object of `scope`, with every namespace as the
/// cluster view. Notes (a kind whose CRD is missing, an object left out of the view) go to
/// `err`.
pub async fn audit(
    client: Client,
    server: &str,
    scope: &Scope,
    config: &Config,
    mut progress: Progress,
    err: &mut dyn Write,
) -> Result<Findings, Error> {
    let mut view = View::new();
    let mut missing = Vec::new();

    // Pass 1: the cluster view.
    let nads = Cached::Nad.api_resource();
    let resource = resource_name(&nads);
    let mut notes = Vec::new();
    let listed = list_all(
        &Api::all_with(client.clone(), &nads),
        server,
        &resource,
        |item| {
            if let Item::Object(object) = item {
                progress.tick("NetworkAttachmentDefinitions");
                // Restarts need nothing: a NAD listed again replaces itself.
                if let Err(e) = view.add_nad(&object) {
                    notes.push(format!(
                        "note: NetworkAttachmentDefinition {}/{} left out: {e}",
                        namespace_of(&object),
                        name_of(&object)
                    ));
                }
            }
        },
    )
    .await?;
    if listed == Listed::Missing {
        notes.push(format!(
            "note: {resource} is not served (is Multus installed?): every NAD reference is missing"
        ));
    }
    for kind in Kind::ALL {
        let ar = api_resource(kind);
        let resource = resource_name(&ar);
        let mut added: Vec<(String, String)> = Vec::new();
        let listed = list_all(
            &Api::all_with(client.clone(), &ar),
            server,
            &resource,
            |item| {
                match item {
                    Item::Restart => {
                        for (ns, name) in added.drain(..) {
                            view.remove_guest(&ns, &name);
                        }
                    }
                    Item::Object(object) => {
                        progress.tick(kind.name());
                        // Left out of the view here; judged (and reported) in pass 2.
                        if view.add_guest(kind, &object).is_ok() {
                            added.push((namespace_of(&object).into(), name_of(&object).into()));
                        }
                    }
                }
            },
        )
        .await?;
        if listed == Listed::Missing {
            notes.push(format!(
                "note: {resource} is not served (its CRD is not installed): no {} audited",
                kind.name()
            ));
            missing.push(kind);
        }
    }
    for note in notes {
        writeln!(err, "{note}")?;
    }

    // Pass 2: each object judged against the view, page by page.
    let mut findings = Findings::new();
    for kind in Kind::ALL.into_iter().filter(|k| !missing.contains(k)) {
        let ar = api_resource(kind);
        let api = match scope {
            Scope::All => Api::all_with(client.clone(), &ar),
            Scope::Namespace(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        };
        let mut these = Findings::new();
        let listed = list_all(&api, server, &resource_name(&ar), |item| match item {
            Item::Restart => these = Findings::new(),
            Item::Object(object) => {
                progress.tick(kind.name());
                these.judge(&view, config, kind, &object);
            }
        })
        .await?;
        // Removed in between: nothing to judge.
        if listed == Listed::Done {
            findings.extend(these);
        }
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

    /// A mocked API server: `answer(path, continue, calls so far on that path)`; every
    /// request's path and query is logged.
    fn serve(
        answer: impl Fn(&str, Option<&str>, usize) -> Response<Body> + Send + 'static,
    ) -> (Client, Arc<Mutex<Vec<String>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let uri = request.uri().clone();
                let path = uri.path().to_string();
                let token = uri.query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("continue="))
                        .map(str::to_string)
                });
                let calls = {
                    let mut log = seen.lock().unwrap();
                    log.push(uri.to_string());
                    log.iter()
                        .filter(|u| u.split('?').next() == Some(path.as_str()))
                        .count()
                };
                reply.send_response(answer(&path, token.as_deref(), calls));
            }
        });
        (Client::new(service, "default"), log)
    }

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
        let (client, log) = serve(|path, token, calls| match (path, token) {
            (NADS, _) => list(vec![nad("br", "bridge"), nad("mv", "macvlan")], None),
            (VMS, None) => list(
                vec![
                    vm("a", "p", "br", "10.0.0.5/24"),
                    vm("a", "clean", "br", "10.0.0.9/24"),
                ],
                Some("page-2"),
            ),
            // The second page's token has expired, once: the list starts over.
            (VMS, Some("page-2")) if calls == 2 => gone(),
            (VMS, Some("page-2")) => list(
                vec![
                    vm("b", "q", "br", "10.0.0.5/24"),
                    vm("b", "m", "mv", "10.0.0.7/24"),
                ],
                None,
            ),
            ("/apis/pool.kubevirt.io/v1beta1/virtualmachinepools", _) => {
                status(404, "404 page not found")
            }
            (_, _) => list(vec![], None),
        });
        let (result, err) = run(client, Scope::All).await;
        let findings = result.unwrap();
        let rows: Vec<(&str, &str, &str)> = findings
            .rows
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str(), r.rule.id()))
            .collect();
        // Each row once, although page 1 was read twice in each pass.
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
        assert!(
            err.contains("virtualmachinepools.pool.kubevirt.io/v1beta1 is not served"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let log = log.lock().unwrap();
        assert!(
            log.iter()
                .all(|u| u.contains("limit=500") && !u.contains("watch")),
            "{log:?}"
        );
        let vm_lists = log.iter().filter(|u| u.starts_with(VMS)).count();
        // Pass 1: page 1, 410, page 1, page 2; pass 2: page 1, page 2.
        assert_eq!(vm_lists, 6, "{log:?}");
        // The missing kind is not asked for again in pass 2.
        assert_eq!(
            log.iter()
                .filter(|u| u.contains("virtualmachinepools"))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_namespace_is_judged_against_every_namespace() {
        let (client, log) = serve(|path, _, _| match path {
            NADS => list(vec![nad("br", "bridge")], None),
            VMS => list(
                vec![
                    vm("a", "p", "br", "10.0.0.5/24"),
                    vm("b", "q", "br", "10.0.0.5/24"),
                ],
                None,
            ),
            "/apis/kubevirt.io/v1/namespaces/b/virtualmachines" => {
                list(vec![vm("b", "q", "br", "10.0.0.5/24")], None)
            }
            _ => list(vec![], None),
        });
        let (result, _) = run(client, Scope::Namespace("b".into())).await;
        let findings = result.unwrap();
        assert_eq!(findings.rows.len(), 1);
        assert_eq!(findings.rows[0].name, "q");
        assert!(findings.rows[0].message.contains("VM a/p"));
        assert!(
            log.lock()
                .unwrap()
                .iter()
                .any(|u| u.starts_with("/apis/kubevirt.io/v1/namespaces/b/virtualmachines?"))
        );
    }

    #[tokio::test]
    async fn a_list_that_keeps_expiring_fails() {
        let (client, _) = serve(|path, token, _| match (path, token) {
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
                    attempts: ATTEMPTS,
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
        let (client, _) = serve(|path, _, _| match path {
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
