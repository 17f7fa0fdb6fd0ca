//! The one fixture builder: VMs (and the other guest kinds), NADs, inventories, and the
//! questions the engine and the admission layer answer. Shared by the tests, the benches and
//! the examples (those include this file by path), so each scenario is written once.
#![allow(dead_code)]

use kube::core::{DynamicObject, admission::Operation};
use kubevirt_net_webhook::{
    admission::{Answer, Endpoint, Parsed},
    engine::{self, Mutation, Object, Request, Verdict},
    inventory::Inventory,
    model::{config::Config, kinds::Kind, nad::Nad},
};
use serde_json::{Value, json};

/// The namespace of the fixtures' VMs.
pub const NS: &str = "team-a";

/// A VM with these interfaces and networks, in [`NS`].
pub fn vm(name: &str, interfaces: Value, networks: Value) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"memory": {"guest": "1Gi"}, "devices": {"interfaces": interfaces}},
            "networks": networks,
        }}}
    })
}

/// `default` (masquerade, pod) + `ext` (bridge) on NAD `nad`.
pub fn two_nic(name: &str, nad: &str) -> Value {
    vm(
        name,
        json!([{"name": "default", "masquerade": {}}, {"name": "ext", "bridge": {}}]),
        json!([{"name": "default", "pod": {}}, {"name": "ext", "multus": {"networkName": nad}}]),
    )
}

/// `v` with the annotation `key: value` on its metadata.
pub fn annotate(mut v: Value, key: &str, value: &str) -> Value {
    v["metadata"]["annotations"][key] = json!(value);
    v
}

/// `v` in another namespace.
pub fn in_namespace(mut v: Value, namespace: &str) -> Value {
    v["metadata"]["namespace"] = json!(namespace);
    v
}

/// The guest of a VM, wrapped as `kind` declares it (SPEC §2.8): the VM's metadata becomes
/// the VMI's own, the replica set's template metadata, or the pool's VM template metadata.
pub fn as_kind(vm: &Value, kind: Kind) -> Value {
    let meta = vm["metadata"].clone();
    let template = vm["spec"]["template"].clone();
    let annotations = meta.get("annotations").cloned().unwrap_or(json!({}));
    let own = json!({"name": meta["name"], "namespace": meta["namespace"]});
    let (api_version, spec) = match kind {
        Kind::VirtualMachine => return vm.clone(),
        Kind::VirtualMachineInstance => {
            return json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": meta, "spec": template["spec"]});
        }
        Kind::VirtualMachineInstanceReplicaSet => (
            "kubevirt.io/v1",
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}, "annotations": annotations}, "spec": template["spec"]}}),
        ),
        Kind::VirtualMachinePool => (
            "pool.kubevirt.io/v1beta1",
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                "virtualMachineTemplate": {"metadata": {"labels": {"app": "x"}, "annotations": annotations},
                    "spec": {"runStrategy": "Always", "template": template}}}),
        ),
    };
    json!({"apiVersion": api_version, "kind": kind.name(), "metadata": own, "spec": spec})
}

/// [`two_nic`] with the networks annotation `request`.
pub fn with_request(name: &str, nad: &str, request: &str) -> Value {
    annotate(
        two_nic(name, nad),
        "kubevirt-net-webhook.io/networks",
        request,
    )
}

/// A NAD from its CNI config.
pub fn nad(namespace: &str, name: &str, config: &str) -> Nad {
    Nad::from_config(namespace, name, config)
}

/// A bridge NAD on 10.10.0.0/24 with a default route via 10.10.0.1.
pub fn bridge_nad(namespace: &str, name: &str) -> Nad {
    nad(
        namespace,
        name,
        r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"br1","ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24","gateway":"10.10.0.1"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#,
    )
}

/// `nad` with the address pool `pool` (annotation `kubevirt-net-webhook.io/address-pool`).
pub fn with_pool(mut nad: Nad, pool: &str) -> Nad {
    nad.annotations.insert(
        "kubevirt-net-webhook.io/address-pool".into(),
        pool.to_string(),
    );
    nad
}

/// [`bridge_nad`] (10.10.0.0/24, gateway 10.10.0.1) with the address pool `pool`.
pub fn pool_nad(namespace: &str, name: &str, pool: &str) -> Nad {
    with_pool(bridge_nad(namespace, name), pool)
}

/// The networks annotation of a VM manifest, parsed.
pub fn networks_annotation(v: &Value) -> Option<Value> {
    let text = v["metadata"]["annotations"]["kubevirt-net-webhook.io/networks"].as_str()?;
    Some(serde_json::from_str(text).expect("the networks annotation is JSON"))
}

/// A macvlan NAD (no IPAM).
pub fn macvlan_nad(namespace: &str, name: &str) -> Nad {
    nad(namespace, name, r#"{"type":"macvlan","master":"eth0"}"#)
}

/// A NAD object (the Kubernetes resource), as a manifest.
pub fn nad_object(namespace: &str, name: &str, config: &str) -> Value {
    json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace}, "spec": {"config": config}})
}

/// An inventory holding these NADs.
pub fn inventory_with(nads: impl IntoIterator<Item = Nad>) -> Inventory {
    let mut inv = Inventory::new();
    for n in nads {
        inv.upsert_nad(n);
    }
    inv
}

/// `inv` with the VM (manifest) `v` in it, as the cache would hold it.
pub fn remember(inv: &mut Inventory, v: &Value) {
    let object = object(v);
    let namespace = object
        .metadata
        .namespace
        .clone()
        .unwrap_or("default".into());
    inv.upsert_vm_object(Kind::VirtualMachine, &object, &namespace)
        .expect("the VM decodes");
}

/// The typed form of a manifest.
pub fn object(v: &Value) -> DynamicObject {
    serde_json::from_value(v.clone()).expect("a Kubernetes object")
}

/// The kind of a manifest.
pub fn kind_of(v: &Value) -> Kind {
    Kind::of_manifest(
        v["apiVersion"].as_str().unwrap_or(""),
        v["kind"].as_str().unwrap_or(""),
    )
    .expect("one of the webhook's kinds")
}

/// Asks the engine directly: CREATE of `object`, or UPDATE from `old`.
pub struct Ask<'a> {
    pub inventory: &'a Inventory,
    pub config: Config,
}

impl<'a> Ask<'a> {
    pub fn new(inventory: &'a Inventory) -> Self {
        Self {
            inventory,
            config: Config::default(),
        }
    }

    pub fn with_config(inventory: &'a Inventory, config: Config) -> Self {
        Self { inventory, config }
    }

    fn request<'r>(
        object: &'r DynamicObject,
        old: Option<&'r DynamicObject>,
        kind: Kind,
        operation: &'r Operation,
    ) -> Request<'r> {
        Request {
            kind,
            operation,
            namespace: object.metadata.namespace.as_deref().unwrap_or(NS),
            object: Object::Tree(object),
            old_object: old.map(Object::Tree),
        }
    }

    /// Runs `f` on the engine request for `v` (CREATE, or UPDATE from `old`).
    fn with_request<T>(
        &self,
        v: &Value,
        old: Option<&Value>,
        f: impl FnOnce(&Request<'_>) -> T,
    ) -> T {
        let (o, old_o) = (object(v), old.map(object));
        let operation = match old {
            Some(_) => Operation::Update,
            None => Operation::Create,
        };
        f(&Self::request(&o, old_o.as_ref(), kind_of(v), &operation))
    }

    /// The mutation of `v` (CREATE, or UPDATE from `old`) and the object it gives.
    pub fn mutate_update(&self, v: &Value, old: Option<&Value>) -> (Mutation, Value) {
        let m = self.with_request(v, old, |req| {
            engine::mutate(req, self.inventory, &self.config).expect("mutates")
        });
        let mut out = v.clone();
        json_patch::patch(&mut out, &m.patch).expect("patch applies");
        (m, out)
    }

    pub fn mutate(&self, v: &Value) -> (Mutation, Value) {
        self.mutate_update(v, None)
    }

    /// The verdict on `v` (CREATE, or UPDATE from `old`).
    pub fn validate_update(&self, v: &Value, old: Option<&Value>) -> Verdict {
        self.with_request(v, old, |req| {
            engine::validate(req, self.inventory, &self.config).expect("validates")
        })
    }

    pub fn validate(&self, v: &Value) -> Verdict {
        self.validate_update(v, None)
    }

    /// The admission layer's answer for a `kubectl apply` of `v`.
    pub fn admit(&self, endpoint: Endpoint, v: &Value, old: Option<&Value>) -> Answer {
        Parsed::manifest(v, old)
            .expect("a manifest of one of the webhook's kinds")
            .answer(endpoint, self.inventory, &self.config)
    }
}

/// The mutation of `v` (CREATE) with the default config.
pub fn mutate(v: &Value, inv: &Inventory) -> (Mutation, Value) {
    Ask::new(inv).mutate(v)
}

/// The verdict on `v` (CREATE) with the default config.
pub fn validate(v: &Value, inv: &Inventory) -> Verdict {
    Ask::new(inv).validate(v)
}

/// Interface `i` of a VM manifest.
pub fn iface(v: &Value, i: usize) -> &Value {
    &v["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][i]
}

/// The network config in the VM's first cloud-init volume.
pub fn network_data(v: &Value) -> Option<String> {
    v.pointer("/spec/template/spec/volumes")?
        .as_array()?
        .iter()
        .find_map(|vol| {
            vol.get("cloudInitNoCloud")
                .or(vol.get("cloudInitConfigDrive"))
        })?
        .get("networkData")?
        .as_str()
        .map(String::from)
}

/// Asserts a denial whose message holds every needle.
pub fn denied_with(v: &Verdict, needles: &[&str]) {
    assert!(!v.allowed(), "expected a denial containing {needles:?}");
    let msg = v.message();
    for n in needles {
        assert!(msg.contains(n), "missing {n:?} in: {msg}");
    }
}

/// `vm` as a mutating webhook sees it after `kubectl apply` created it: the last applied
/// configuration in an annotation, and `metadata.managedFields` with kubectl's entry, whose
/// `fieldsV1` names every field of the manifest (lists as one field each: KubeVirt's CRDs
/// leave most lists atomic). The benches' other bodies have neither.
pub fn as_kubectl_applied(vm: &Value) -> Value {
    fn fields(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                out.insert(".".into(), json!({}));
                for (k, v) in map {
                    out.insert(format!("f:{k}"), fields(v));
                }
                Value::Object(out)
            }
            _ => json!({}),
        }
    }
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
    let mut applied = vm.clone();
    let mut metadata_fields = fields(&vm["metadata"]);
    let meta = metadata_fields
        .as_object_mut()
        .expect("metadata is an object");
    for server_set in ["f:name", "f:namespace", "."] {
        meta.remove(server_set);
    }
    meta.entry("f:annotations")
        .or_insert_with(|| json!({".": {}}))
        .as_object_mut()
        .expect("annotations are an object")
        .insert(format!("f:{LAST_APPLIED}"), json!({}));
    let entry = json!({
        "apiVersion": vm["apiVersion"],
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": metadata_fields, "f:spec": fields(&vm["spec"])},
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "time": "2026-11-01T10:00:00Z",
    });
    let text = vm.to_string();
    let metadata = applied["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    metadata
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("annotations are an object")
        .insert(LAST_APPLIED.into(), Value::String(text));
    metadata.insert("managedFields".into(), json!([entry]));
    applied
}

/// An AdmissionReview as kube-apiserver sends it, for `object` (and `old`).
pub fn admission_review(
    api_version: &str,
    uid: &str,
    operation: &str,
    object: Option<&Value>,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let subject = object.or(old).cloned().unwrap_or(json!({}));
    let api = subject["apiVersion"].as_str().unwrap_or("kubevirt.io/v1");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    let kind = subject["kind"].as_str().unwrap_or("VirtualMachine");
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "namespace": subject["metadata"]["namespace"].as_str().unwrap_or("default"),
            "name": subject["metadata"]["name"],
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": format!("{}Options", if operation == "CREATE" { "Create" } else { "Update" })},
        }
    })
}

/// The benches' VM (`benches/engine.rs`, `tests/allocations.rs`): the pod network plus
/// `secondaries` bridge NICs, one of them with a static address, in namespace `bench` among
/// 10,000 other VMs on the same NADs.
pub fn bench_vm(secondaries: usize) -> (Value, Inventory) {
    let mut inv = Inventory::new();
    let mut interfaces = vec![json!({"name": "default", "masquerade": {}})];
    let mut networks = vec![json!({"name": "default", "pod": {}})];
    for i in 1..=secondaries {
        inv.upsert_nad(Nad::from_config("bench", &format!("nad{i}"), r#"{"cniVersion":"0.4.0","type":"bridge","bridge":"br0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/16","gateway":"10.0.0.1"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#));
        // Interfaces named after their NAD, as in the seed notes: every one is renamed.
        interfaces.push(json!({"name": format!("nad{i}"), "bridge": {}}));
        networks
            .push(json!({"name": format!("net{i}"), "multus": {"networkName": format!("nad{i}")}}));
    }
    // A populated cluster: 10,000 other VMs on the same NADs.
    for n in 0..10_000 {
        let other = json!({"metadata": {"name": format!("other-{n}"), "namespace": "bench",
            "annotations": {"kubevirt-net-webhook.io/networks": format!("{{\"net1\": \"10.0.{}.{}/16\"}}", 100 + n / 250, n % 250 + 2)}},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "net1", "bridge": {}, "macAddress": format!("02:00:00:00:{:02x}:{:02x}", n / 256, n % 256)}]}},
            "networks": [{"name": "net1", "multus": {"networkName": "nad1"}}]}}}});
        remember(&mut inv, &other);
    }
    let vm = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "web-0", "namespace": "bench", "annotations": {"kubevirt-net-webhook.io/networks": "{\"net1\": {\"addresses\": [\"10.0.5.10/16\"], \"dns\": [\"10.0.0.2\"]}}"}},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"interfaces": interfaces, "disks": [{"name": "root", "disk": {"bus": "virtio"}}]}},
            "networks": networks,
            "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:40"}}],
        }}}
    });
    (vm, inv)
}

/// The CREATE of a `bench_vm` object in namespace `bench`, as the engine is asked.
pub fn bench_request(object: &DynamicObject) -> Request<'_> {
    Request {
        kind: Kind::VirtualMachine,
        operation: &Operation::Create,
        namespace: "bench",
        object: Object::Tree(object),
        old_object: None,
    }
}

/// The AdmissionReview body of a CREATE of `v`, as the API server sends it.
pub fn create_body(v: &Value) -> Vec<u8> {
    admission_review("admission.k8s.io/v1", "u", "CREATE", Some(v), None, false)
        .to_string()
        .into_bytes()
}

/// The seed scenario's VM (`tests/data/cases/seed-wukong-static-ip.yaml`: rename, two MACs, a
/// cloud-init volume, the engine's longest path) as the API server sends it for a CREATE:
/// the body of the load tests.
pub fn seed_create_body(uid: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cases/seed-wukong-static-ip.yaml"
    );
    case_create_body(std::path::Path::new(path), uid)
}

/// The CREATE AdmissionReview of the VirtualMachine in the manifest at `path`.
pub fn case_create_body(path: &std::path::Path, uid: &str) -> String {
    let vm = kubevirt_net_webhook::manifests::read_path(path)
        .unwrap()
        .into_iter()
        .find(|d| d.kind() == "VirtualMachine")
        .unwrap()
        .value;
    admission_review("admission.k8s.io/v1", uid, "CREATE", Some(&vm), None, false).to_string()
}
