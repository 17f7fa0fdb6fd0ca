//! The caches' IO half: kube-rs watchers that feed the pure [`Applier`] from the API server.
use std::{
    pin::pin,
    sync::{Arc, PoisonError},
};

use futures::StreamExt as _;
use kube::{
    Api, Client,
    api::DynamicObject,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, watcher},
    },
};
use tracing::{info, warn};

use crate::inventory::{
    Conflict, ConflictCounts, Inventory,
    apply::{Applier, Cached},
};

/// What the watch loop updates besides the inventory.
pub trait Sink: Send + Sync {
    fn inventory(&self) -> &std::sync::RwLock<Inventory>;
    /// Called after every event with the object count and whether the kind has synced.
    fn cache_changed(&self, kind: Cached, objects: usize, synced: bool);
    /// Called after every event with the MACs and addresses held by more than one VM.
    fn conflicts_changed(&self, _counts: ConflictCounts) {}
}

/// One operator log line per new conflict (SPEC §2.10): both VMs are named, since this log
/// is not shown to tenants.
pub fn log_conflicts(conflicts: &[Conflict]) {
    for c in conflicts {
        warn!(
            kind = c.kind.label(),
            nad = %c.nad,
            value = %c.value,
            vm = %c.vm,
            other = %c.other,
            "conflict: {c}"
        );
    }
}

/// Watches one kind in the whole cluster and applies every event; runs until dropped.
/// Errors (API down, RBAC) are logged and retried with backoff by the watcher.
pub async fn watch(client: Client, kind: Cached, sink: Arc<dyn Sink>) {
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
        let (result, objects, conflicts, counts) = {
            let mut inventory = sink
                .inventory()
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            inventory.record_conflicts();
            let result = applier.apply(&mut inventory, event);
            (
                result,
                kind.count(&inventory),
                inventory.take_conflicts(),
                inventory.conflicts(),
            )
        };
        if let Err(e) = result {
            warn!(kind = kind.label(), error = %e, "object left out of the cache");
        }
        log_conflicts(&conflicts);
        sink.conflicts_changed(counts);
        if applier.synced() && !was_synced {
            info!(kind = kind.label(), objects, "cache synced");
        }
        sink.cache_changed(kind, objects, applier.synced());
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

    use serde_json::Value;

    use super::*;

    #[derive(Default)]
    struct TestSink {
        inventory: RwLock<Inventory>,
        synced: AtomicBool,
        changed: tokio::sync::Notify,
        conflicts: std::sync::Mutex<Vec<ConflictCounts>>,
    }

    impl Sink for TestSink {
        fn inventory(&self) -> &RwLock<Inventory> {
            &self.inventory
        }
        fn cache_changed(&self, _kind: Cached, _objects: usize, synced: bool) {
            self.synced.store(synced, Ordering::Release);
            self.changed.notify_one();
        }
        fn conflicts_changed(&self, counts: ConflictCounts) {
            self.conflicts.lock().unwrap().push(counts);
        }
    }

    /// Log lines, captured.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_conflict_in_the_cache_is_counted_and_logged_once() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let sink = Arc::new(TestSink::default());
        let task = tokio::spawn(watch(client, Cached::Vm, sink.clone()));
        let (_, reply) = handle.next_request().await.expect("a list request");
        // Two replicas each admitted one of these: same MAC on one NAD.
        let list = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineList",
            "metadata": {"resourceVersion": "10"},
            "items": [vm("a", "02:00:00:00:00:0a"), vm("b", "02:00:00:00:00:0a")]});
        reply.send_response(Response::new(Body::from(
            serde_json::to_vec(&list).unwrap(),
        )));
        let (_, reply) = handle.next_request().await.expect("a watch request");
        // `b` changes something else: the conflict is not new.
        let events = [json!({"type": "MODIFIED", "object": vm("b", "02:00:00:00:00:0a")})]
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>();
        reply.send_response(Response::new(Body::from(events.into_bytes())));
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while sink.conflicts.lock().unwrap().len() < 5 {
                sink.changed.notified().await;
            }
        })
        .await
        .expect("list and watch events applied");
        task.abort();
        let counts = sink.conflicts.lock().unwrap().clone();
        assert_eq!(
            counts[1],
            ConflictCounts::default(),
            "after `a`: {counts:?}"
        );
        assert_eq!(
            counts.last(),
            Some(&ConflictCounts {
                macs: 1,
                addresses: 0
            })
        );
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<&str> = text.lines().filter(|l| l.contains("conflict")).collect();
        assert_eq!(logged.len(), 1, "{text}");
        for needle in ["WARN", "02:00:00:00:00:0a", "infra/ext", "t/b", "t/a"] {
            assert!(logged[0].contains(needle), "{needle} not in {}", logged[0]);
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
        let task = tokio::spawn(watch(client, Cached::Vm, sink.clone()));

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
        let mac = |m| crate::model::mac::Mac::parse(m).unwrap();
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
