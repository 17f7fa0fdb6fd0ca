//! The caches' IO half: each cached resource is listed (the [`crate::cluster`] way: a
//! watch-cache snapshot decoded while it streams, or pages when the API server refuses one)
//! and then watched from the list's resourceVersion; every object goes through the pure
//! [`Applier`].
use std::{
    sync::{Arc, PoisonError},
    time::{Duration, Instant},
};

use backon::{BackoffBuilder as _, ExponentialBuilder};
use futures::TryStreamExt as _;
use kube::{
    Api, Client,
    api::{DynamicObject, WatchEvent, WatchParams},
    runtime::watcher::Event,
};
use tracing::{info, warn};

use crate::{
    cluster::{self, Item, Mode},
    inventory::{
        Conflict, ConflictCounts, Inventory,
        apply::{Applier, Cached},
        entry::Entry,
    },
};

/// What the watch loop updates besides the inventory.
pub trait Sink: Send + Sync {
    fn inventory(&self) -> &std::sync::RwLock<Inventory>;
    /// Called after every event with the object count and whether the kind has synced.
    fn cache_changed(&self, kind: Cached, objects: usize, synced: bool);
    /// Called after every event with the MACs and addresses held by more than one VM.
    fn conflicts_changed(&self, _counts: ConflictCounts) {}
    /// Called with the conflicts that events created (each once): logged.
    fn new_conflicts(&self, conflicts: &[Conflict]) {
        log_conflicts(conflicts);
    }
    /// Called when a full list has been applied, with how long it took.
    fn listed(&self, _kind: Cached, _mode: Mode, _elapsed: Duration) {}
    /// Called when the API server refused a snapshot list and the cache lists in pages from
    /// now on.
    fn fell_back(&self, _kind: Cached) {}
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

/// List items applied under one hold of the inventory's lock (readers wait at most that
/// long during a relist).
const BATCH: usize = 256;
/// How long a watch request asks to stay open; the API server ends it then, and the loop
/// watches again from where it was.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// Lists and watches one kind in the whole cluster, applying every object; runs until
/// dropped. Errors (API down, RBAC) are logged and retried with backoff.
pub async fn watch(client: Client, kind: Cached, mode: Mode, page: u32, sink: Arc<dyn Sink>) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times();
    let mut delays = backoff.build();
    let mut mode = mode;
    let mut applier = Applier::new(kind);
    loop {
        let started = Instant::now();
        let (returned, listed) = list(&client, kind, mode, page, applier, sink.clone()).await;
        applier = returned;
        let mut version = match listed {
            Ok(version) => version,
            Err(e) if mode == Mode::Snapshot && e.refused() => {
                info!(kind = kind.label(), error = %e, "the API server refused a list from its watch cache; listing in pages from now on");
                sink.fell_back(kind);
                mode = Mode::Pages;
                continue;
            }
            Err(e) => {
                warn!(kind = kind.label(), mode = mode.label(), error = %e, "list failed; retrying");
                tokio::time::sleep(delays.next().unwrap_or_default()).await;
                continue;
            }
        };
        let elapsed = started.elapsed();
        info!(
            kind = kind.label(),
            mode = mode.label(),
            seconds = elapsed.as_secs_f64(),
            "listed"
        );
        sink.listed(kind, mode, elapsed);
        delays = backoff.build();
        // Watch from the list's version until the API server no longer has it (410 Gone),
        // then list again.
        loop {
            match watch_from(&api, &mut version, &mut applier, sink.as_ref()).await {
                Ok(Watched::Ended) => delays = backoff.build(),
                Ok(Watched::Expired) => break,
                Err(e) => {
                    warn!(kind = kind.label(), error = %e, "watch failed; retrying");
                    tokio::time::sleep(delays.next().unwrap_or_default()).await;
                }
            }
        }
    }
}

/// One full list, applied as `Init`, `InitApply`..., `InitDone`. Returns the applier (it
/// holds the relist's names) and the list's version.
async fn list(
    client: &Client,
    kind: Cached,
    mode: Mode,
    page: u32,
    mut applier: Applier,
    sink: Arc<dyn Sink>,
) -> (Applier, cluster::Result<String>) {
    apply(&mut applier, sink.as_ref(), [Event::Init]);
    let synced = applier.synced();
    let lister = Lister {
        applier,
        sink,
        batch: Vec::with_capacity(BATCH),
    };
    match cluster::list(client, &kind.api_resource(), mode, page, lister).await {
        Ok((version, mut lister)) => {
            lister.batch.push(Event::InitDone);
            lister.flush();
            (lister.applier, Ok(version))
        }
        // The applier went down with the decoder; a cache that had synced stays ready (its
        // answers are as current as the last event) while the list is tried again.
        Err(e) => (Applier::resumed(kind, synced), Err(e)),
    }
}

/// A list's items, read into entries and applied in batches, on the decoder's thread.
struct Lister {
    applier: Applier,
    sink: Arc<dyn Sink>,
    batch: Vec<Event<Entry>>,
}

impl Lister {
    fn flush(&mut self) {
        apply(&mut self.applier, self.sink.as_ref(), self.batch.drain(..));
    }
}

impl cluster::Each for Lister {
    fn item(&mut self, item: Item<'_>) {
        self.batch.push(match item {
            Item::Restart => Event::Init,
            Item::Object(raw) => {
                Event::InitApply(Entry::from_json(self.applier.cached(), raw.get()))
            }
        });
        if self.batch.len() == BATCH {
            self.flush();
        }
    }
}

/// How a watch ended.
enum Watched {
    /// The API server closed it (its timeout): watch again from the last version.
    Ended,
    /// The version is too old for the API server (410 Gone): list again.
    Expired,
}

/// Watches from `version`, applying each change and moving `version` along.
async fn watch_from(
    api: &Api<DynamicObject>,
    version: &mut String,
    applier: &mut Applier,
    sink: &dyn Sink,
) -> Result<Watched, kube::Error> {
    // Bookmarks are on by default: they keep `version` recent while nothing changes.
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    let events = match api.watch(&params, version).await {
        Ok(events) => events,
        Err(kube::Error::Api(status)) if status.code == 410 => return Ok(Watched::Expired),
        Err(e) => return Err(e),
    };
    let mut events = std::pin::pin!(events);
    let cached = applier.cached();
    while let Some(event) = events.try_next().await? {
        let (event, object) = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                (Event::Apply(Entry::from_object(cached, &o)), o)
            }
            WatchEvent::Deleted(o) => (Event::Delete(Entry::from_object(cached, &o)), o),
            WatchEvent::Bookmark(b) => {
                *version = b.metadata.resource_version;
                continue;
            }
            WatchEvent::Error(status) if status.code == 410 => return Ok(Watched::Expired),
            WatchEvent::Error(status) => return Err(kube::Error::Api(status)),
        };
        if let Some(v) = object.metadata.resource_version {
            *version = v;
        }
        apply(applier, sink, [event]);
    }
    Ok(Watched::Ended)
}

/// Applies events under one hold of the lock, then tells the sink: conflicts (logged once
/// each), object count, synced.
fn apply(applier: &mut Applier, sink: &dyn Sink, events: impl IntoIterator<Item = Event<Entry>>) {
    let kind = applier.cached();
    let was_synced = applier.synced();
    let mut failed = Vec::new();
    let (objects, conflicts, counts) = {
        let mut inventory = sink
            .inventory()
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        inventory.record_conflicts();
        for event in events {
            if let Err(e) = applier.apply_entry(&mut inventory, event) {
                failed.push(e);
            }
        }
        (
            kind.count(&inventory),
            inventory.take_conflicts(),
            inventory.conflicts(),
        )
    };
    for e in failed {
        warn!(kind = kind.label(), error = %e, "object left out of the cache");
    }
    if !conflicts.is_empty() {
        sink.new_conflicts(&conflicts);
    }
    sink.conflicts_changed(counts);
    if applier.synced() && !was_synced {
        info!(kind = kind.label(), objects, "cache synced");
    }
    sink.cache_changed(kind, objects, applier.synced());
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
        /// The modes of the lists completed, in order.
        lists: std::sync::Mutex<Vec<Mode>>,
        fell_back: std::sync::atomic::AtomicUsize,
        reported: std::sync::Mutex<Vec<Conflict>>,
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
        fn listed(&self, _kind: Cached, mode: Mode, _elapsed: Duration) {
            self.lists.lock().unwrap().push(mode);
        }
        fn fell_back(&self, _kind: Cached) {
            self.fell_back.fetch_add(1, Ordering::Relaxed);
        }
        fn new_conflicts(&self, conflicts: &[Conflict]) {
            self.reported.lock().unwrap().extend_from_slice(conflicts);
        }
    }

    #[tokio::test]
    async fn a_conflict_in_the_cache_is_counted_and_reported_once() {
        let (mut handle, sink, task) = start(Cached::Vm);
        // Two replicas each admitted one of these: same MAC on one NAD.
        let list = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineList",
            "metadata": {"resourceVersion": "10"},
            "items": [vm("a", "02:00:00:00:00:0a"), vm("b", "02:00:00:00:00:0a")]});
        answer(&mut handle, json_response(200, &list)).await;
        // `b` changes something else: the conflict is not new.
        let events = [json!({"type": "MODIFIED", "object": vm("b", "02:00:00:00:00:0a")})]
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>();
        answer(&mut handle, Response::new(Body::from(events.into_bytes()))).await;
        // Init; the list's items and InitDone in one batch; the watch event.
        tokio::time::timeout(Duration::from_secs(10), async {
            while sink.conflicts.lock().unwrap().len() < 3 {
                sink.changed.notified().await;
            }
        })
        .await
        .expect("list and watch events applied");
        task.abort();
        let counts = sink.conflicts.lock().unwrap().clone();
        assert_eq!(counts[0], ConflictCounts::default(), "before the list");
        for after in &counts[1..] {
            assert_eq!(
                after,
                &ConflictCounts {
                    macs: 1,
                    addresses: 0
                }
            );
        }
        let reported = sink.reported.lock().unwrap().clone();
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert_eq!(
            (reported[0].vm.as_str(), reported[0].other.as_str()),
            ("t/b", "t/a")
        );
    }

    #[test]
    fn a_conflict_is_logged_for_the_operator_with_both_vms() {
        let lines = crate::test_log::Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .finish();
        let mut inventory = Inventory::new();
        inventory.record_conflicts();
        let nic = |mac| crate::inventory::NicPrint {
            nad: "infra/ext".into(),
            mac: crate::model::mac::Mac::parse(mac),
            addresses: vec![],
            wants_pinned: true,
        };
        inventory.upsert_vm("t", "a", vec![nic("02:00:00:00:00:0a")]);
        inventory.upsert_vm("t", "b", vec![nic("02:00:00:00:00:0a")]);
        let conflicts = inventory.take_conflicts();
        tracing::subscriber::with_default(subscriber, || log_conflicts(&conflicts));
        let text = lines.text();
        let logged: Vec<&str> = text.lines().collect();
        assert_eq!(logged.len(), 1, "{text}");
        for needle in [
            "WARN",
            "conflict",
            "02:00:00:00:00:0a",
            "infra/ext",
            "t/b",
            "t/a",
        ] {
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
        let task = tokio::spawn(watch(
            client,
            Cached::Vm,
            Mode::Snapshot,
            cluster::PAGE,
            sink.clone(),
        ));

        let (request, reply) = handle.next_request().await.expect("a list request");
        let uri = request.uri().to_string();
        assert!(
            uri.starts_with("/apis/kubevirt.io/v1/virtualmachines?")
                && uri.contains("resourceVersion=0")
                && !uri.contains("limit="),
            "a snapshot from the watch cache: {uri}"
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

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn json_response(status: u16, body: &Value) -> Response<Body> {
        let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap()));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        response
    }

    fn vm_list(version: &str, names: &[&str], next: Option<&str>) -> Value {
        let items: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| vm(n, &format!("02:00:00:00:00:{i:02x}")))
            .collect();
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineList",
            "metadata": {"resourceVersion": version, "continue": next.unwrap_or("")},
            "items": items})
    }

    /// Answers the next request with `response`; returns its URI.
    async fn answer(handle: &mut Handle, response: Response<Body>) -> String {
        let (request, reply) = handle.next_request().await.expect("a request");
        reply.send_response(response);
        request.uri().to_string()
    }

    /// Waits until the sink says synced, and returns the cached VM names.
    async fn synced(sink: &TestSink) -> usize {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !sink.synced.load(Ordering::Acquire) {
                sink.changed.notified().await;
            }
        })
        .await
        .expect("synced");
        sink.inventory.read().unwrap().vm_count()
    }

    fn start(kind: Cached) -> (Handle, Arc<TestSink>, tokio::task::JoinHandle<()>) {
        start_in(kind, Mode::Snapshot, cluster::PAGE)
    }

    fn start_in(
        kind: Cached,
        mode: Mode,
        page: u32,
    ) -> (Handle, Arc<TestSink>, tokio::task::JoinHandle<()>) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let sink = Arc::new(TestSink::default());
        let task = tokio::spawn(watch(
            Client::new(service, "default"),
            kind,
            mode,
            page,
            sink.clone(),
        ));
        (handle, sink, task)
    }

    #[tokio::test]
    async fn a_refused_snapshot_falls_back_to_pages_once_and_for_good() {
        let (mut handle, sink, task) = start(Cached::Vm);
        let refusal = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "etcdserver: no RequestWatchProgress", "reason": "InternalError", "code": 500});
        let uri = answer(&mut handle, json_response(500, &refusal)).await;
        assert!(uri.contains("resourceVersion=0"), "{uri}");
        // Pages: any version but 0, a limit, then the continue token alone.
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("20", &["a", "b"], Some("next"))),
        )
        .await;
        assert!(cluster::first_page(&uri), "{uri}");
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("20", &["c"], None)),
        )
        .await;
        assert!(cluster::next_page(&uri, "next"), "{uri}");
        assert_eq!(synced(&sink).await, 3);
        // The watch expires (410 Gone): the relist is in pages too, without a second fallback.
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}});
        let uri = answer(
            &mut handle,
            Response::new(Body::from(format!("{gone}\n").into_bytes())),
        )
        .await;
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=20"),
            "{uri}"
        );
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("30", &["c"], None)),
        )
        .await;
        assert!(cluster::first_page(&uri), "{uri}");
        let uri = answer(&mut handle, Response::new(Body::empty())).await;
        assert!(
            uri.contains("watch=true") && uri.contains("resourceVersion=30"),
            "{uri}"
        );
        task.abort();
        assert_eq!(sink.fell_back.load(Ordering::Relaxed), 1);
        assert_eq!(*sink.lists.lock().unwrap(), [Mode::Pages, Mode::Pages]);
        assert_eq!(
            sink.inventory.read().unwrap().vm_count(),
            1,
            "a and b dropped by the relist"
        );
    }

    #[tokio::test]
    async fn a_snapshot_cut_off_midway_is_listed_again_in_pages() {
        let (mut handle, sink, task) = start(Cached::Vm);
        let full = serde_json::to_string(&vm_list("10", &["a", "b", "c"], None)).unwrap();
        let cut = &full[..full.len() * 2 / 3];
        answer(
            &mut handle,
            Response::new(Body::from(cut.as_bytes().to_vec())),
        )
        .await;
        answer(
            &mut handle,
            json_response(200, &vm_list("11", &["b", "c"], None)),
        )
        .await;
        assert_eq!(synced(&sink).await, 2);
        task.abort();
        assert_eq!(sink.fell_back.load(Ordering::Relaxed), 1);
        assert_eq!(*sink.lists.lock().unwrap(), [Mode::Pages]);
        let inv = sink.inventory.read().unwrap();
        let me = crate::inventory::VmName {
            namespace: "t",
            name: "me",
        };
        let mac = |m| crate::model::mac::Mac::parse(m).unwrap();
        assert!(
            inv.mac_user("infra/ext", mac("02:00:00:00:00:00"), me)
                .is_some(),
            "b, first of its page"
        );
    }

    #[tokio::test]
    async fn a_synced_cache_stays_ready_while_a_relist_fails() {
        let (mut handle, sink, task) = start(Cached::Vm);
        answer(
            &mut handle,
            json_response(200, &vm_list("10", &["a"], None)),
        )
        .await;
        assert_eq!(synced(&sink).await, 1);
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "status": "Failure", "message": "too old", "reason": "Expired", "code": 410}});
        answer(
            &mut handle,
            Response::new(Body::from(format!("{gone}\n").into_bytes())),
        )
        .await;
        let (_, reply) = handle.next_request().await.expect("the relist");
        reply.send_error(std::io::Error::other("connection reset"));
        // The next attempt comes after the failure was handled.
        let (request, _reply) = handle.next_request().await.expect("the relist again");
        assert!(request.uri().to_string().contains("resourceVersion=0"));
        assert!(sink.synced.load(Ordering::Acquire), "ready while relisting");
        task.abort();
    }

    #[tokio::test]
    async fn list_mode_pages_never_asks_for_a_snapshot() {
        let (mut handle, sink, task) = start_in(Cached::Vm, Mode::Pages, cluster::PAGE);
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("10", &["a"], None)),
        )
        .await;
        assert!(cluster::first_page(&uri), "{uri}");
        assert_eq!(synced(&sink).await, 1);
        task.abort();
        assert_eq!(sink.fell_back.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn pages_are_of_the_size_asked_for() {
        let (mut handle, sink, task) = start_in(Cached::Vm, Mode::Pages, 7);
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("10", &["a"], Some("next"))),
        )
        .await;
        assert!(
            uri.contains("limit=7&") || uri.ends_with("limit=7"),
            "{uri}"
        );
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("10", &["b"], None)),
        )
        .await;
        assert!(
            uri.contains("limit=7") && uri.contains("continue=next"),
            "{uri}"
        );
        assert_eq!(synced(&sink).await, 2);
        task.abort();
    }

    #[tokio::test]
    async fn no_answer_is_retried_in_the_same_mode() {
        let (mut handle, sink, task) = start(Cached::Vm);
        let (_, reply) = handle.next_request().await.expect("a request");
        reply.send_error(std::io::Error::other("connection refused"));
        // After a backoff, a snapshot again: an outage is no refusal.
        let uri = answer(
            &mut handle,
            json_response(200, &vm_list("10", &["a"], None)),
        )
        .await;
        assert!(uri.contains("resourceVersion=0"), "{uri}");
        assert_eq!(synced(&sink).await, 1);
        task.abort();
        assert_eq!(sink.fell_back.load(Ordering::Relaxed), 0);
        assert_eq!(*sink.lists.lock().unwrap(), [Mode::Snapshot]);
    }
}
