//! Which objects are the webhook's (SPEC §2.8): the kinds that put a NIC into a guest, where
//! each keeps its VM template, and which operations are decided. The one place for these facts:
//! the admission layer, `review`, the caches and `deploy/`'s tests all ask here.
use kube::core::admission::Operation;

/// A kind whose objects put NICs into guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `kubevirt.io/v1` `VirtualMachine` [`spec.template.spec`].
    VirtualMachine,
    /// `kubevirt.io/v1` `VirtualMachineInstance` [`spec`].
    VirtualMachineInstance,
    /// `kubevirt.io/v1` `VirtualMachineInstanceReplicaSet` [`spec.template.spec`].
    VirtualMachineInstanceReplicaSet,
    /// `pool.kubevirt.io/v1beta1` `VirtualMachinePool`
    /// [`spec.virtualMachineTemplate.spec.template.spec`].
    VirtualMachinePool,
}

/// Where one kind keeps the parts the engine reads and patches, as JSON pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The VMI spec: `domain.devices.interfaces`, `networks`, `volumes` live under it.
    pub spec: &'static str,
    /// The metadata whose annotations configure the webhook for this guest (SPEC §2.4–2.6).
    pub vm_meta: &'static str,
    /// The metadata that ends up on the launcher pod (Multus' annotation, SPEC §2.1).
    pub pod_meta: &'static str,
    /// The lists under `spec` the engine patches, as `(path under spec, pointer, dotted
    /// field)`: written out once, not formatted on every request.
    pub lists: [(&'static str, &'static str, &'static str); 4],
}

/// A [`Layout`] from its spec pointer and the same as a dotted field name.
macro_rules! layout {
    ($spec:literal, $field:literal, vm_meta: $vm_meta:literal, pod_meta: $pod_meta:literal) => {
        Layout {
            spec: $spec,
            vm_meta: $vm_meta,
            pod_meta: $pod_meta,
            lists: [
                (
                    "domain/devices/interfaces",
                    concat!($spec, "/domain/devices/interfaces"),
                    concat!($field, ".domain.devices.interfaces"),
                ),
                (
                    "domain/devices/disks",
                    concat!($spec, "/domain/devices/disks"),
                    concat!($field, ".domain.devices.disks"),
                ),
                (
                    "volumes",
                    concat!($spec, "/volumes"),
                    concat!($field, ".volumes"),
                ),
                (
                    "networks",
                    concat!($spec, "/networks"),
                    concat!($field, ".networks"),
                ),
            ],
        }
    };
}

impl Layout {
    /// The dotted field name of a pointer, for messages: `/spec/template/spec` →
    /// `spec.template.spec`.
    pub fn field(pointer: &str) -> String {
        pointer.trim_start_matches('/').replace('/', ".")
    }
}

/// The value at one of the engine's own pointers (field names, so no `~` escapes) in
/// `value`. `Value::pointer` unescapes every token into a new string, which costs more than
/// the rest of a lookup on every request.
pub fn at<'v>(value: &'v serde_json::Value, pointer: &str) -> Option<&'v serde_json::Value> {
    if pointer.is_empty() {
        return Some(value);
    }
    // Token by token with a plain byte scan: `split('/')` sets up a searcher per call, which
    // costs more than these short tokens.
    let mut rest = pointer.strip_prefix('/')?;
    let mut v = value;
    loop {
        let (token, next) = match rest.bytes().position(|b| b == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        v = match v {
            serde_json::Value::Object(map) => map.get(token)?,
            serde_json::Value::Array(list) => list.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
        match next {
            Some(next) => rest = next,
            None => return Some(v),
        }
    }
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::VirtualMachine,
        Kind::VirtualMachineInstance,
        Kind::VirtualMachineInstanceReplicaSet,
        Kind::VirtualMachinePool,
    ];

    /// The kind of an object of `group`/`kind`, if it is one of ours. Any version: the API
    /// server converts to the version the webhook registered for.
    pub fn of(group: &str, kind: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.group() == group && k.name() == kind)
    }

    /// The kind of a manifest (`apiVersion`, `kind`).
    pub fn of_manifest(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Self::of(group, kind)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "VirtualMachine",
            Kind::VirtualMachineInstance => "VirtualMachineInstance",
            Kind::VirtualMachineInstanceReplicaSet => "VirtualMachineInstanceReplicaSet",
            Kind::VirtualMachinePool => "VirtualMachinePool",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::VirtualMachinePool => "pool.kubevirt.io",
            _ => "kubevirt.io",
        }
    }

    /// The version `deploy/` registers and `review` asks with.
    pub fn version(self) -> &'static str {
        match self {
            Kind::VirtualMachinePool => "v1beta1",
            _ => "v1",
        }
    }

    /// The resource (plural) name.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "virtualmachines",
            Kind::VirtualMachineInstance => "virtualmachineinstances",
            Kind::VirtualMachineInstanceReplicaSet => "virtualmachineinstancereplicasets",
            Kind::VirtualMachinePool => "virtualmachinepools",
        }
    }

    /// Whether the webhook decides this operation. A VMI's spec is fixed once created (its
    /// UPDATEs are KubeVirt's own status writes), so only its CREATE is ours.
    pub fn decides(self, operation: &Operation) -> bool {
        match operation {
            Operation::Create => true,
            Operation::Update => self != Kind::VirtualMachineInstance,
            Operation::Delete | Operation::Connect => false,
        }
    }

    /// Where this kind keeps its guest.
    pub fn layout(self) -> Layout {
        match self {
            Kind::VirtualMachine => layout!(
                "/spec/template/spec",
                "spec.template.spec",
                vm_meta: "/metadata",
                pod_meta: "/spec/template/metadata"
            ),
            Kind::VirtualMachineInstance => layout!(
                "/spec",
                "spec",
                vm_meta: "/metadata",
                pod_meta: "/metadata"
            ),
            Kind::VirtualMachineInstanceReplicaSet => layout!(
                "/spec/template/spec",
                "spec.template.spec",
                vm_meta: "/spec/template/metadata",
                pod_meta: "/spec/template/metadata"
            ),
            Kind::VirtualMachinePool => layout!(
                "/spec/virtualMachineTemplate/spec/template/spec",
                "spec.virtualMachineTemplate.spec.template.spec",
                vm_meta: "/spec/virtualMachineTemplate/metadata",
                pod_meta: "/spec/virtualMachineTemplate/spec/template/metadata"
            ),
        }
    }

    /// A template shared by every replica: nothing in it may claim a MAC or an address.
    pub fn is_shared_template(self) -> bool {
        matches!(
            self,
            Kind::VirtualMachineInstanceReplicaSet | Kind::VirtualMachinePool
        )
    }
}

/// The namespace an object lives in: the request's, else the object's, else `default` (as
/// `kubectl apply` of a manifest without one does).
pub fn namespace<'a>(request: Option<&'a str>, object: Option<&'a str>) -> &'a str {
    request
        .filter(|n| !n.is_empty())
        .or(object.filter(|n| !n.is_empty()))
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// The namespace of objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_by_group_and_kind() {
        assert_eq!(
            Kind::of("kubevirt.io", "VirtualMachine"),
            Some(Kind::VirtualMachine)
        );
        assert_eq!(Kind::of("vmoperator.vmware.com", "VirtualMachine"), None);
        assert_eq!(
            Kind::of_manifest("pool.kubevirt.io/v1beta1", "VirtualMachinePool"),
            Some(Kind::VirtualMachinePool)
        );
        assert_eq!(Kind::of_manifest("v1", "Pod"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::of(k.group(), k.name()), Some(k));
        }
    }

    #[test]
    fn vmi_updates_are_not_decided() {
        assert!(Kind::VirtualMachineInstance.decides(&Operation::Create));
        assert!(!Kind::VirtualMachineInstance.decides(&Operation::Update));
        assert!(Kind::VirtualMachine.decides(&Operation::Update));
        assert!(!Kind::VirtualMachine.decides(&Operation::Delete));
    }

    #[test]
    fn namespace_defaults() {
        assert_eq!(namespace(Some("a"), Some("b")), "a");
        assert_eq!(namespace(Some(""), Some("b")), "b");
        assert_eq!(namespace(None, None), "default");
    }

    #[test]
    fn pointers_walk_objects_and_lists() {
        let v = serde_json::json!({"spec": {"volumes": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            at(&v, "/spec/volumes/1/name"),
            Some(&serde_json::json!("b"))
        );
        assert_eq!(at(&v, ""), Some(&v));
        for missing in [
            "/spec/disks",
            "/spec/volumes/2",
            "/spec/volumes/x",
            "/spec/volumes/0/name/z",
        ] {
            assert_eq!(at(&v, missing), None, "{missing}");
        }
    }

    #[test]
    fn lists_are_under_the_spec() {
        for kind in Kind::ALL {
            let layout = kind.layout();
            for (rest, pointer, field) in layout.lists {
                assert_eq!(pointer, format!("{}/{rest}", layout.spec), "{kind:?}");
                assert_eq!(field, Layout::field(pointer), "{kind:?}");
            }
        }
    }

    #[test]
    fn field_names() {
        assert_eq!(
            Layout::field(Kind::VirtualMachinePool.layout().spec),
            "spec.virtualMachineTemplate.spec.template.spec"
        );
    }
}
