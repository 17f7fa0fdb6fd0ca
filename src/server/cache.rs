//! The cluster view behind the engine: NADs and VMs from watch events (kube-rs watchers) or
//! from files, applied to the shared [`Inventory`]. VM objects are projected to their footprint
//! and dropped at once, so 100,000 VMs cost megabytes, not gigabytes (SPEC §3).
//!
//! [`Applier`] is the pure part (events in, inventory changed) so that it is tested without a
//! cluster; [`watch`] is the loop that feeds it from the API server.
use std::{
    collections::HashSet,
    path::Path,
    pin::pin,
    sync::{Arc, PoisonError},
};

use futures::StreamExt as _;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event, watcher},
    },
};
use serde_json::Value;
use tracing::{info, warn};

use crate::{inventory::Inventory, manifests, nad::Nad};

/// The two cached kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Nad,
    Vm,
}

impl Kind {
    /// The `kind` label of the cache metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Nad => "nad",
            Kind::Vm => "vm",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, kind, plural) = match self {
            Kind::Nad => (
                "k8s.cni.cncf.io",
                "NetworkAttachmentDefinition",
                "network-attachment-definitions",
            ),
            Kind::Vm => ("kubevirt.io", "VirtualMachine", "virtualmachines"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    }

    /// Whether a manifest document is of this kind.
    fn matches(self, doc: &manifests::Document) -> bool {
        match self {
            Kind::Nad => doc.kind() == "NetworkAttachmentDefinition",
            Kind::Vm => {
                doc.kind() == "VirtualMachine" && doc.api_version().starts_with("kubevirt.io/")
            }
        }
    }

    /// How many objects of this kind the inventory holds (VMs: those with a Multus NIC).
    pub fn count(self, inventory: &Inventory) -> usize {
        match self {
            Kind::Nad => inventory.nad_count(),
            Kind::Vm => inventory.vm_count(),
        }
    }
}

/// Errors of the caches.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object could not be read; it is left out of (or removed from) the cache.
    #[error("{kind} {namespace}/{name}: {message}")]
    Object {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    /// A `--nads`/`--vms` path could not be read.
    #[error(transparent)]
    Manifest(#[from] manifests::Error),
    /// A file holds an object that is not a Kubernetes object the cache can read.
    #[error("{origin}: {message}")]
    File { origin: String, message: String },
}

/// Applies one kind's watch events to an [`Inventory`].
#[derive(Debug)]
pub struct Applier {
    kind: Kind,
    /// `namespace/name` of the objects listed since the last `Init`.
    relist: Option<HashSet<String>>,
    synced: bool,
}

/// The JSON form of a watched object without what the engine never reads.
fn into_value(obj: DynamicObject) -> Value {
    let DynamicObject {
        mut metadata, data, ..
    } = obj;
    metadata.managed_fields = None;
    let mut value = match data {
        Value::Object(map) => Value::Object(map),
        _ => Value::Object(Default::default()),
    };
    value["metadata"] = serde_json::to_value(metadata).unwrap_or(Value::Null);
    value
}

impl Applier {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            relist: None,
            synced: false,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// True once a full list has been applied.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Applies one event. An object that cannot be read is removed from the cache (its old
    /// footprint is stale) and reported; the cache stays consistent either way.
    pub fn apply(
        &mut self,
        inventory: &mut Inventory,
        event: Event<DynamicObject>,
    ) -> Result<(), Error> {
        match event {
            Event::Init => {
                self.relist = Some(HashSet::new());
                Ok(())
            }
            Event::InitApply(obj) => {
                let (namespace, name) = names(&obj);
                if let Some(seen) = &mut self.relist {
                    seen.insert(format!("{namespace}/{name}"));
                }
                self.upsert(inventory, obj, namespace, name)
            }
            Event::InitDone => {
                // Objects deleted while the watch was down are the ones the relist missed.
                if let Some(seen) = self.relist.take() {
                    let keep = |ns: &str, name: &str| seen.contains(&format!("{ns}/{name}"));
                    match self.kind {
                        Kind::Nad => inventory.retain_nads(keep),
                        Kind::Vm => inventory.retain_vms(keep),
                    }
                }
                self.synced = true;
                Ok(())
            }
            Event::Apply(obj) => {
                let (namespace, name) = names(&obj);
                self.upsert(inventory, obj, namespace, name)
            }
            Event::Delete(obj) => {
                let (namespace, name) = names(&obj);
                self.remove(inventory, &namespace, &name);
                Ok(())
            }
        }
    }

    fn remove(&self, inventory: &mut Inventory, namespace: &str, name: &str) {
        match self.kind {
            Kind::Nad => inventory.remove_nad(namespace, name),
            Kind::Vm => inventory.remove_vm(namespace, name),
        }
    }

    fn upsert(
        &self,
        inventory: &mut Inventory,
        obj: DynamicObject,
        namespace: String,
        name: String,
    ) -> Result<(), Error> {
        let value = into_value(obj);
        let result = match self.kind {
            Kind::Nad => Nad::from_object(&value).map(|nad| inventory.upsert_nad(nad)),
            Kind::Vm => inventory.upsert_vm_object(&value, &namespace),
        };
        result.map_err(|message| {
            self.remove(inventory, &namespace, &name);
            Error::Object {
                kind: self.kind.label(),
                namespace,
                name,
                message,
            }
        })
    }
}

/// `namespace` (default `default`, as for a manifest without one) and `name`.
fn names(obj: &DynamicObject) -> (String, String) {
    (
        obj.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        obj.metadata.name.clone().unwrap_or_default(),
    )
}

/// Loads one kind from `--nads`/`--vms`, through the same path as watch events. Unlike a
/// watch, a bad object is an error: the files are the operator's, fixed before start.
pub fn load_files(kind: Kind, path: &Path, inventory: &mut Inventory) -> Result<(), Error> {
    let mut applier = Applier::new(kind);
    applier.apply(inventory, Event::Init)?;
    // The operator's own files, which may describe a whole cluster: `review`'s limits, which
    // guard CI runners against hostile repositories, would be too tight here.
    let limits = manifests::Limits {
        max_file_bytes: 1 << 30,
        max_total_bytes: usize::MAX,
    };
    for doc in manifests::read_path_with(path, &limits)? {
        if !kind.matches(&doc) {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(doc.value).map_err(|e| Error::File {
            origin: doc.origin.clone(),
            message: e.to_string(),
        })?;
        applier
            .apply(inventory, Event::InitApply(obj))
            .map_err(|e| Error::File {
                origin: doc.origin,
                message: e.to_string(),
            })?;
    }
    applier.apply(inventory, Event::InitDone)
}

/// What the watch loop updates besides the inventory.
pub trait Sink: Send + Sync {
    fn inventory(&self) -> &std::sync::RwLock<Inventory>;
    /// Called after every event with the object count and whether the kind has synced.
    fn cache_changed(&self, kind: Kind, objects: usize, synced: bool);
}

/// Watches one kind in the whole cluster and applies every event; runs until dropped.
/// Errors (API down, RBAC) are logged and retried with backoff by the watcher.
pub async fn watch(client: Client, kind: Kind, sink: Arc<dyn Sink>) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.api_resource());
    // Paginated list then watch: memory stays bounded by one page, whatever the cluster size.
    let mut events = pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut applier = Applier::new(kind);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                warn!(kind = kind.label(), error = %e, "watch failed; retrying");
                continue;
            }
        };
        let was_synced = applier.synced();
        let (result, objects) = {
            let mut inventory = sink
                .inventory()
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let result = applier.apply(&mut inventory, event);
            (result, kind.count(&inventory))
        };
        if let Err(e) = result {
            warn!(kind = kind.label(), error = %e, "object left out of the cache");
        }
        if applier.synced() && !was_synced {
            info!(kind = kind.label(), objects, "cache synced");
        }
        sink.cache_changed(kind, objects, applier.synced());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        admission::{self, Endpoint},
        config::Config,
        engine::Operation,
    };

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn nad(name: &str, cni: &str) -> DynamicObject {
        obj(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "infra", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"config": format!("{{\"cniVersion\":\"0.3.1\",\"type\":\"{cni}\"}}")}
        }))
    }

    fn vm(name: &str, mac: Option<&str>) -> Value {
        let mut iface = json!({"name": "ext", "bridge": {}});
        if let Some(mac) = mac {
            iface["macAddress"] = json!(mac);
        }
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "t"},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [iface]}},
                "networks": [{"name": "ext", "multus": {"networkName": "infra/ext"}}]}}}
        })
    }

    /// The /validate answer for `object`: (allowed, message).
    fn validate(inventory: &Inventory, object: &Value) -> (bool, String) {
        let body = admission::request_for("u", Operation::Create, "t", object, None, false);
        let reply = admission::review(
            body.to_string().as_bytes(),
            Endpoint::Validate,
            inventory,
            &Config::default(),
        )
        .unwrap();
        (reply.allowed, reply.message.unwrap_or_default())
    }

    #[test]
    fn nad_events_change_the_answers() {
        let mut inv = Inventory::new();
        let mut nads = Applier::new(Kind::Nad);
        let me = vm("me", None);
        assert!(validate(&inv, &me).0, "a missing NAD only warns");
        nads.apply(&mut inv, Event::Apply(nad("ext", "macvlan")))
            .unwrap();
        let (allowed, message) = validate(&inv, &me);
        assert!(!allowed && message.contains("macvlan"), "{message}");
        nads.apply(&mut inv, Event::Apply(nad("ext", "bridge")))
            .unwrap();
        assert!(validate(&inv, &me).0, "updated to a bridge NAD");
        nads.apply(&mut inv, Event::Apply(nad("ext", "ipvlan")))
            .unwrap();
        assert!(!validate(&inv, &me).0);
        nads.apply(&mut inv, Event::Delete(nad("ext", "ipvlan")))
            .unwrap();
        assert!(validate(&inv, &me).0, "deleted");
        assert_eq!(inv.nad_count(), 0);

        // A relist brings back what exists and drops what no longer does.
        nads.apply(&mut inv, Event::Apply(nad("stale", "bridge")))
            .unwrap();
        assert!(!nads.synced());
        for event in [
            Event::Init,
            Event::InitApply(nad("ext", "macvlan")),
            Event::InitDone,
        ] {
            nads.apply(&mut inv, event).unwrap();
        }
        assert!(nads.synced());
        assert!(!validate(&inv, &me).0);
        assert!(inv.nad("infra", "stale").is_none() && inv.nad_count() == 1);
        for event in [Event::Init, Event::InitDone] {
            nads.apply(&mut inv, event).unwrap();
        }
        assert!(validate(&inv, &me).0 && inv.nad_count() == 0);
    }

    #[test]
    fn vm_events_change_the_conflict_answers() {
        let mut inv = Inventory::new();
        Applier::new(Kind::Nad)
            .apply(&mut inv, Event::Apply(nad("ext", "bridge")))
            .unwrap();
        let mut vms = Applier::new(Kind::Vm);
        let mac = "02:aa:00:00:00:01";
        let me = vm("me", Some(mac));
        assert!(validate(&inv, &me).0);

        vms.apply(&mut inv, Event::Apply(obj(vm("other", Some(mac)))))
            .unwrap();
        assert!(!validate(&inv, &me).0, "MAC held by another VM");
        vms.apply(
            &mut inv,
            Event::Apply(obj(vm("other", Some("02:aa:00:00:00:02")))),
        )
        .unwrap();
        assert!(validate(&inv, &me).0, "the other VM changed its MAC");
        vms.apply(&mut inv, Event::Apply(obj(vm("other", Some(mac)))))
            .unwrap();
        vms.apply(&mut inv, Event::Delete(obj(vm("other", Some(mac)))))
            .unwrap();
        assert!(validate(&inv, &me).0, "the other VM is gone");

        // Relist: `other` was deleted while the watch was down, `third` was created.
        vms.apply(&mut inv, Event::Apply(obj(vm("other", Some(mac)))))
            .unwrap();
        for event in [
            Event::Init,
            Event::InitApply(obj(vm("third", Some("02:aa:00:00:00:03")))),
            Event::InitDone,
        ] {
            vms.apply(&mut inv, event).unwrap();
        }
        assert!(validate(&inv, &me).0);
        assert_eq!(inv.vm_count(), 1);
        assert!(!validate(&inv, &vm("me", Some("02:aa:00:00:00:03"))).0);

        // An object that no longer decodes loses its stale footprint and is reported.
        let mut broken = vm("third", None);
        broken["spec"]["template"]["spec"]["networks"] = json!("not a list");
        let e = vms.apply(&mut inv, Event::Apply(obj(broken))).unwrap_err();
        assert!(e.to_string().contains("t/third"), "{e}");
        assert_eq!(inv.vm_count(), 0);
    }

    #[test]
    fn files_load_through_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("all.yaml"),
            format!(
                "{}\n---\n{}\n",
                serde_json::to_string(&nad("ext", "macvlan")).unwrap(),
                vm("other", Some("02:aa:00:00:00:01"))
            ),
        )
        .unwrap();
        let mut inv = Inventory::new();
        load_files(Kind::Nad, dir.path(), &mut inv).unwrap();
        load_files(Kind::Vm, dir.path(), &mut inv).unwrap();
        assert_eq!((inv.nad_count(), inv.vm_count()), (1, 1));
        std::fs::write(dir.path().join("bad.yaml"), "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: x}\nspec: {config: 5}\n").unwrap();
        let e = load_files(Kind::Nad, dir.path(), &mut inv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.yaml") && e.contains("spec.config"), "{e}");
    }
}

/// The watch loop against a mocked API server: list, then watch events.
#[cfg(test)]
mod watch_tests {
    use std::sync::{
        RwLock,
        atomic::{AtomicBool, Ordering},
    };

    use hyper::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct TestSink {
        inventory: RwLock<Inventory>,
        synced: AtomicBool,
        changed: tokio::sync::Notify,
    }

    impl Sink for TestSink {
        fn inventory(&self) -> &RwLock<Inventory> {
            &self.inventory
        }
        fn cache_changed(&self, _kind: Kind, _objects: usize, synced: bool) {
            self.synced.store(synced, Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn vm(name: &str, mac: &str) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "t", "resourceVersion": "1"},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}, "macAddress": mac}]}},
                "networks": [{"name": "ext", "multus": {"networkName": "infra/ext"}}]}}}})
    }

    #[tokio::test]
    async fn list_then_watch_fills_the_inventory() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let sink = Arc::new(TestSink::default());
        let task = tokio::spawn(watch(client, Kind::Vm, sink.clone()));

        let (request, reply) = handle.next_request().await.expect("a list request");
        let uri = request.uri().to_string();
        assert!(
            uri.starts_with("/apis/kubevirt.io/v1/virtualmachines?"),
            "{uri}"
        );
        let list = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineList",
            "metadata": {"resourceVersion": "10"},
            "items": [vm("a", "02:00:00:00:00:0a"), vm("b", "02:00:00:00:00:0b")]});
        reply.send_response(Response::new(Body::from(
            serde_json::to_vec(&list).unwrap(),
        )));

        let (request, reply) = handle.next_request().await.expect("a watch request");
        let uri = request.uri().to_string();
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=10"),
            "{uri}"
        );
        let events = [
            json!({"type": "DELETED", "object": vm("a", "02:00:00:00:00:0a")}),
            json!({"type": "ADDED", "object": vm("c", "02:00:00:00:00:0c")}),
        ]
        .iter()
        .map(|e| format!("{e}\n"))
        .collect::<String>();
        reply.send_response(Response::new(Body::from(events.into_bytes())));

        let me = crate::inventory::VmName {
            namespace: "t",
            name: "me",
        };
        let mac = |m| crate::mac::Mac::parse(m).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                {
                    let inv = sink.inventory.read().unwrap();
                    if sink.synced.load(Ordering::Acquire)
                        && inv
                            .mac_user("infra/ext", mac("02:00:00:00:00:0c"), me)
                            .is_some()
                    {
                        assert!(
                            inv.mac_user("infra/ext", mac("02:00:00:00:00:0a"), me)
                                .is_none()
                        );
                        assert!(
                            inv.mac_user("infra/ext", mac("02:00:00:00:00:0b"), me)
                                .is_some()
                        );
                        assert_eq!(inv.vm_count(), 2);
                        break;
                    }
                }
                sink.changed.notified().await;
            }
        })
        .await
        .expect("list and watch events applied");
        task.abort();
    }
}
