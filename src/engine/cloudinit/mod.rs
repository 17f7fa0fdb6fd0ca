//! Cloud-init network config matching every NIC by MAC (SPEC §2.4), kept right through the
//! life of the VM (SPEC §2.9): written when the VM is created or stopped, never rewritten
//! while it runs (KubeVirt would mark it `RestartRequired`), only ever the webhook's own.
//!
//! - [`render`]: netplan v2 for NoCloud, OpenStack `network_data.json` for ConfigDrive.
//! - [`v1`]: network config v1 for NoCloud when a NIC has an IPv6 route: cloud-init's
//!   renderers up to 25.1 mishandle netplan v2's IPv6 routes, v1 renders right in all.
//! - [`managed`]: which config is the webhook's, and for which VM.
pub(crate) mod managed;
pub mod render;
pub mod v1;

use serde::Serialize;
use serde_json::json;

use super::{
    Ctx, Ops, Requests, addresses,
    by_name::ByName,
    guest_names::guest_names,
    patch::pointer,
    violations::{Findings, Rule},
};
use crate::model::{
    annotations::{self, NetworkDataMode},
    vm::{
        CloudInitKind, CloudInitSource, DISKS, Interface, ListShape, Network, Source, VOLUMES, Vm,
    },
};
use managed::{Existing, UserData};
pub use managed::{MARKER, USER_DATA};
pub use render::{Nic, NicConfig, render_netplan, render_network_data_json};

/// KubeVirt's limit for inline cloud-init data.
pub const INLINE_LIMIT: usize = 2048;
const VOLUME_NAME: &str = "cloudinitdisk";

/// The cloud-init volume added for the config. Fields in the order a `serde_json` map
/// (sorted by key) writes them, as when the volume was built with `json!`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewVolume<'a> {
    cloud_init_no_cloud: NoCloud<'a>,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoCloud<'a> {
    network_data: &'a str,
    user_data: &'a str,
}

/// The disk that serves the added volume, fields sorted as [`NewVolume`]'s.
#[derive(Serialize)]
struct NewDisk<'a> {
    disk: Bus,
    name: &'a str,
}

#[derive(Serialize)]
struct Bus {
    bus: &'static str,
}

/// Where the config would go, and what is there now.
#[derive(Debug)]
enum Target {
    /// The first cloud-init volume, at this index.
    Existing {
        index: usize,
        kind: CloudInitKind,
        user_data: UserData,
        current: Option<String>,
    },
    /// No cloud-init volume: add one, and its disk.
    New,
}

/// What the engine decides about network config for a VM.
#[derive(Debug)]
enum Plan {
    /// Nothing to write (mode `never`, or `auto` without requested addresses).
    NotWanted,
    /// The annotation cannot be read; `/validate` says why.
    BadAnnotation,
    /// Some NICs have no MAC to match on.
    MissingMacs(Vec<String>),
    /// The first cloud-init volume has network config the user wrote.
    UserNetworkData {
        volume: String,
        field: &'static str,
    },
    TooLarge {
        bytes: usize,
    },
    Write {
        target: Target,
        data: String,
        /// Whether this changes config the webhook wrote before (not a first write).
        change: bool,
    },
    /// A running VM keeps the config it has (SPEC §2.9): `kept` is the stored object's, to
    /// restore where the request dropped it (a re-applied manifest); `stale` lists what the
    /// config would gain or lose, written when the VM is next stopped.
    Frozen {
        kept: Option<(Target, String)>,
        stale: Option<String>,
    },
}

struct Planned {
    /// Whether some NIC has a requested address.
    requested: bool,
    nics: Vec<Nic>,
    plan: Plan,
}

/// The interfaces that are guest NICs, with their networks: every interface paired with a
/// network, in interface order, but for those being unplugged and those the webhook does not
/// manage (unknown bindings and network sources pass through untouched).
fn paired<'v>(vm: &'v Vm<'_>) -> Vec<(&'v Interface<'v>, &'v Network<'v>)> {
    let networks = ByName::new(vm.networks().iter().map(|n| (n.name.as_ref(), n)));
    vm.interfaces()
        .iter()
        .filter(|i| !i.is_absent() && i.binding().carries_mac())
        .filter_map(|i| networks.get(&i.name).map(|n| (i, n)))
        .filter(|(_, n)| n.source() != Source::Other)
        .collect()
}

/// How the guest configures the NIC on `net`.
fn nic_config(ctx: &Ctx<'_>, requests: &Requests, net: &Network) -> NicConfig {
    match net.nad_ref(ctx.namespace) {
        None => NicConfig::Pod,
        Some(r) => match addresses::resolve(requests.get(net.name.as_ref()), ctx.nad(r)) {
            Some(c) => NicConfig::Static(c),
            None => NicConfig::Dhcp,
        },
    }
}

/// The guest NICs of the VM ([`paired`]), and the interfaces among them without a MAC.
fn nics(ctx: &Ctx<'_>, requests: &Requests) -> (Vec<Nic>, Vec<String>) {
    let paired = paired(&ctx.vm);
    let names = guest_names(paired.iter().map(|(i, _)| i.name.as_ref()));
    let mut missing = Vec::new();
    let nics = paired
        .iter()
        .zip(names)
        .filter_map(|((iface, net), guest_name)| {
            let Some(mac) = iface.mac_address.clone() else {
                missing.push(iface.name.to_string());
                return None;
            };
            Some(Nic {
                guest_name,
                mac: mac.into_owned(),
                config: nic_config(ctx, requests, net),
            })
        })
        .collect();
    (nics, missing)
}

/// Whether the config [`plan`] would render certainly fits inline, known from an upper bound
/// of its size ([`render::nic_bound`]) without rendering it: `/validate` needs only that.
fn certainly_fits(ctx: &Ctx<'_>, requests: &Requests) -> bool {
    let nics: usize = paired(&ctx.vm)
        .into_iter()
        .filter_map(|(iface, net)| {
            let mac = iface.mac_address.as_deref()?;
            Some(render::nic_bound(mac, &nic_config(ctx, requests, net)))
        })
        .sum();
    render::config_bound(
        ctx.namespace.len() + ctx.vm.name.as_deref().map_or(0, str::len),
        nics,
    ) <= INLINE_LIMIT
}

fn render(kind: CloudInitKind, nics: &[Nic], ctx: &Ctx<'_>) -> String {
    let marker = || managed::marker(ctx.namespace, ctx.vm.name.as_deref().unwrap_or(""));
    match kind {
        CloudInitKind::NoCloud if v1::needs_v1(nics) => v1::render_v1(nics, &marker()),
        CloudInitKind::NoCloud => render_netplan(nics, &marker()),
        CloudInitKind::ConfigDrive => render_network_data_json(nics),
    }
}

/// The network config of `vm`'s first cloud-init volume, if the webhook wrote it.
fn managed_data<'v>(vm: &'v Vm<'_>) -> Option<(CloudInitKind, &'v CloudInitSource<'v>, &'v str)> {
    let (_, _, kind, source) = vm.first_cloud_init()?;
    let annotation = vm.annotation(annotations::MANAGED_NETWORK_DATA);
    match managed::classify(kind, source, annotation, None) {
        Existing::Managed { .. } => Some((kind, source, source.network_data.as_deref()?)),
        _ => None,
    }
}

/// Where the config goes in the object as sent.
fn target(vm: &Vm) -> Target {
    match vm.first_cloud_init() {
        Some((index, _, kind, source)) => Target::Existing {
            index,
            kind,
            user_data: managed::user_data(source),
            current: source.network_data.as_deref().map(String::from),
        },
        None => Target::New,
    }
}

fn plan(ctx: &Ctx<'_>) -> Planned {
    let planned = |requested, nics, plan| Planned {
        requested,
        nics,
        plan,
    };
    let Ok(mode) = NetworkDataMode::parse(ctx.vm.annotation(annotations::NETWORK_DATA)) else {
        return planned(false, vec![], Plan::BadAnnotation);
    };
    if mode == NetworkDataMode::Never {
        return planned(false, vec![], Plan::NotWanted);
    }
    let Ok(requests) = addresses::annotation_requests(ctx) else {
        return planned(false, vec![], Plan::BadAnnotation);
    };
    let (nics, missing) = nics(ctx, requests);
    let requested = nics
        .iter()
        .any(|n| matches!(n.config, NicConfig::Static(_)));
    let first = ctx.vm.first_cloud_init();
    let kind = first.map_or(CloudInitKind::NoCloud, |(_, _, kind, _)| kind);
    // Rendered once: it is both what would be written and how an older version's ConfigDrive
    // config (JSON, no room for a marker) is recognised as the webhook's own.
    let fresh = missing.is_empty().then(|| render(kind, &nics, ctx));
    let existing = first.map_or(Existing::None, |(_, _, kind, source)| {
        managed::classify(
            kind,
            source,
            ctx.vm.annotation(annotations::MANAGED_NETWORK_DATA),
            fresh.as_deref(),
        )
    });
    // The user's own network config always wins; it is worth a warning even when nothing was
    // requested, because it cannot match NICs by name reliably.
    if let (Existing::User(field), Some((_, volume, _, _))) = (&existing, first) {
        let plan = Plan::UserNetworkData {
            volume: volume.name.to_string(),
            field,
        };
        return planned(requested, nics, plan);
    }
    // Config the webhook wrote stays up to date even when nothing is requested any more, so
    // that a removed address does not linger in the guest.
    let managed = matches!(existing, Existing::Managed { .. });
    if mode == NetworkDataMode::Auto && !requested && !managed {
        return planned(requested, nics, Plan::NotWanted);
    }
    if ctx.running_update() {
        let kept = ctx.old.as_deref().and_then(managed_data);
        let stale = match (&kept, &fresh) {
            (Some((_, _, kept)), Some(fresh)) if kept != fresh => Some(changes(ctx, &nics, kept)),
            (None, Some(_)) => Some(changes(ctx, &nics, "")),
            _ => None,
        };
        let kept = kept.map(|(_, _, data)| (target(&ctx.vm), data.to_string()));
        return planned(requested, nics, Plan::Frozen { kept, stale });
    }
    let Some(data) = fresh else {
        return planned(requested, nics, Plan::MissingMacs(missing));
    };
    if data.len() > INLINE_LIMIT {
        return planned(requested, nics, Plan::TooLarge { bytes: data.len() });
    }
    let target = target(&ctx.vm);
    let change =
        managed && matches!(&target, Target::Existing { current: Some(c), .. } if *c != data);
    planned(
        requested,
        nics,
        Plan::Write {
            target,
            data,
            change,
        },
    )
}

/// What a deferred config would change, for the warning: NICs hot-plugged (not in the kept
/// config), NICs unplugged (in it, but no longer in the guest), or their settings.
fn changes(ctx: &Ctx<'_>, nics: &[Nic], kept: &str) -> String {
    let added: Vec<&str> = nics
        .iter()
        .filter(|n| !kept.contains(&n.mac))
        .map(|n| n.guest_name.as_str())
        .collect();
    let gone: Vec<&str> = ctx
        .old
        .iter()
        .flat_map(|old| old.interfaces())
        .filter(|i| {
            i.mac_address
                .as_deref()
                .is_some_and(|m| kept.contains(m) && !nics.iter().any(|n| n.mac == m))
        })
        .map(|i| i.name.as_ref())
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("new interfaces {}", added.join(", ")));
    }
    if !gone.is_empty() {
        parts.push(format!("unplugged interfaces {}", gone.join(", ")));
    }
    if parts.is_empty() {
        "the requested addresses or routes changed".to_string()
    } else {
        parts.join("; ")
    }
}

/// Appends `item` to the list at `path` (one of the engine's own pointers, so no token needs
/// escaping), creating the list (and missing parents) if needed.
fn push_to_list<T: Serialize>(ops: &mut Ops, shape: ListShape, path: &str, item: &T) {
    if shape.is_array {
        ops.add_struct(pointer(path, ["-"]), item);
        return;
    }
    let item = serde_json::to_value(item).expect("the engine's structs serialize");
    // Under the deepest existing object, add the nested rest in one operation.
    let mut value = json!([item]);
    let mut to = path;
    for _ in shape.objects + 1..path.matches('/').count() {
        let Some((parent, key)) = to.rsplit_once('/') else {
            break;
        };
        value = json!({ key: value });
        to = parent;
    }
    ops.add(pointer(to, []), &value);
}

fn free_name(taken: &[&str]) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                VOLUME_NAME.to_string()
            } else {
                format!("{VOLUME_NAME}-{n}")
            }
        })
        .find(|n| !taken.contains(&n.as_str()))
        .expect("some name is free")
}

pub(super) fn write(ctx: &mut Ctx<'_>, ops: &mut Ops, warnings: &mut Vec<String>) {
    let Planned {
        requested,
        nics,
        plan,
    } = plan(ctx);
    // `name=mac, ...`, concatenated: every config written gets this warning.
    let macs = || {
        let mut out = String::with_capacity(nics.len() * 40);
        for (k, n) in nics.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            out.push_str(&n.guest_name);
            out.push('=');
            out.push_str(&n.mac);
        }
        out
    };
    match plan {
        Plan::NotWanted | Plan::BadAnnotation => {}
        Plan::MissingMacs(names) => warnings.push(format!(
            "cloud-init network config not written: interfaces {} have no MAC address to match on",
            names.join(", ")
        )),
        Plan::UserNetworkData { volume, field } => warnings.push(format!(
            "left the network config you wrote in volume {volume:?} ({field}) untouched{}; match NICs by MAC, not by name: {}",
            if requested { ", so the requested addresses are not applied by the webhook" } else { "" },
            macs()
        )),
        Plan::TooLarge { bytes } => warnings.push(format!(
            "cloud-init network config not written: it takes {bytes} bytes and KubeVirt allows {INLINE_LIMIT} inline; put it in a Secret (networkDataSecretRef)"
        )),
        Plan::Frozen { kept, stale } => {
            if let Some((target, data)) = kept {
                // Restores what a re-applied manifest dropped: the volume stays as it is.
                let user_data = ctx
                    .old
                    .as_ref()
                    .and_then(|o| o.first_cloud_init())
                    .and_then(|(_, _, _, s)| s.user_data.as_deref().map(String::from));
                put(ctx, ops, target, data, user_data);
            }
            if let Some(what) = stale {
                warnings.push(format!(
                    "guest network config not updated while the VM runs ({what}): a changed cloud-init volume would make KubeVirt mark the VM RestartRequired and hold back its live updates; the config is written when the VM is next stopped"
                ));
            }
        }
        Plan::Write {
            target,
            data,
            change,
        } => {
            if let Target::Existing {
                index,
                kind,
                user_data: UserData::NoUpdates | UserData::Unknown,
                ..
            } = &target
                && change
            {
                warnings.push(format!(
                    "the network config in {}[{index}].{} changed, but the volume's user-data has no `updates: {{network: {{when: [boot-new-instance, boot]}}}}`: cloud-init applies network config only on a new instance and KubeVirt's instance-id never changes, so add that key to apply the change at the next boot",
                    ctx.vm.volumes_field(),
                    kind.field()
                ));
            }
            let index = match &target {
                Target::Existing { index, .. } => Some(*index),
                Target::New => None,
            };
            if put(ctx, ops, target, data, None) {
                warnings.push(match index {
                    Some(index) => format!(
                        "wrote cloud-init network config to {}[{index}].{}.networkData, matching NICs by MAC: {}",
                        ctx.vm.volumes_field(),
                        ctx.vm.spec.volumes[index].cloud_init().map_or("", |(k, _)| k.field()),
                        macs()
                    ),
                    None => format!(
                        "added cloudInitNoCloud volume {:?} and its disk with network config matching NICs by MAC: {}",
                        new_volume_name(&ctx.vm),
                        macs()
                    ),
                });
            }
        }
    }
}

fn new_volume_name(vm: &Vm) -> String {
    let taken: Vec<&str> = vm.spec.volumes.iter().map(|v| v.name.as_ref()).collect();
    free_name(&taken)
}

/// Puts `data` at `target` (and the ConfigDrive digest annotation); `user_data` replaces the
/// webhook's own for a new volume (to restore one exactly). Returns whether anything changed.
fn put(
    ctx: &mut Ctx<'_>,
    ops: &mut Ops,
    target: Target,
    data: String,
    user_data: Option<String>,
) -> bool {
    let (changed, kind) = match target {
        Target::Existing {
            index,
            kind,
            user_data: existing,
            current,
        } => {
            let base = ctx.vm.spec_pointer(VOLUMES);
            let index = index.to_string();
            let at = |field| pointer(&base, [index.as_str(), kind.field(), field]);
            let changed = current.as_deref() != Some(data.as_str());
            if changed {
                ops.add(at("networkData"), data.as_str());
            }
            match existing {
                // cloud-init ignores network config from a datasource without user-data.
                UserData::Missing => ops.add(at("userData"), USER_DATA),
                UserData::Legacy if changed => ops.replace(at("userData"), USER_DATA),
                _ => {}
            }
            (changed, kind)
        }
        Target::New => {
            let spec = &ctx.vm.spec;
            let disks = spec.domain.devices.disks.as_deref().unwrap_or_default();
            let name = new_volume_name(&ctx.vm);
            let user_data = user_data.as_deref().unwrap_or(USER_DATA);
            push_to_list(
                ops,
                ctx.vm.lists.volumes,
                &ctx.vm.spec_pointer(VOLUMES),
                &NewVolume {
                    cloud_init_no_cloud: NoCloud {
                        network_data: &data,
                        user_data,
                    },
                    name: &name,
                },
            );
            // A disk already named like the volume (declared without one) serves it.
            if !disks.iter().any(|d| d.name == name) {
                push_to_list(
                    ops,
                    ctx.vm.lists.disks,
                    &ctx.vm.spec_pointer(DISKS),
                    &NewDisk {
                        disk: Bus { bus: "virtio" },
                        name: &name,
                    },
                );
            }
            (true, CloudInitKind::NoCloud)
        }
    };
    if kind == CloudInitKind::ConfigDrive {
        let value = managed::digest_annotation(&ctx.identity(), &data);
        if ctx.vm.annotation(annotations::MANAGED_NETWORK_DATA) != Some(value.as_str()) {
            set_annotation(ctx, ops, annotations::MANAGED_NETWORK_DATA, value);
        }
    }
    changed
}

/// Sets a VM annotation, creating the map when the object has none.
fn set_annotation(ctx: &mut Ctx<'_>, ops: &mut Ops, key: &'static str, value: String) {
    let meta = ctx.vm.layout.vm_meta;
    if ctx.vm.has_annotations {
        ops.add(pointer(meta, ["annotations", key]), value.as_str());
    } else {
        ops.add(pointer(meta, ["annotations"]), &json!({ key: value }));
        ctx.vm.to_mut().has_annotations = true;
    }
    ctx.vm.to_mut().annotations.insert(key.into(), value.into());
}

pub(super) fn check(ctx: &Ctx<'_>, verdict: &mut Findings<'_>) {
    if ctx.mutation_disabled() {
        return;
    }
    // Most configs are far below the limit: rendering one only to measure it was most of a
    // /validate.
    if addresses::annotation_requests(ctx).is_ok_and(|r| certainly_fits(ctx, r)) {
        return;
    }
    let Planned {
        requested, plan, ..
    } = plan(ctx);
    if let (true, Plan::TooLarge { bytes }) = (requested, plan) {
        verdict.deny(Rule::NetworkDataTooLarge, "network data".to_string(), format!(
            "the requested addresses need {bytes} bytes of cloud-init network config and KubeVirt allows {INLINE_LIMIT} inline: put the network config in a Secret (networkDataSecretRef in {}) yourself, or request fewer settings",
            ctx.vm.volumes_field()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The added volume and disk are written as `json!` wrote them before (a `serde_json`
    /// map, keys sorted), so the patch's bytes did not change.
    #[test]
    fn the_added_volume_and_disk_are_written_as_maps_wrote_them() {
        let volume = NewVolume {
            cloud_init_no_cloud: NoCloud {
                network_data: "version: 2\n\"q\"",
                user_data: USER_DATA,
            },
            name: VOLUME_NAME,
        };
        let map = json!({
            "name": VOLUME_NAME,
            "cloudInitNoCloud": {"userData": USER_DATA, "networkData": "version: 2\n\"q\""},
        });
        assert_eq!(serde_json::to_string(&volume).unwrap(), map.to_string());
        let disk = NewDisk {
            disk: Bus { bus: "virtio" },
            name: VOLUME_NAME,
        };
        let map = json!({"name": VOLUME_NAME, "disk": {"bus": "virtio"}});
        assert_eq!(serde_json::to_string(&disk).unwrap(), map.to_string());
    }
}
