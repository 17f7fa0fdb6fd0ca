//! The JSON Patch (RFC 6902) a mutation answers with, written as text operation by operation
//! (the key order of json-patch's own types), with pointers whose tokens are escaped by
//! `jsonptr` (annotation keys contain `/`).
use jsonptr::PointerBuf;
use serde::Serialize;
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

/// The operations of one mutation, in order, written as the JSON Patch text the answer
/// carries: each value is serialized where it is added, so no `PatchOperation` or value tree
/// is kept, walked again and dropped (issue #19).
#[derive(Debug, Default)]
pub struct Ops(Vec<u8>);

/// A value the engine adds: text, or a JSON value it built. Neither can fail to serialize
/// (a `Value`'s maps have string keys); nor can the engine's structs of strings that
/// [`Ops::add_struct`] takes, which is why the patch takes nothing else.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl<'a> From<&'a str> for Item<'a> {
    fn from(text: &'a str) -> Self {
        Item::Text(text)
    }
}

impl<'a> From<&'a Value> for Item<'a> {
    fn from(value: &'a Value) -> Self {
        Item::Json(value)
    }
}

impl Ops {
    pub fn add<'a>(&mut self, path: PointerBuf, value: impl Into<Item<'a>>) {
        self.operation("add", &path, Some(value.into()));
    }

    pub fn replace<'a>(&mut self, path: PointerBuf, value: impl Into<Item<'a>>) {
        self.operation("replace", &path, Some(value.into()));
    }

    pub fn remove(&mut self, path: PointerBuf) {
        self.operation("remove", &path, None);
    }

    /// Adds one of the engine's own `Serialize` structs, written straight into the patch
    /// without building a value tree first. Their fields are strings and such structs, so
    /// their serialization cannot fail either.
    pub fn add_struct<T: Serialize>(&mut self, path: PointerBuf, value: &T) {
        self.begin("add", &path);
        let out = &mut self.0;
        out.extend_from_slice(b",\"value\":");
        serde_json::to_writer(&mut *out, value).expect("the engine's structs serialize");
        out.push(b'}');
    }

    /// `{"op":…,"path":…,"value":…}`, the key order of json-patch's own serialization.
    fn operation(&mut self, op: &str, path: &PointerBuf, value: Option<Item<'_>>) {
        self.begin(op, path);
        let out = &mut self.0;
        if let Some(value) = value {
            out.extend_from_slice(b",\"value\":");
            write(out, value);
        }
        out.push(b'}');
    }

    /// An operation up to its path: `{"op":…,"path":…`.
    fn begin(&mut self, op: &str, path: &PointerBuf) {
        let out = &mut self.0;
        if out.is_empty() {
            out.reserve(CAPACITY);
            out.push(b'[');
        } else {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\",\"path\":");
        write(out, Item::Text(path.as_str()));
    }

    /// The patch's JSON text, empty when there is no operation.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if !self.0.is_empty() {
            self.0.push(b']');
        }
        self.0
    }
}

/// Room for the seed scenario's patch (rename, two MACs, a cloud-init volume and disk:
/// 1,075 bytes) and more.
const CAPACITY: usize = 2048;

/// Serializes into the patch; see [`Item`] for why it cannot fail (a `Vec` takes every write).
fn write(out: &mut Vec<u8>, value: Item<'_>) {
    let written = match value {
        Item::Text(text) => serde_json::to_writer(out, text),
        Item::Json(value) => serde_json::to_writer(out, value),
    };
    written.expect("text and JSON values serialize");
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
    fn operations_are_written_as_json_patch_writes_them() {
        let mut ops = Ops::default();
        ops.add(
            pointer("/a", ["-"]),
            &serde_json::json!({"b": "x\"y", "a": [1]}),
        );
        ops.remove(pointer("/b", []));
        ops.replace(pointer("/metadata/annotations", ["k/\"q"]), "line\nnext");
        // json-patch's own types, serialized by serde: the text the patch was before.
        let theirs: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/a/-", "value": {"b": "x\"y", "a": [1]}},
            {"op": "remove", "path": "/b"},
            {"op": "replace", "path": "/metadata/annotations/k~1\"q", "value": "line\nnext"},
        ]))
        .unwrap();
        assert_eq!(
            String::from_utf8(ops.into_bytes()).unwrap(),
            serde_json::to_string(&theirs).unwrap()
        );
        assert!(
            Ops::default().into_bytes().is_empty(),
            "no operation, no text"
        );
    }

    #[test]
    fn a_struct_is_written_as_its_value_would_be() {
        #[derive(Serialize)]
        struct Named<'a> {
            b: &'a str,
            a: [u8; 1],
        }
        let mut ours = Ops::default();
        ours.add_struct(pointer("/a", ["-"]), &Named { b: "x\"y", a: [1] });
        let mut theirs = Ops::default();
        theirs.add(
            pointer("/a", ["-"]),
            &serde_json::json!({"b": "x\"y", "a": [1]}),
        );
        let ours = String::from_utf8(ours.into_bytes()).unwrap();
        // A struct keeps its field order where a map sorts its keys.
        assert_eq!(
            ours,
            r#"[{"op":"add","path":"/a/-","value":{"b":"x\"y","a":[1]}}]"#
        );
        assert_eq!(
            serde_json::from_str::<Value>(&ours).unwrap(),
            serde_json::from_slice::<Value>(&theirs.into_bytes()).unwrap()
        );
    }
}
