//! Structural-schema validation of objects against the real KubeVirt VirtualMachine CRD.
//!
//! kube-apiserver silently prunes fields a CRD's structural schema does not know, so a
//! webhook that writes `macaddress` instead of `macAddress` "works" in every unit test and
//! does nothing in a cluster. This validator reports such fields (and wrong types, missing
//! required fields, enum violations, ...) with their JSON path instead.
//!
//! Rules implemented, as kube-apiserver applies them to structural schemas:
//! - `type` (object, array, string, integer, number, boolean); `format: int32|int64` ranges;
//! - `properties`: a field not listed is an error ("unknown field", the apiserver would prune
//!   it) unless `x-kubernetes-preserve-unknown-fields: true` or `additionalProperties`;
//!   `additionalProperties` as a schema validates every value of the map;
//! - `items`, `required`, `enum`, `nullable` (a `null` where the schema is not nullable is
//!   reported: the apiserver would prune it, silently losing the value);
//! - `x-kubernetes-int-or-string`, `anyOf` (at least one branch must accept the value);
//! - `maxItems`/`minItems`, `maxLength`/`minLength`, `minimum`/`maximum`;
//! - `x-kubernetes-list-type: set|map` (no duplicates / no duplicate map keys).
//!
//! Not implemented (reported nowhere, so keep them in mind): `pattern` (no regex crate
//! available) and CEL `x-kubernetes-validations`. Any other schema keyword makes loading
//! panic, so an unsupported construct can never be ignored silently.
//!
//! The top-level `metadata` is ObjectMeta, which the apiserver validates itself: its keys
//! must be ObjectMeta fields, `labels`/`annotations` maps of string to string.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The VirtualMachine CRD shipped with the project's shared test data.
pub fn vm_crd_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/crds/kubevirt-virtualmachine-crd.yaml")
}

/// `additionalProperties` of a schema.
#[derive(Debug, Clone)]
pub enum Additional {
    Allowed(bool),
    Schema(Box<Schema>),
}

/// One node of a structural OpenAPI v3 schema, as used by CRDs.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub ty: Option<String>,
    pub properties: Option<BTreeMap<String, Schema>>,
    pub additional_properties: Option<Additional>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enum_values: Option<Vec<Value>>,
    pub int_or_string: bool,
    pub preserve_unknown_fields: bool,
    pub nullable: bool,
    pub format: Option<String>,
    pub any_of: Vec<Schema>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
}

/// Keywords accepted without being enforced (documentation, defaulting, CEL, regex).
const IGNORED_KEYWORDS: &[&str] = &[
    "description",
    "title",
    "example",
    "default",
    "pattern",
    "x-kubernetes-validations",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
];

impl Schema {
    /// Parses a schema node; panics on keywords this validator does not understand.
    pub fn from_json(v: &Value, path: &str) -> Schema {
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("schema at {path} is not an object: {v}"));
        let mut s = Schema::default();
        for (k, val) in obj {
            let here = format!("{path}.{k}");
            match k.as_str() {
                "type" => s.ty = Some(as_str(val, &here).to_string()),
                "properties" => {
                    let props = val
                        .as_object()
                        .unwrap_or_else(|| panic!("{here} is not an object"));
                    s.properties = Some(
                        props
                            .iter()
                            .map(|(name, sub)| {
                                (
                                    name.clone(),
                                    Schema::from_json(sub, &format!("{here}.{name}")),
                                )
                            })
                            .collect(),
                    );
                }
                "additionalProperties" => {
                    s.additional_properties = Some(match val {
                        Value::Bool(b) => Additional::Allowed(*b),
                        other => Additional::Schema(Box::new(Schema::from_json(other, &here))),
                    })
                }
                "items" => s.items = Some(Box::new(Schema::from_json(val, &here))),
                "required" => {
                    s.required = val
                        .as_array()
                        .unwrap_or_else(|| panic!("{here} is not an array"))
                        .iter()
                        .map(|r| as_str(r, &here).to_string())
                        .collect()
                }
                "enum" => {
                    s.enum_values = Some(
                        val.as_array()
                            .unwrap_or_else(|| panic!("{here} is not an array"))
                            .clone(),
                    )
                }
                "x-kubernetes-int-or-string" => s.int_or_string = as_bool(val, &here),
                "x-kubernetes-preserve-unknown-fields" => {
                    s.preserve_unknown_fields = as_bool(val, &here)
                }
                "nullable" => s.nullable = as_bool(val, &here),
                "format" => s.format = Some(as_str(val, &here).to_string()),
                "anyOf" => {
                    s.any_of = val
                        .as_array()
                        .unwrap_or_else(|| panic!("{here} is not an array"))
                        .iter()
                        .enumerate()
                        .map(|(i, b)| Schema::from_json(b, &format!("{here}[{i}]")))
                        .collect()
                }
                "maxItems" => s.max_items = Some(as_u64(val, &here)),
                "minItems" => s.min_items = Some(as_u64(val, &here)),
                "maxLength" => s.max_length = Some(as_u64(val, &here)),
                "minLength" => s.min_length = Some(as_u64(val, &here)),
                "minimum" => s.minimum = Some(as_f64(val, &here)),
                "maximum" => s.maximum = Some(as_f64(val, &here)),
                "x-kubernetes-list-type" => s.list_type = Some(as_str(val, &here).to_string()),
                "x-kubernetes-list-map-keys" => {
                    s.list_map_keys = val
                        .as_array()
                        .unwrap_or_else(|| panic!("{here} is not an array"))
                        .iter()
                        .map(|r| as_str(r, &here).to_string())
                        .collect()
                }
                k if IGNORED_KEYWORDS.contains(&k) => {}
                other => panic!(
                    "schema keyword {other:?} at {path} is not supported by tests/support/schema.rs; \
                     implement it rather than ignoring it"
                ),
            }
        }
        s
    }

    /// Loads `spec.versions[name == version].schema.openAPIV3Schema` of a CRD file.
    /// Returns the schema and the CRD's (group, kind, served versions).
    pub fn from_crd_file(path: &Path, version: &str) -> (Schema, CrdInfo) {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "cannot read CRD {}: {e}. The CRDs live \
                 under tests/data/crds.",
                path.display()
            )
        });
        let crd: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("CRD {} is not valid YAML: {e}", path.display()));
        let spec = &crd["spec"];
        let group = spec["group"].as_str().expect("CRD spec.group").to_string();
        let kind = spec["names"]["kind"]
            .as_str()
            .expect("CRD spec.names.kind")
            .to_string();
        let versions = spec["versions"].as_array().expect("CRD spec.versions");
        let served: Vec<String> = versions
            .iter()
            .filter(|v| v["served"].as_bool() == Some(true))
            .map(|v| v["name"].as_str().expect("version name").to_string())
            .collect();
        let v = versions
            .iter()
            .find(|v| v["name"].as_str() == Some(version))
            .unwrap_or_else(|| panic!("CRD {} has no version {version}", path.display()));
        let raw = &v["schema"]["openAPIV3Schema"];
        assert!(
            raw.is_object(),
            "CRD {} version {version} has no openAPIV3Schema",
            path.display()
        );
        let schema = Schema::from_json(raw, "openAPIV3Schema");
        (
            schema,
            CrdInfo {
                group,
                kind,
                served,
            },
        )
    }
}

/// Identity of a loaded CRD.
#[derive(Debug, Clone)]
pub struct CrdInfo {
    pub group: String,
    pub kind: String,
    pub served: Vec<String>,
}

fn as_str<'a>(v: &'a Value, path: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {v}"))
}
fn as_bool(v: &Value, path: &str) -> bool {
    v.as_bool()
        .unwrap_or_else(|| panic!("{path} is not a boolean: {v}"))
}
fn as_u64(v: &Value, path: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a non-negative integer: {v}"))
}
fn as_f64(v: &Value, path: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {v}"))
}

static VM_SCHEMA: OnceLock<(Schema, CrdInfo)> = OnceLock::new();

fn vm_loaded() -> &'static (Schema, CrdInfo) {
    VM_SCHEMA.get_or_init(|| {
        let (schema, info) = Schema::from_crd_file(&vm_crd_path(), "v1");
        assert_eq!(info.kind, "VirtualMachine", "unexpected CRD kind");
        assert!(
            info.served.iter().any(|v| v == "v1"),
            "VirtualMachine CRD does not serve v1: {:?}",
            info.served
        );
        (schema, info)
    })
}

/// The openAPIV3Schema of `kubevirt.io/v1` VirtualMachine, loaded once.
pub fn vm_schema() -> &'static Schema {
    &vm_loaded().0
}

/// Validates a whole VirtualMachine object (apiVersion, kind, metadata, spec, status).
/// Returns every violation as `path: message`.
pub fn validate_vm(obj: &Value) -> Result<(), Vec<String>> {
    let (schema, info) = vm_loaded();
    let mut errs = Vec::new();
    let want_api = format!("{}/v1", info.group);
    match obj.get("apiVersion") {
        Some(Value::String(a)) if *a == want_api => {}
        Some(other) => errs.push(format!(
            "apiVersion: must be {want_api:?} (served versions: {:?}), got {other}",
            info.served
        )),
        None => errs.push("apiVersion: required field missing".to_string()),
    }
    match obj.get("kind") {
        Some(Value::String(k)) if *k == info.kind => {}
        Some(other) => errs.push(format!("kind: must be {:?}, got {other}", info.kind)),
        None => errs.push("kind: required field missing".to_string()),
    }
    validate_root(schema, obj, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Validates any custom resource against a CRD root schema (metadata handled as ObjectMeta).
pub fn validate_root(schema: &Schema, obj: &Value, errs: &mut Vec<String>) {
    let Some(map) = obj.as_object() else {
        errs.push(format!("<root>: expected object, got {}", type_name(obj)));
        return;
    };
    for (k, v) in map {
        if k == "metadata" {
            validate_object_meta(v, "metadata", errs);
            continue;
        }
        match schema.properties.as_ref().and_then(|p| p.get(k)) {
            Some(sub) => validate(sub, v, k, errs),
            None => errs.push(format!("{}: unknown field", join_key("", k))),
        }
    }
    for r in &schema.required {
        if !map.contains_key(r) {
            errs.push(format!("{}: required field missing", join_key("", r)));
        }
    }
}

const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn validate_object_meta(v: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(map) = v.as_object() else {
        errs.push(format!("{path}: expected object, got {}", type_name(v)));
        return;
    };
    for (k, val) in map {
        let p = join_key(path, k);
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            errs.push(format!("{p}: unknown field (not an ObjectMeta field)"));
            continue;
        }
        match k.as_str() {
            "labels" | "annotations" => match val {
                Value::Null => {}
                Value::Object(m) => {
                    for (mk, mv) in m {
                        if !mv.is_string() {
                            errs.push(format!(
                                "{}: expected string, got {}",
                                join_key(&p, mk),
                                type_name(mv)
                            ));
                        }
                    }
                }
                other => errs.push(format!(
                    "{p}: expected map of string to string, got {}",
                    type_name(other)
                )),
            },
            "name" | "generateName" | "namespace" | "uid" | "resourceVersion"
                if !val.is_string() =>
            {
                errs.push(format!("{p}: expected string, got {}", type_name(val)));
            }
            "finalizers" => match val.as_array() {
                Some(a) if a.iter().all(Value::is_string) => {}
                _ => errs.push(format!("{p}: expected array of strings")),
            },
            _ => {}
        }
    }
}

/// Validates `v` against `s`; `path` is the JSON path of `v` (empty for the root).
pub fn validate(s: &Schema, v: &Value, path: &str, errs: &mut Vec<String>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if !s.nullable {
            errs.push(format!(
                "{shown}: null is not allowed (not nullable; the apiserver would prune it)"
            ));
        }
        return;
    }
    if s.int_or_string {
        if !(is_integer(v) || v.is_string()) {
            errs.push(format!(
                "{shown}: expected integer or string, got {}",
                type_name(v)
            ));
            return;
        }
    } else if let Some(ty) = &s.ty
        && !type_matches(ty, v)
    {
        errs.push(format!("{shown}: expected {ty}, got {}", type_name(v)));
        return;
    }

    if let Some(allowed) = &s.enum_values
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errs.push(format!("{shown}: {v} is not one of [{}]", list.join(", ")));
    }
    if !s.any_of.is_empty() {
        let ok = s.any_of.iter().any(|b| {
            let mut e = Vec::new();
            validate_value_only(b, v, path, &mut e);
            e.is_empty()
        });
        if !ok {
            errs.push(format!("{shown}: matches none of the anyOf alternatives"));
        }
    }

    match v {
        Value::Object(map) => {
            for (k, val) in map {
                let p = join_key(path, k);
                if let Some(sub) = s.properties.as_ref().and_then(|p| p.get(k)) {
                    validate(sub, val, &p, errs);
                    continue;
                }
                match &s.additional_properties {
                    Some(Additional::Schema(sub)) => validate(sub, val, &p, errs),
                    Some(Additional::Allowed(true)) => {}
                    Some(Additional::Allowed(false)) | None => {
                        if !s.preserve_unknown_fields {
                            errs.push(format!("{p}: unknown field"));
                        }
                    }
                }
            }
            for r in &s.required {
                if !map.contains_key(r) {
                    errs.push(format!("{}: required field missing", join_key(path, r)));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = s.max_items
                && n > max
            {
                errs.push(format!("{shown}: {n} items, at most {max} allowed"));
            }
            if let Some(min) = s.min_items
                && n < min
            {
                errs.push(format!("{shown}: {n} items, at least {min} required"));
            }
            if let Some(item_schema) = &s.items {
                for (i, it) in items.iter().enumerate() {
                    validate(item_schema, it, &format!("{path}[{i}]"), errs);
                }
            }
            check_list_type(s, items, shown, errs);
        }
        Value::String(st) => {
            let n = st.chars().count() as u64;
            if let Some(max) = s.max_length
                && n > max
            {
                errs.push(format!("{shown}: length {n}, at most {max} allowed"));
            }
            if let Some(min) = s.min_length
                && n < min
            {
                errs.push(format!("{shown}: length {n}, at least {min} required"));
            }
        }
        Value::Number(num) => {
            if let Some(f) = num.as_f64() {
                if let Some(min) = s.minimum
                    && f < min
                {
                    errs.push(format!("{shown}: {num} is less than the minimum {min}"));
                }
                if let Some(max) = s.maximum
                    && f > max
                {
                    errs.push(format!("{shown}: {num} is greater than the maximum {max}"));
                }
            }
            if s.ty.as_deref() == Some("integer") {
                let range = match s.format.as_deref() {
                    Some("int32") => Some((i32::MIN as i64, i32::MAX as i64)),
                    Some("int64") => Some((i64::MIN, i64::MAX)),
                    _ => None,
                };
                if let Some((lo, hi)) = range {
                    match num.as_i64() {
                        Some(i) if i >= lo && i <= hi => {}
                        _ => errs.push(format!(
                            "{shown}: {num} is out of range for format {}",
                            s.format.as_deref().unwrap_or("")
                        )),
                    }
                }
            }
        }
        _ => {}
    }
}

/// anyOf branches in structural schemas only constrain values (types, enums, ranges);
/// pruning is decided by the enclosing schema. So a branch without properties does not make
/// object fields "unknown".
fn validate_value_only(s: &Schema, v: &Value, path: &str, errs: &mut Vec<String>) {
    let mut relaxed = s.clone();
    relaxed.preserve_unknown_fields = true;
    validate(&relaxed, v, path, errs);
}

fn check_list_type(s: &Schema, items: &[Value], shown: &str, errs: &mut Vec<String>) {
    match s.list_type.as_deref() {
        Some("set") => {
            for (i, it) in items.iter().enumerate() {
                if items[..i].contains(it) {
                    errs.push(format!("{shown}[{i}]: duplicate entry {it} in a set list"));
                }
            }
        }
        Some("map") if !s.list_map_keys.is_empty() => {
            let mut seen: Vec<Vec<Value>> = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let key: Vec<Value> = s
                    .list_map_keys
                    .iter()
                    .map(|k| it.get(k).cloned().unwrap_or(Value::Null))
                    .collect();
                if seen.contains(&key) {
                    errs.push(format!(
                        "{shown}[{i}]: duplicate map-list key {:?}",
                        key.iter().map(Value::to_string).collect::<Vec<_>>()
                    ));
                }
                seen.push(key);
            }
        }
        _ => {}
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        other => panic!("unsupported schema type {other:?}"),
    }
}

/// JSON type name of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `parent.key`, or `parent["key"]` when the key is not a plain identifier.
pub fn join_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// Parses every document of a (multi-document) YAML string into JSON values.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| format!("YAML document {i}: {e}"))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Validates an object of any KubeVirt kind the webhook reviews (VirtualMachine,
/// VirtualMachineInstance, VirtualMachineInstanceReplicaSet, VirtualMachinePool) against its
/// own CRD under `tests/data/crds/`, at the version its `apiVersion` names.
pub fn validate_object(obj: &Value) -> Result<(), Vec<String>> {
    type Loaded = &'static (Schema, CrdInfo);
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<(String, String), Loaded>>> = OnceLock::new();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let loaded: Loaded = {
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
        *cache
            .entry((kind.clone(), version.to_string()))
            .or_insert_with(|| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                    "tests/data/crds/kubevirt-{}-crd.yaml",
                    kind.to_lowercase()
                ));
                Box::leak(Box::new(Schema::from_crd_file(&path, version)))
            })
    };
    let (schema, info) = loaded;
    let mut errs = Vec::new();
    if info.group != group || info.kind != kind {
        errs.push(format!(
            "apiVersion/kind: {api_version} {kind} is not {}/{version} {}",
            info.group, info.kind
        ));
    }
    validate_root(schema, obj, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
