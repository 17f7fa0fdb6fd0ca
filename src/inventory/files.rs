//! `--nads`/`--vms` and `review`'s inputs: manifests fill the inventory through the same
//! [`Applier`] as watch events, so a file and a cluster give the same answers.
use std::path::Path;

use kube::{api::DynamicObject, runtime::watcher::Event};

use super::{
    Inventory,
    apply::{Applier, Cached},
};
use crate::manifests::{self, Document};

/// Errors loading manifests into the inventory; each names the file and document.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path could not be read or parsed.
    #[error(transparent)]
    Manifest(#[from] manifests::Error),
    /// A document is not an object of its kind the inventory can read.
    #[error("{origin}: {message}")]
    File { origin: String, message: String },
}

fn object(doc: &Document) -> Result<DynamicObject, Error> {
    serde_json::from_value(doc.value.clone()).map_err(|e| Error::File {
        origin: doc.origin.clone(),
        message: e.to_string(),
    })
}

/// Applies the documents of `cached`'s resource, as `event` (a list item or an update).
fn apply_all<'d>(
    applier: &mut Applier,
    docs: impl IntoIterator<Item = &'d Document>,
    inventory: &mut Inventory,
    event: fn(DynamicObject) -> Event<DynamicObject>,
) -> Result<(), Error> {
    let cached = applier.cached();
    for doc in docs
        .into_iter()
        .filter(|d| cached.matches(d.api_version(), d.kind()))
    {
        applier
            .apply(inventory, event(object(doc)?))
            .map_err(|e| Error::File {
                origin: doc.origin.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Loads one resource from `--nads`/`--vms` as a full list. Unlike a watch, a bad object is
/// an error: the files are the operator's, fixed before start.
pub fn load_path(cached: Cached, path: &Path, inventory: &mut Inventory) -> Result<(), Error> {
    // The operator's own files, which may describe a whole cluster: `review`'s limits, which
    // guard CI runners against hostile repositories, would be too tight here.
    let limits = manifests::Limits {
        max_file_bytes: 1 << 30,
        max_total_bytes: usize::MAX,
    };
    let docs = manifests::read_path_with(path, &limits)?;
    let mut applier = Applier::new(cached);
    let _ = applier.apply(inventory, Event::Init);
    apply_all(&mut applier, &docs, inventory, Event::InitApply)?;
    let _ = applier.apply(inventory, Event::InitDone);
    Ok(())
}

/// Adds (or replaces) the objects of `cached`'s resource among `docs`, keeping what the
/// inventory holds already (`review`'s inputs on top of `--nads`/`--vms`).
pub fn add_documents<'d>(
    cached: Cached,
    docs: impl IntoIterator<Item = &'d Document>,
    inventory: &mut Inventory,
) -> Result<(), Error> {
    apply_all(&mut Applier::new(cached), docs, inventory, Event::Apply)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nad(name: &str, cni: &str) -> serde_json::Value {
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"config": format!("{{\"cniVersion\":\"0.3.1\",\"type\":\"{cni}\"}}")}
        })
    }

    fn vm(name: &str, mac: &str) -> serde_json::Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "t"},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [{"name": "ext", "bridge": {}, "macAddress": mac}]}},
                "networks": [{"name": "ext", "multus": {"networkName": "infra/ext"}}]}}}
        })
    }

    #[test]
    fn files_load_through_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("all.yaml"),
            format!(
                "{}\n---\n{}\n",
                nad("ext", "macvlan"),
                vm("other", "02:aa:00:00:00:01")
            ),
        )
        .unwrap();
        let mut inv = Inventory::new();
        load_path(Cached::Nad, dir.path(), &mut inv).unwrap();
        load_path(Cached::Vm, dir.path(), &mut inv).unwrap();
        assert_eq!((inv.nad_count(), inv.vm_count()), (1, 1));
        std::fs::write(dir.path().join("bad.yaml"), "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: x}\nspec: {config: 5}\n").unwrap();
        let e = load_path(Cached::Nad, dir.path(), &mut inv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.yaml") && e.contains("spec.config"), "{e}");
    }

    #[test]
    fn added_documents_keep_what_is_there() {
        let mut inv = Inventory::new();
        let docs = |v: serde_json::Value| manifests::parse_str(&v.to_string(), "x").unwrap();
        add_documents(Cached::Nad, &docs(nad("a", "bridge")), &mut inv).unwrap();
        add_documents(Cached::Nad, &docs(nad("b", "bridge")), &mut inv).unwrap();
        add_documents(Cached::Vm, &docs(vm("v", "02:aa:00:00:00:01")), &mut inv).unwrap();
        assert_eq!((inv.nad_count(), inv.vm_count()), (2, 1));
    }
}
