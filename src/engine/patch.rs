//! The JSON Patch (RFC 6902) a mutation answers with, built from typed operations and
//! pointers whose tokens are escaped by `jsonptr` (annotation keys contain `/`).
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use crate::model::text::push_decimal;

/// A pointer from one of the engine's own `/`-separated prefixes (no escaping needed: they
/// are field names) and further tokens taken as they are (escaped as needed).
pub fn pointer<'t>(prefix: &'t str, tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    // The prefix is taken whole (one validating scan) into a buffer sized for the rest: a
    // token at a time costs an allocation each, on every patch operation.
    let mut buf = String::with_capacity(prefix.len() + 48);
    buf.push_str(prefix);
    let mut p = PointerBuf::parse(buf)
        .unwrap_or_else(|_| PointerBuf::from_tokens(prefix.split('/').filter(|t| !t.is_empty())));
    for token in tokens {
        p.push_back(token);
    }
    p
}

/// The pointer of field `field` of item `index` of the list at `list` (both the engine's own,
/// so nothing needs escaping), written into one buffer: one allocation per operation.
pub fn item(list: &str, index: usize, field: &str) -> PointerBuf {
    let mut buf = String::with_capacity(list.len() + field.len() + 8);
    buf.push_str(list);
    buf.push('/');
    push_decimal(&mut buf, index as u64);
    buf.push('/');
    buf.push_str(field);
    PointerBuf::parse(buf).unwrap_or_else(|_| pointer(list, [index.to_string().as_str(), field]))
}

/// The operations of one mutation, in order.
#[derive(Debug, Default)]
pub struct Ops(Vec<PatchOperation>);

impl Ops {
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.0
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.0
            .push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    pub fn remove(&mut self, path: PointerBuf) {
        self.0
            .push(PatchOperation::Remove(RemoveOperation { path }));
    }

    pub fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_escaped_and_prefixes_split() {
        let p = pointer(
            "/spec/template/metadata",
            ["annotations", "k8s.v1.cni.cncf.io/networks"],
        );
        assert_eq!(
            p.as_str(),
            "/spec/template/metadata/annotations/k8s.v1.cni.cncf.io~1networks"
        );
        assert_eq!(pointer("/metadata", ["a~b"]).as_str(), "/metadata/a~0b");
        assert_eq!(pointer("", ["a"]).as_str(), "/a");
        assert_eq!(pointer("/spec/volumes", []).as_str(), "/spec/volumes");
        // Not a pointer (no leading `/`): its parts are still tokens.
        assert_eq!(pointer("spec/volumes", ["-"]).as_str(), "/spec/volumes/-");
    }

    #[test]
    fn items_are_pointers_like_any_other() {
        for (list, index, field) in [
            (
                "/spec/template/spec/domain/devices/interfaces",
                12,
                "macAddress",
            ),
            ("/spec/networks", 0, "name"),
            ("spec/networks", 3, "name"),
            ("/spec/a~b", 1, "name"),
        ] {
            assert_eq!(
                item(list, index, field),
                pointer(list, [index.to_string().as_str(), field]),
                "{list}"
            );
        }
    }

    #[test]
    fn operations_serialize_as_rfc6902() {
        let mut ops = Ops::default();
        ops.add(pointer("/a", ["-"]), Value::from(1));
        ops.remove(pointer("/b", []));
        assert_eq!(
            serde_json::to_value(ops.into_patch()).unwrap(),
            serde_json::json!([{"op": "add", "path": "/a/-", "value": 1}, {"op": "remove", "path": "/b"}])
        );
    }
}
