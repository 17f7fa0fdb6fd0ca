//! AdmissionReview in, AdmissionReview out: the protocol layer shared by the server and
//! `review -o review`, so both give byte-for-byte the same answers. No IO.
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    config::Config,
    engine::{self, Operation, Request},
    inventory::Inventory,
};

/// Which webhook is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// A body that is not an AdmissionReview at all: the server answers 400.
#[derive(Debug, thiserror::Error)]
pub enum NotAReview {
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not an `admission.k8s.io/v1` or `v1beta1` AdmissionReview.
    #[error("body is not an admission.k8s.io/v1 AdmissionReview")]
    WrongKind,
    /// An AdmissionReview without a `request` (and so without a uid to answer to).
    #[error("AdmissionReview has no request.uid")]
    NoRequest,
}

/// The answer, plus what logs and metrics need.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The full AdmissionReview to send back.
    pub review: Value,
    pub uid: String,
    pub allowed: bool,
    pub dry_run: bool,
    pub operation: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The JSON Patch (mutate only; empty when nothing changes).
    pub patch: json_patch::Patch,
    pub warnings: Vec<String>,
    /// The denial message, or why the request could not be decoded.
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GroupVersionKind {
    group: String,
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawRequest {
    kind: GroupVersionKind,
    operation: String,
    namespace: Option<String>,
    name: Option<String>,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: Option<bool>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"code": code, "reason": reason, "message": message})
}

/// An AdmissionReview read from a body, ready to be answered. Reading needs no cluster view,
/// so the server does it before taking the inventory lock.
#[derive(Debug)]
pub struct Parsed {
    api_version: String,
    uid: String,
    dry_run: bool,
    operation: String,
    request: Result<RawRequest, String>,
}

/// Reads an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Parsed, NotAReview> {
    let mut doc: Value = serde_json::from_slice(body).map_err(NotAReview::NotJson)?;
    let api_version = match doc.get("apiVersion").and_then(Value::as_str) {
        Some(v @ ("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")) => v.to_string(),
        _ => return Err(NotAReview::WrongKind),
    };
    if doc.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(NotAReview::WrongKind);
    }
    // Taken out of the document, so the objects inside are decoded without a copy.
    let raw_request = doc
        .get_mut("request")
        .map(Value::take)
        .ok_or(NotAReview::NoRequest)?;
    // The uid is read on its own so that a request that does not decode is still answered.
    let uid = raw_request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or(NotAReview::NoRequest)?
        .to_string();
    let text = |key: &str| {
        raw_request
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(Parsed {
        api_version,
        uid,
        dry_run: raw_request
            .get("dryRun")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        operation: text("operation"),
        request: serde_json::from_value::<RawRequest>(raw_request)
            .map_err(|e| format!("cannot decode AdmissionReview request: {e}")),
    })
}

impl Parsed {
    /// Decides and builds the response.
    pub fn answer(self, endpoint: Endpoint, inventory: &Inventory, config: &Config) -> Reply {
        let mut reply = Reply {
            review: Value::Null,
            uid: self.uid.clone(),
            allowed: true,
            dry_run: self.dry_run,
            operation: self.operation,
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
            patch: json_patch::Patch(vec![]),
            warnings: vec![],
            message: None,
        };
        let mut response = json!({"uid": self.uid, "allowed": true});
        match self.request {
            Err(message) => fail(&mut reply, &mut response, message),
            Ok(req) => answer(&mut reply, &mut response, req, endpoint, inventory, config),
        }
        reply.review = json!({"apiVersion": self.api_version, "kind": "AdmissionReview", "response": response});
        reply
    }
}

/// Answers one AdmissionReview body.
pub fn review(
    body: &[u8],
    endpoint: Endpoint,
    inventory: &Inventory,
    config: &Config,
) -> Result<Reply, NotAReview> {
    Ok(parse(body)?.answer(endpoint, inventory, config))
}

fn fail(reply: &mut Reply, response: &mut Value, message: String) {
    reply.allowed = false;
    response["allowed"] = json!(false);
    response["status"] = status(400, "BadRequest", &message);
    reply.message = Some(message);
}

fn answer(
    reply: &mut Reply,
    response: &mut Value,
    req: RawRequest,
    endpoint: Endpoint,
    inventory: &Inventory,
    config: &Config,
) {
    reply.kind = req.kind.kind.clone();
    let operation = match req.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        _ => return, // DELETE, CONNECT: nothing to say
    };
    if req.kind.group != "kubevirt.io" || req.kind.kind != "VirtualMachine" {
        return;
    }
    let Some(object) = req.object.as_ref() else {
        return fail(reply, response, "request.object is missing".into());
    };
    let meta_ns = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let namespace = req
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(meta_ns)
        .unwrap_or("default");
    reply.namespace = namespace.to_string();
    reply.name = req
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    let request = Request {
        operation,
        namespace,
        object,
        old_object: req.old_object.as_ref(),
    };
    match endpoint {
        Endpoint::Mutate => match engine::mutate(&request, inventory, config) {
            Err(e) => fail(reply, response, e.to_string()),
            Ok(m) => {
                if !m.patch.0.is_empty() {
                    let bytes = serde_json::to_vec(&m.patch).expect("patches serialize");
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
                reply.patch = m.patch;
                reply.warnings = m.warnings;
            }
        },
        Endpoint::Validate => match engine::validate(&request, inventory, config) {
            Err(e) => fail(reply, response, e.to_string()),
            Ok(v) => {
                if !v.allowed() {
                    let message = v.message();
                    reply.allowed = false;
                    response["allowed"] = json!(false);
                    response["status"] = status(403, "Forbidden", &message);
                    reply.message = Some(message);
                }
                reply.warnings = v.warnings;
            }
        },
    }
    if !reply.warnings.is_empty() {
        response["warnings"] = json!(reply.warnings);
    }
}

/// Builds the AdmissionReview kube-apiserver would send for `object`.
pub fn request_for(
    uid: &str,
    operation: Operation,
    namespace: &str,
    object: &Value,
    old_object: Option<&Value>,
    dry_run: bool,
) -> Value {
    let name = object
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
            "namespace": namespace,
            "name": name,
            "operation": match operation { Operation::Create => "CREATE", Operation::Update => "UPDATE" },
            "object": object,
            "oldObject": old_object,
            "dryRun": dry_run,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(body: &Value, endpoint: Endpoint) -> Result<Reply, NotAReview> {
        review(
            body.to_string().as_bytes(),
            endpoint,
            &Inventory::new(),
            &Config::default(),
        )
    }

    #[test]
    fn not_reviews_are_rejected() {
        assert!(matches!(
            review(
                b"nope",
                Endpoint::Mutate,
                &Inventory::new(),
                &Config::default()
            ),
            Err(NotAReview::NotJson(_))
        ));
        assert!(matches!(
            ask(&json!({"kind": "Pod"}), Endpoint::Mutate),
            Err(NotAReview::WrongKind)
        ));
        assert!(matches!(
            ask(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
                Endpoint::Mutate
            ),
            Err(NotAReview::NoRequest)
        ));
    }

    #[test]
    fn undecodable_object_still_echoes_uid() {
        let body = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "operation": "CREATE", "object": {"spec": {"template": 7}}}});
        let r = ask(&body, Endpoint::Validate).unwrap();
        assert_eq!(r.review["response"]["uid"], "u-1");
        assert_eq!(r.review["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(r.review["response"]["allowed"], false);
        assert_eq!(r.review["response"]["status"]["code"], 400);
        let wrong_type = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-2", "operation": 5}});
        let r = ask(&wrong_type, Endpoint::Mutate).unwrap();
        assert_eq!((r.uid.as_str(), r.allowed), ("u-2", false));
    }

    #[test]
    fn other_kinds_and_operations_pass_untouched() {
        let pod = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "p", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "object": {"garbage": true}}});
        let r = ask(&pod, Endpoint::Mutate).unwrap();
        assert_eq!(r.review["response"], json!({"uid": "p", "allowed": true}));
        let delete = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "d", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"}, "operation": "DELETE"}});
        assert_eq!(
            ask(&delete, Endpoint::Validate).unwrap().review["response"],
            json!({"uid": "d", "allowed": true})
        );
    }
}
