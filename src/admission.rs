//! AdmissionReview in, AdmissionReview out: the one path from a question to its answer
//! (SPEC §3, §4). The server hands it an HTTP body; `review` hands it an AdmissionReview from
//! a file, or a bare manifest turned into the request the API server would send. Both then
//! get the same [`Answer`], whose response is the one copy of the decision: logs, metrics and
//! `review`'s output all read from it. The server reads a body with [`read`], which reads the
//! object straight into the engine's view where it can and leaves the rest to [`parse`], to
//! the same answer. No IO.
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{
    DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    engine::{self, Object, Request, Rule, Verdict, Violation},
    inventory::Inventory,
    model::{
        config::{Config, Enforcement},
        kinds::{self, Kind},
        vm::{AnyJson, Guest, ObjectText},
    },
};

/// Which webhook is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    /// `/validate`: enforces as the configuration's `enforcement` says.
    Validate,
    /// `/validate/warn`: warns instead of denying, whatever the configuration (SPEC §2.11);
    /// `deploy/` routes namespaces labelled `kubevirt-net-webhook.io/enforcement: warn` here.
    ValidateWarn,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Mutate, Endpoint::Validate, Endpoint::ValidateWarn];

    /// The name in metrics and logs; the path is `/` and this.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
            Endpoint::ValidateWarn => "validate/warn",
        }
    }
}

/// What became of a violation (SPEC §2.11), as in the `action` label of
/// `kubevirt_net_webhook_violations_total` and in `auditAnnotations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The request was denied for it.
    Deny,
    /// Allowed with a warning: `enforcement: warn`, or `/validate/warn`.
    Warn,
    /// Allowed with a warning: the stored object had it too.
    Ratchet,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Deny, Action::Warn, Action::Ratchet];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Ratchet => "ratchet",
        }
    }
}

/// The key of the response's `auditAnnotations` that lists the violations found.
pub const AUDIT_ANNOTATION: &str = "violations";
/// At most this many violations are listed in the audit annotation; the rest are counted.
const AUDITED: usize = 32;

/// The AdmissionReview versions the webhook answers, each in its own version.
pub const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];
const REVIEW_KIND: &str = "AdmissionReview";

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

/// An AdmissionReview read from a body, ready to be answered. Reading needs no cluster view,
/// so the server does it before taking the inventory lock.
#[derive(Debug, Clone)]
pub struct Parsed(Inner);

#[derive(Debug, Clone)]
enum Inner {
    Request(Box<AdmissionRequest<DynamicObject>>),
    /// JSON enough to hold a uid, but not a request that decodes: answered with the uid
    /// (SPEC §3), allowed = false when it may be ours; another kind passes as always.
    Undecodable {
        types: TypeMeta,
        uid: String,
        error: String,
        ours: bool,
    },
}

/// Reads an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Parsed, NotAReview> {
    // Valid UTF-8 is checked once, in one fast pass over the whole body, so that the decoder
    // need not check each string it reads (serde_json's `from_str` trusts its input); a body
    // that is not UTF-8 gets the byte decoder, and with it the same error as always.
    let decoded = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<OnePassReview<OnePassRequest>>(text),
        Err(_) => serde_json::from_slice::<OnePassReview<OnePassRequest>>(body),
    };
    match decoded {
        Ok(review) => {
            if !VERSIONS.contains(&review.api_version.as_str()) || review.kind != REVIEW_KIND {
                return Err(NotAReview::WrongKind);
            }
            let mut request = review.request.ok_or(NotAReview::NoRequest)?.0;
            request.types = review_types(&review.api_version);
            Ok(Parsed(Inner::Request(request)))
        }
        Err(error) => undecodable(body, error),
    }
}

/// A request read for the server: straight from the body's text where it can be, the
/// object's guest view in the same pass and no `Value` tree of it (issue #19); else as
/// [`parse`] reads it. Both answer alike: the one-pass reading refuses whatever it does not
/// read exactly as the tree does, and [`parse`] then answers it.
pub enum Read<'a> {
    OnePass(Box<OnePass<'a>>),
    Parsed(Parsed),
}

/// A CREATE or UPDATE of one of our kinds, its objects read as guest views.
pub struct OnePass<'a> {
    /// kube's request without its objects.
    request: AdmissionRequest<DynamicObject>,
    kind: Kind,
    object: Guest<'a>,
    old_object: Option<Guest<'a>>,
}

/// Reads an AdmissionReview body for the server (see [`Read`]).
pub fn read(body: &[u8]) -> Result<Read<'_>, NotAReview> {
    let one_pass = Some(body)
        .filter(|body| body.len() <= ONE_PASS_MAX_BYTES)
        .and_then(|body| std::str::from_utf8(body).ok())
        .and_then(read_one_pass);
    match one_pass {
        Some(one_pass) => Ok(Read::OnePass(Box::new(one_pass))),
        None => parse(body).map(Read::Parsed),
    }
}

/// The largest body the one-pass reading tries. A body it leaves to [`parse`] late is read
/// twice: nothing at the size of a VM (a few KiB), but twice the worst case at the body
/// limit, so larger bodies go to [`parse`] at once.
pub const ONE_PASS_MAX_BYTES: usize = 256 * 1024;

/// The one-pass reading, or `None` for anything it leaves to [`parse`]: a body that does
/// not decode, another kind or operation, an object without the parts its kind has.
fn read_one_pass(text: &str) -> Option<OnePass<'_>> {
    // Boxed: the objects are large, and the review is moved on its way up.
    let review: OnePassReview<Box<Fields<Box<ObjectText<'_>>>>> =
        serde_json::from_str(text).ok()?;
    if !VERSIONS.contains(&review.api_version.as_str()) || review.kind != REVIEW_KIND {
        return None;
    }
    let (mut request, object, old_object) = review.request?.split();
    request.types = review_types(&review.api_version);
    let kind = ours(&request)?;
    let object = object?.into_guest(kind).ok()?;
    let old_object = match old_object {
        Some(old) => Some(old.into_guest(kind).ok()?),
        None => None,
    };
    Some(OnePass {
        request,
        kind,
        object,
        old_object,
    })
}

impl Read<'_> {
    /// Decides and builds the answer, as [`Parsed::answer`] does.
    pub fn answer(&self, endpoint: Endpoint, inventory: &Inventory, config: &Config) -> Answer {
        let one = match self {
            Read::Parsed(parsed) => return parsed.answer(endpoint, inventory, config),
            Read::OnePass(one) => one,
        };
        let req = &one.request;
        let meta = &one.object.metadata;
        let facts = Facts::of(req, Some(meta));
        let request = Request {
            kind: one.kind,
            operation: &req.operation,
            namespace: kinds::namespace(req.namespace.as_deref(), meta.namespace.as_deref()),
            object: Object::View(&one.object.vm),
            old_object: one.old_object.as_ref().map(|old| Object::View(&old.vm)),
        };
        let mut found = Vec::new();
        let response = run(
            AdmissionResponse::from(req),
            &request,
            endpoint,
            inventory,
            config,
            &mut found,
        );
        Answer::new(response, facts, found)
    }
}

/// kube's `AdmissionReview` and `DynamicObject` read their fields through serde's `flatten`,
/// which buffers the whole document before decoding it again. These read the same JSON into
/// the same types in one pass (the request's fields are kube's own, decoded by kube's types).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnePassReview<R> {
    api_version: String,
    kind: String,
    request: Option<R>,
}

struct OnePassRequest(Box<AdmissionRequest<DynamicObject>>);

/// Reads an object's JSON text in one pass (a list item, for `audit`).
pub fn decode_object(json: &str) -> serde_json::Result<DynamicObject> {
    serde_json::from_str::<OnePassObject>(json).map(|o| o.0)
}

/// A `DynamicObject` read in one pass: `apiVersion` and `kind` into its type, `metadata`
/// typed, every other field into `data`.
struct OnePassObject(DynamicObject);

impl<'de> Deserialize<'de> for OnePassObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OnePassObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OnePassObject, A::Error> {
                let (mut api_version, mut kind) = (None, None);
                let mut metadata = None;
                let mut data = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => api_version = Some(map.next_value::<String>()?),
                        "kind" => kind = Some(map.next_value::<String>()?),
                        "metadata" => metadata = map.next_value()?,
                        _ => {
                            data.insert(key, map.next_value()?);
                        }
                    }
                }
                Ok(OnePassObject(DynamicObject {
                    types: match (api_version, kind) {
                        (Some(api_version), Some(kind)) => Some(TypeMeta { api_version, kind }),
                        _ => None,
                    },
                    metadata: metadata.unwrap_or_default(),
                    data: Value::Object(data),
                }))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl<'de> Deserialize<'de> for OnePassRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (mut request, object, old_object) = Fields::<OnePassObject>::deserialize(d)?.split();
        request.object = object.map(|o| o.0);
        request.old_object = old_object.map(|o| o.0);
        Ok(Self(Box::new(request)))
    }
}

/// The fields of an AdmissionRequest, with its objects read as `O`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields<O> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
    #[serde(default)]
    dry_run: bool,
    // Never read: checked as kube's `RawExtension` checks it, but not built.
    #[serde(default, rename = "options")]
    _options: Option<AnyJson>,
}

fn none<O>() -> Option<O> {
    None
}

impl<O> Fields<O> {
    /// kube's request without its objects, and the objects.
    fn split(self) -> (AdmissionRequest<DynamicObject>, Option<O>, Option<O>) {
        let request = AdmissionRequest {
            types: TypeMeta::default(),
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: None,
            old_object: None,
            dry_run: self.dry_run,
            options: None,
        };
        (request, self.object, self.old_object)
    }
}

/// The few fields of an AdmissionReview needed to answer one that does not decode. Every
/// other field is skipped by serde_json's iterative `ignore_value`, so even an object nested
/// far deeper than the decoder's recursion limit still gets its uid back (SPEC §3).
#[derive(Deserialize)]
struct Shallow {
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    kind: Option<Value>,
    request: Option<ShallowRequest>,
}

/// Each field any JSON, so that a wrong type in one still lets the uid through.
#[derive(Deserialize)]
struct ShallowRequest {
    uid: Option<Value>,
    kind: Option<Value>,
    operation: Option<Value>,
}

/// Classifies a body that does not decode as an AdmissionReview: not one at all, or one
/// whose uid can still be answered.
fn undecodable(body: &[u8], error: serde_json::Error) -> Result<Parsed, NotAReview> {
    let doc: Shallow = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        Err(e) if e.is_syntax() || e.is_eof() => return Err(NotAReview::NotJson(e)),
        // JSON, but `request` (or the document) is not an object.
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => return Err(NotAReview::WrongKind),
            Err(e) => return Err(NotAReview::NotJson(e)),
        },
    };
    let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
    let api_version = text(&doc.api_version)
        .filter(|v| VERSIONS.contains(&v.as_str()))
        .ok_or(NotAReview::WrongKind)?;
    if text(&doc.kind).as_deref() != Some(REVIEW_KIND) {
        return Err(NotAReview::WrongKind);
    }
    let request = doc.request.ok_or(NotAReview::NoRequest)?;
    let uid = text(&request.uid).ok_or(NotAReview::NoRequest)?;
    // Whether the request could be one the webhook decides, read leniently: a field of the
    // wrong type must not make a request of ours pass.
    let field = |k: &str| {
        request
            .kind
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (group, kind) = (field("group"), field("kind"));
    let ours = match (group, kind) {
        (Some(group), Some(kind)) => {
            Kind::of(&group, &kind).is_some_and(|k| match text(&request.operation).as_deref() {
                Some("DELETE") | Some("CONNECT") => false,
                Some("UPDATE") => k.decides(&Operation::Update),
                _ => true,
            })
        }
        _ => true,
    };
    Ok(Parsed(Inner::Undecodable {
        types: review_types(&api_version),
        uid,
        error: format!("cannot decode AdmissionReview request: {error}"),
        ours,
    }))
}

fn review_types(api_version: &str) -> TypeMeta {
    TypeMeta {
        api_version: api_version.to_string(),
        kind: REVIEW_KIND.to_string(),
    }
}

/// Why a manifest cannot be turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The object is not a Kubernetes object (its `metadata` has the wrong shape).
    #[error("{0}")]
    Object(serde_json::Error),
    /// Not one of the kinds the webhook decides.
    #[error("{0} is not a kind the webhook reviews")]
    NotOurs(String),
}

impl Parsed {
    /// The request kube-apiserver sends for `kubectl apply` of `object`: a CREATE, or an
    /// UPDATE of `old_object` when given. `uid` names it in the answer.
    pub fn manifest(object: &Value, old_object: Option<&Value>) -> Result<Self, ManifestError> {
        Self::manifest_with_uid(object, old_object, "review")
    }

    /// [`Parsed::manifest`] with a chosen uid.
    pub fn manifest_with_uid(
        object: &Value,
        old_object: Option<&Value>,
        uid: &str,
    ) -> Result<Self, ManifestError> {
        let text = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or("");
        let kind = Kind::of_manifest(text("apiVersion"), text("kind")).ok_or_else(|| {
            ManifestError::NotOurs(format!("{} {}", text("apiVersion"), text("kind")))
        })?;
        let decode = |v: &Value| serde_json::from_value::<DynamicObject>(v.clone());
        let object = decode(object).map_err(ManifestError::Object)?;
        let old_object = old_object
            .map(decode)
            .transpose()
            .map_err(ManifestError::Object)?;
        let version = object
            .types
            .as_ref()
            .and_then(|t| t.api_version.rsplit_once('/'))
            .map_or(kind.version(), |(_, v)| v)
            .to_string();
        let namespace = kinds::namespace(None, object.metadata.namespace.as_deref()).to_string();
        let gvk = GroupVersionKind::gvk(kind.group(), &version, kind.name());
        let gvr = GroupVersionResource::gvr(kind.group(), &version, kind.resource());
        Ok(Self(Inner::Request(Box::new(AdmissionRequest {
            types: review_types(VERSIONS[0]),
            uid: uid.to_string(),
            kind: gvk.clone(),
            resource: gvr.clone(),
            sub_resource: None,
            request_kind: Some(gvk),
            request_resource: Some(gvr),
            request_sub_resource: None,
            name: object.metadata.name.clone().unwrap_or_default(),
            namespace: Some(namespace),
            operation: if old_object.is_some() {
                Operation::Update
            } else {
                Operation::Create
            },
            user_info: Default::default(),
            object: Some(object),
            old_object,
            dry_run: false,
            options: None,
        }))))
    }

    /// The request, if it decoded.
    pub fn request(&self) -> Option<&AdmissionRequest<DynamicObject>> {
        match &self.0 {
            Inner::Request(r) => Some(r),
            Inner::Undecodable { .. } => None,
        }
    }

    /// The same request with another object: what the validating webhook is asked after the
    /// mutating one changed it.
    pub fn with_object(&self, object: DynamicObject) -> Self {
        match &self.0 {
            Inner::Request(r) => {
                let mut r = r.clone();
                r.object = Some(object);
                Self(Inner::Request(r))
            }
            Inner::Undecodable { .. } => self.clone(),
        }
    }

    /// Decides and builds the answer.
    pub fn answer(&self, endpoint: Endpoint, inventory: &Inventory, config: &Config) -> Answer {
        match &self.0 {
            Inner::Undecodable {
                types,
                uid,
                error,
                ours,
            } => {
                let mut response = AdmissionResponse::invalid(error);
                response.types = types.clone();
                response.uid = uid.clone();
                if !ours {
                    response.allowed = true;
                    response.result = Default::default();
                }
                Answer::new(
                    response_or_bad_request(response, error, *ours),
                    Facts::default(),
                    Vec::new(),
                )
            }
            Inner::Request(req) => {
                let object = req.object.as_ref().or(req.old_object.as_ref());
                let facts = Facts::of(req, object.map(|o| &o.metadata));
                let mut found = Vec::new();
                let response = decide(req, endpoint, inventory, config, &mut found);
                Answer::new(response, facts, found)
            }
        }
    }
}

/// The kind of the request, if it is one of ours and an operation the webhook decides.
fn ours(req: &AdmissionRequest<DynamicObject>) -> Option<Kind> {
    Kind::of(&req.kind.group, &req.kind.kind).filter(|k| k.decides(&req.operation))
}

fn decide(
    req: &AdmissionRequest<DynamicObject>,
    endpoint: Endpoint,
    inventory: &Inventory,
    config: &Config,
    found: &mut Vec<(Rule, Action)>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    let Some(kind) = ours(req) else {
        return response; // another kind, DELETE, CONNECT: nothing to say
    };
    let Some(object) = req.object.as_ref() else {
        return bad_request(response, "request.object is missing");
    };
    let request = Request {
        kind,
        operation: &req.operation,
        namespace: kinds::namespace(
            req.namespace.as_deref(),
            object.metadata.namespace.as_deref(),
        ),
        object: Object::Tree(object),
        old_object: req.old_object.as_ref().map(Object::Tree),
    };
    run(response, &request, endpoint, inventory, config, found)
}

/// Asks the engine, and writes its answer into `response`.
fn run(
    response: AdmissionResponse,
    request: &Request<'_>,
    endpoint: Endpoint,
    inventory: &Inventory,
    config: &Config,
    found: &mut Vec<(Rule, Action)>,
) -> AdmissionResponse {
    match endpoint {
        // kube's own `patch_type` stays unset: [`Answer::to_vec`] writes `patchType` beside
        // the patch, and nothing serializes kube's struct.
        Endpoint::Mutate => match engine::mutate_text(request, inventory, config) {
            Err(e) => bad_request(response, &e.to_string()),
            Ok(m) if m.patch.is_empty() => with_warnings(response, m.warnings),
            Ok(m) => {
                let mut response = response;
                response.patch = Some(m.patch);
                with_warnings(response, m.warnings)
            }
        },
        Endpoint::Validate | Endpoint::ValidateWarn => {
            let enforcement = match endpoint {
                Endpoint::ValidateWarn => Enforcement::Warn,
                _ => config.enforcement,
            };
            match engine::validate(request, inventory, config) {
                Err(e) => bad_request(response, &e.to_string()),
                Ok(v) => enforce(response, v, enforcement, found),
            }
        }
    }
}

/// Turns a verdict into the answer (SPEC §2.11): denied only for new violations under
/// `enforcement: deny`; every other violation is a warning; all of them are listed in the
/// `auditAnnotations` for the API server's audit log, and in `found` for the metrics.
fn enforce(
    response: AdmissionResponse,
    verdict: Verdict,
    enforcement: Enforcement,
    found: &mut Vec<(Rule, Action)>,
) -> AdmissionResponse {
    let Verdict {
        mut warnings,
        denials,
        ratcheted,
    } = verdict;
    let deny = !denials.is_empty() && enforcement == Enforcement::Deny;
    let denial_action = if deny { Action::Deny } else { Action::Warn };
    let listed: Vec<(&Violation, Action)> = denials
        .iter()
        .map(|v| (v, denial_action))
        .chain(ratcheted.iter().map(|v| (v, Action::Ratchet)))
        .collect();
    found.extend(listed.iter().map(|(v, a)| (v.rule, *a)));
    for (v, action) in &listed {
        match action {
            Action::Deny => {}
            Action::Warn => warnings.push(format!(
                "not enforced (enforcement: warn), would be denied [{}]: {}",
                v.rule, v.message
            )),
            Action::Ratchet => warnings.push(format!(
                "already there before this update, so not enforced until it is fixed [{}]: {}",
                v.rule, v.message
            )),
        }
    }
    let audit = audit_annotation(&listed);
    let mut response = if deny {
        let messages: Vec<&str> = denials.iter().map(|v| v.message.as_str()).collect();
        let mut response = response.deny(messages.join("; "));
        response.result.code = 403;
        response.result.reason = "Forbidden".into();
        response
    } else {
        response
    };
    if let Some(audit) = audit {
        response
            .audit_annotations
            .insert(AUDIT_ANNOTATION.to_string(), audit);
    }
    with_warnings(response, warnings)
}

/// The `violations` audit annotation: a JSON list of `{rule, action, subject}`, bounded
/// whatever the object holds.
fn audit_annotation(listed: &[(&Violation, Action)]) -> Option<String> {
    if listed.is_empty() {
        return None;
    }
    let mut entries: Vec<Value> = listed
        .iter()
        .take(AUDITED)
        .map(|(v, action)| {
            let subject: String = v.subject.chars().take(256).collect();
            serde_json::json!({"rule": v.rule.id(), "action": action.as_str(), "subject": subject})
        })
        .collect();
    if listed.len() > AUDITED {
        entries.push(serde_json::json!({"more": listed.len() - AUDITED}));
    }
    Some(Value::Array(entries).to_string())
}

fn response_or_bad_request(
    response: AdmissionResponse,
    message: &str,
    bad: bool,
) -> AdmissionResponse {
    if bad {
        bad_request(response, message)
    } else {
        response
    }
}

fn bad_request(response: AdmissionResponse, message: &str) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = 400;
    response.result.reason = "BadRequest".into();
    response
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// What the logs say about a request besides the answer.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
}

impl Facts {
    /// The facts of `req`, whose object (or else stored object) has the metadata `meta`.
    fn of(req: &AdmissionRequest<DynamicObject>, meta: Option<&ObjectMeta>) -> Self {
        let meta = |f: fn(&ObjectMeta) -> Option<&String>| meta.and_then(f).map(String::as_str);
        Self {
            kind: req.kind.kind.clone(),
            namespace: kinds::namespace(req.namespace.as_deref(), meta(|m| m.namespace.as_ref()))
                .to_string(),
            name: Some(req.name.as_str())
                .filter(|n| !n.is_empty())
                .or(meta(|m| m.name.as_ref()))
                .unwrap_or("")
                .to_string(),
            operation: operation_name(&req.operation),
            dry_run: req.dry_run,
        }
    }
}

/// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`, as in the AdmissionReview.
pub fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The answer to one AdmissionReview.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The AdmissionReview to send back, in the version asked in.
    pub review: AdmissionReview<DynamicObject>,
    pub facts: Facts,
    /// The violations found and what became of each (`/validate` only).
    pub violations: Vec<(Rule, Action)>,
}

impl Answer {
    fn new(response: AdmissionResponse, facts: Facts, violations: Vec<(Rule, Action)>) -> Self {
        Self {
            review: response.into_review(),
            facts,
            violations,
        }
    }

    pub fn response(&self) -> &AdmissionResponse {
        self.review
            .response
            .as_ref()
            .expect("answers are built from a response")
    }

    pub fn uid(&self) -> &str {
        &self.response().uid
    }

    pub fn allowed(&self) -> bool {
        self.response().allowed
    }

    /// The denial message, or why the request could not be decoded; empty when allowed.
    pub fn message(&self) -> &str {
        if self.allowed() {
            ""
        } else {
            &self.response().result.message
        }
    }

    pub fn warnings(&self) -> &[String] {
        self.response().warnings.as_deref().unwrap_or_default()
    }

    /// The JSON Patch of a mutation (empty when nothing changes), read back from the response.
    pub fn patch(&self) -> json_patch::Patch {
        self.response()
            .patch
            .as_deref()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or(json_patch::Patch(vec![]))
    }

    /// The response body, in one pass: the patch is base64-encoded straight into it (no
    /// string of its own, no second check of that string as JSON). kube's
    /// `AdmissionResponse`, but with the patch base64-encoded as the API server reads `[]byte`
    /// fields (kube-core writes the bytes as a number array: kube-rs/kube#1781). The tests
    /// hold it to a derived serialization of the same fields (`the_body_is_the_wire_review`).
    pub fn to_vec(&self) -> Vec<u8> {
        fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
            serde_json::to_writer(out, value).expect("AdmissionReviews serialize");
        }
        let r = self.response();
        let encoded = r.patch.as_deref().map(|patch| {
            let len = base64::encoded_len(patch.len(), true).expect("a patch fits in memory");
            (patch, len)
        });
        // Sized for the usual answer (uid, status, warnings) beside the patch, so that it
        // is written without growing.
        let mut out = Vec::with_capacity(encoded.map_or(0, |(_, len)| len) + 1024);
        out.extend_from_slice(b"{\"apiVersion\":");
        json(&mut out, &self.review.types.api_version);
        out.extend_from_slice(b",\"kind\":");
        json(&mut out, &self.review.types.kind);
        out.extend_from_slice(b",\"response\":{\"uid\":");
        json(&mut out, &r.uid);
        out.extend_from_slice(b",\"allowed\":");
        json(&mut out, &r.allowed);
        out.extend_from_slice(b",\"status\":");
        json(&mut out, &r.result);
        if let Some((patch, len)) = encoded {
            out.extend_from_slice(b",\"patch\":\"");
            let start = out.len();
            out.resize(start + len, 0);
            base64::engine::general_purpose::STANDARD
                .encode_slice(patch, &mut out[start..])
                .expect("sized for the encoding");
            out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
        }
        if !r.audit_annotations.is_empty() {
            out.extend_from_slice(b",\"auditAnnotations\":");
            json(&mut out, &r.audit_annotations);
        }
        if let Some(warnings) = &r.warnings {
            out.extend_from_slice(b",\"warnings\":");
            json(&mut out, warnings);
        }
        out.extend_from_slice(b"}}");
        out
    }

    /// The response as JSON: the body, read back.
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.to_vec()).expect("the body is JSON")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `bytes` in base64 as a JSON string (base64's alphabet needs no escaping).
    fn base64_string(bytes: &[u8]) -> Box<serde_json::value::RawValue> {
        let mut quoted = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
        quoted.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut quoted);
        quoted.push('"');
        serde_json::value::RawValue::from_string(quoted).expect("base64 in quotes is a JSON string")
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: WireResponse<'a>,
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WireResponse<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<Box<serde_json::value::RawValue>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        audit_annotations: Option<&'a std::collections::HashMap<String, String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a [String]>,
    }

    /// The answer as typed values, serialized by serde's derive: what `to_vec` writes by
    /// hand must be these bytes.
    fn wire(answer: &Answer) -> Wire<'_> {
        let r = answer.response();
        Wire {
            api_version: &answer.review.types.api_version,
            kind: &answer.review.types.kind,
            response: WireResponse {
                uid: &r.uid,
                allowed: r.allowed,
                status: &r.result,
                patch: r.patch.as_deref().map(base64_string),
                patch_type: r.patch.as_ref().map(|_| "JSONPatch"),
                audit_annotations: (!r.audit_annotations.is_empty())
                    .then_some(&r.audit_annotations),
                warnings: r.warnings.as_deref(),
            },
        }
    }

    fn ask(body: &Value, endpoint: Endpoint) -> Result<Answer, NotAReview> {
        ask_bytes(body.to_string().as_bytes(), endpoint)
    }

    /// [`ask`] with the body as it comes over the wire.
    fn ask_bytes(body: &[u8], endpoint: Endpoint) -> Result<Answer, NotAReview> {
        parse(body).map(|p| p.answer(endpoint, &Inventory::new(), &Config::default()))
    }

    fn review(api_version: &str, request: Value) -> Value {
        let mut request = request;
        for (k, v) in [
            (
                "resource",
                json!({"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"}),
            ),
            ("userInfo", json!({})),
        ] {
            if request.get(k).is_none() {
                request[k] = v;
            }
        }
        json!({"apiVersion": api_version, "kind": "AdmissionReview", "request": request})
    }

    #[test]
    fn not_reviews_are_rejected() {
        assert!(matches!(parse(b"nope"), Err(NotAReview::NotJson(_))));
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
        assert!(matches!(
            ask(
                &json!({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {"uid": "x"}}),
                Endpoint::Mutate
            ),
            Err(NotAReview::WrongKind)
        ));
    }

    #[test]
    fn undecodable_object_still_echoes_uid() {
        let body = review(
            "admission.k8s.io/v1beta1",
            json!({"uid": "u-1", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
                "operation": "CREATE", "object": {"spec": {"template": 7}}}),
        );
        let r = ask(&body, Endpoint::Validate).unwrap().to_value();
        assert_eq!(r["response"]["uid"], "u-1");
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 400);
        let wrong_type = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-2", "operation": 5}});
        let r = ask(&wrong_type, Endpoint::Mutate).unwrap();
        assert_eq!((r.uid(), r.allowed()), ("u-2", false));
        assert!(r.message().contains("cannot decode"), "{}", r.message());
    }

    /// A UTF-8 body is decoded as text (no check per string), any other as bytes: both
    /// paths read escapes alike, and a body with a byte that is not UTF-8 is answered as
    /// undecodable, with its uid, as the byte decoder always did.
    #[test]
    fn text_and_byte_bodies_decode_alike() {
        // Escapes in strings and in a key, and a raw two-byte character.
        let body = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-\u00e9","kind":{"group":"kubevirt.io","version":"v1","kind":"VirtualMachine"},"resource":{"group":"kubevirt.io","version":"v1","resource":"virtualmachines"},"userInfo":{},"operation":"CREATE","object":{"metadata":{"name":"vm-é\n"},"sp\u0065c":{}}}}"#;
        let text = parse(body.as_bytes()).unwrap();
        let request = text.request().unwrap();
        let bytes = serde_json::from_slice::<OnePassReview<OnePassRequest>>(body.as_bytes())
            .map(|review| review.request.unwrap().0)
            .unwrap();
        assert_eq!(
            (request.uid.as_str(), &request.object),
            (bytes.uid.as_str(), &bytes.object)
        );
        let object = request.object.as_ref().unwrap();
        assert_eq!(request.uid, "u-\u{e9}");
        assert_eq!(object.metadata.name.as_deref(), Some("vm-\u{e9}\n"));
        assert_eq!(object.data["spec"], json!({}));

        let mut invalid = body.as_bytes().to_vec();
        let at = invalid.iter().position(|&b| b == 0xc3).unwrap();
        invalid[at] = 0xff;
        let answer = ask_bytes(&invalid, Endpoint::Validate).unwrap();
        assert_eq!((answer.uid(), answer.allowed()), ("u-\u{e9}", false));
        assert!(
            answer.message().contains("cannot decode"),
            "{}",
            answer.message()
        );
    }

    #[test]
    fn a_request_nested_deeper_than_the_decoder_allows_still_gets_its_uid() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"deep-1","kind":{{"group":"kubevirt.io","version":"v1","kind":"VirtualMachine"}},"operation":"CREATE","object":{{"spec":{deep}}}}}}}"#
        );
        let answer = ask_bytes(body.as_bytes(), Endpoint::Mutate).unwrap();
        assert_eq!((answer.uid(), answer.allowed()), ("deep-1", false));
        assert!(
            answer.message().contains("recursion limit"),
            "{}",
            answer.message()
        );
        let not_json = format!("{}1", "[".repeat(100_000));
        assert!(matches!(
            parse(not_json.as_bytes()),
            Err(NotAReview::NotJson(_))
        ));
    }

    /// `options` is checked, not built, yet refused wherever kube's `RawExtension` (a
    /// `Value`) refuses it: too deep, a lone surrogate, a number out of range. Each stays an
    /// undecodable request, answered with its uid.
    #[test]
    fn options_are_checked_as_strictly_as_a_value() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for (options, error) in [
            (deep.as_str(), "recursion limit"),
            (r#""\ud800""#, "escape"),
            ("1e400", "out of range"),
            (r#"{"a": [1, {"b": "\ud800"}]}"#, "escape"),
        ] {
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"o-1","kind":{{"group":"kubevirt.io","version":"v1","kind":"VirtualMachine"}},"resource":{{"group":"kubevirt.io","version":"v1","resource":"virtualmachines"}},"userInfo":{{}},"operation":"CREATE","object":{{"spec":{{"template":{{"spec":{{}}}}}}}},"options":{options}}}}}"#
            );
            assert!(
                serde_json::from_str::<Value>(&body).is_err(),
                "a Value refuses {options:.40}"
            );
            let answer = ask_bytes(body.as_bytes(), Endpoint::Mutate).unwrap();
            assert_eq!(
                (answer.uid(), answer.allowed()),
                ("o-1", false),
                "{options:.40}"
            );
            assert!(answer.message().contains(error), "{}", answer.message());
        }
        let fine = r#"{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions","x":[null,true,-1,2.5,"\u00e9"]}"#;
        let body = review(
            "admission.k8s.io/v1",
            json!({"uid": "o-2", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
                "operation": "CREATE", "object": {"spec": {"template": {"spec": {}}}},
                "options": serde_json::from_str::<Value>(fine).unwrap()}),
        );
        let answer = ask(&body, Endpoint::Validate).unwrap();
        assert_eq!(
            (answer.uid(), answer.allowed()),
            ("o-2", true),
            "{}",
            answer.message()
        );
    }

    #[test]
    fn other_kinds_and_operations_pass_untouched() {
        let allowed = |uid: &str| json!({"uid": uid, "allowed": true, "status": {}});
        let pod = review(
            "admission.k8s.io/v1",
            json!({"uid": "p", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "object": {"garbage": true}}),
        );
        assert_eq!(
            ask(&pod, Endpoint::Mutate).unwrap().to_value()["response"],
            allowed("p")
        );
        let delete = review(
            "admission.k8s.io/v1",
            json!({"uid": "d", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"}, "operation": "DELETE"}),
        );
        assert_eq!(
            ask(&delete, Endpoint::Validate).unwrap().to_value()["response"],
            allowed("d")
        );
        let other_group = review(
            "admission.k8s.io/v1",
            json!({"uid": "o", "kind": {"group": "vmoperator.vmware.com", "version": "v1alpha3", "kind": "VirtualMachine"},
                "operation": "CREATE", "object": {"metadata": {"name": "x"}, "spec": {}}}),
        );
        assert_eq!(
            ask(&other_group, Endpoint::Mutate).unwrap().to_value()["response"],
            allowed("o")
        );
    }

    #[test]
    fn answers_in_the_version_asked() {
        let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "v", "namespace": "n"},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]}}, "networks": [{"name": "default", "pod": {}}]}}}});
        for version in VERSIONS {
            let body = review(
                version,
                json!({"uid": "v", "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"}, "operation": "CREATE", "object": vm}),
            );
            let answer = ask(&body, Endpoint::Mutate).unwrap();
            assert_eq!(answer.to_value()["apiVersion"], version);
            assert!(!answer.patch().0.is_empty(), "a MAC is set");
        }
    }

    /// The body on the wire carries the patch as base64 of the response's patch bytes, in a
    /// JSON string, and says the same as the typed review.
    #[test]
    fn the_wire_patch_is_the_base64_of_the_patch() {
        let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "v", "namespace": "ns"},
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                "networks": [{"name": "default", "pod": {}}]}}}});
        let answer = Parsed::manifest(&vm, None).unwrap().answer(
            Endpoint::Mutate,
            &Inventory::new(),
            &Config::default(),
        );
        let patch = answer.response().patch.clone().expect("a MAC is assigned");
        let wire: Value = serde_json::from_slice(&answer.to_vec()).unwrap();
        assert_eq!(wire, serde_json::to_value(self::wire(&answer)).unwrap());
        assert_eq!(wire["response"]["patchType"], "JSONPatch");
        let sent = wire["response"]["patch"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(sent)
                .unwrap(),
            patch
        );
        assert!(!answer.patch().0.is_empty());
    }

    /// `to_vec` writes the body by hand; it must be, byte for byte, what serializing the
    /// `Wire` review writes: with and without a patch, denied with an audit annotation,
    /// with warnings, undecodable, and with strings that need escaping.
    #[test]
    fn the_body_is_the_wire_review() {
        let vm = |name: &str, mac: Option<&str>| {
            let mut interface = json!({"name": "default", "masquerade": {}});
            if let Some(mac) = mac {
                interface["macAddress"] = json!(mac);
            }
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": [interface]}},
                    "networks": [{"name": "default", "pod": {}}]}}}})
        };
        let mut answers = Vec::new();
        for endpoint in [Endpoint::Mutate, Endpoint::Validate, Endpoint::ValidateWarn] {
            // No MAC: one is assigned. A multicast MAC: a violation, denied or warned of.
            for (name, mac) in [("v", None), ("v\"\n\u{1b}é", Some("01:00:00:00:00:01"))] {
                let object = vm(name, mac);
                let body = review(
                    "admission.k8s.io/v1beta1",
                    json!({"uid": format!("u-\"{name}"), "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
                        "operation": "CREATE", "object": object}),
                );
                answers.push(ask(&body, endpoint).unwrap());
            }
        }
        let broken = review(
            "admission.k8s.io/v1",
            json!({"uid": "u-\u{0}", "operation": 5}),
        );
        answers.push(ask(&broken, Endpoint::Mutate).unwrap());
        let seen = |f: fn(&Answer) -> bool| answers.iter().any(f);
        assert!(seen(|a| a.response().patch.is_some()), "a patch");
        assert!(seen(|a| !a.allowed()), "a denial");
        assert!(
            seen(|a| !a.response().audit_annotations.is_empty()),
            "an audit annotation"
        );
        assert!(seen(|a| !a.warnings().is_empty()), "warnings");
        for answer in &answers {
            assert_eq!(
                String::from_utf8(answer.to_vec()).unwrap(),
                serde_json::to_string(&wire(answer)).unwrap()
            );
        }
    }

    #[test]
    fn a_manifest_is_asked_as_the_api_server_would() {
        let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "v"},
            "spec": {"template": {"spec": {}}}});
        let parsed = Parsed::manifest(&vm, None).unwrap();
        let req = parsed.request().unwrap();
        assert_eq!(req.operation, Operation::Create);
        assert_eq!(req.namespace.as_deref(), Some("default"));
        assert_eq!(req.resource.resource, "virtualmachines");
        let update = Parsed::manifest(&vm, Some(&vm)).unwrap();
        assert_eq!(update.request().unwrap().operation, Operation::Update);
        assert!(matches!(
            Parsed::manifest(&json!({"apiVersion": "v1", "kind": "Pod"}), None),
            Err(ManifestError::NotOurs(_))
        ));
    }
    /// The server's one-pass reading answers as `parse` does, byte for byte, with the same
    /// facts and violations; and it reads in one pass only what it reads as the tree does.
    #[test]
    fn read_answers_as_parse_does() {
        let ifaces = r#"[{"name":"default","masquerade":{}},{"name":"x","bridge":{},"macAddress":"02:00:00:00:00:0a"}]"#;
        let nets = r#"[{"name":"default","pod":{}},{"name":"nic","multus":{"networkName":"nad"}}]"#;
        let vmi =
            format!(r#"{{"domain":{{"devices":{{"interfaces":{ifaces}}}}},"networks":{nets}}}"#);
        let vm = |spec: &str| {
            format!(
                r#"{{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachine","metadata":{{"name":"a","namespace":"ns","annotations":{{"kubevirt-net-webhook.io/networks":"{{\"nic\":{{\"addresses\":[\"10.0.0.5/24\"]}}}}"}}}},"spec":{spec}}}"#
            )
        };
        let template = |vmi: &str| {
            vm(&format!(
                r#"{{"running":true,"template":{{"spec":{vmi}}}}}"#
            ))
        };
        let plain = template(&vmi);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let with = |extra: &str| {
            template(&vmi.replacen(r#""bridge":{}"#, &format!(r#""bridge":{{}},{extra}"#), 1))
        };
        let cases: Vec<(&str, String, bool)> = vec![
            ("a plain VM", plain.clone(), true),
            ("no lists", template(r#"{"domain":{}}"#), true),
            (
                "no devices",
                template(&format!(r#"{{"domain":{{}},"networks":{nets}}}"#)),
                true,
            ),
            (
                "empty lists",
                template(&format!(
                    r#"{{"domain":{{"devices":{{"interfaces":{ifaces},"disks":[]}}}},"networks":{nets},"volumes":[]}}"#
                )),
                true,
            ),
            (
                "null lists",
                template(&format!(
                    r#"{{"domain":{{"devices":{{"interfaces":{ifaces},"disks":null}}}},"networks":{nets},"volumes":null}}"#
                )),
                true,
            ),
            (
                "a list that is an object",
                template(&format!(
                    r#"{{"domain":{{"devices":{{"interfaces":{ifaces}}}}},"networks":{nets},"volumes":{{}}}}"#
                )),
                false,
            ),
            (
                "escapes in keys and names",
                plain
                    .replace(r#""spec":{"running""#, r#""sp\u0065c":{"running""#)
                    .replace(r#""name":"x""#, r#""name":"\u0078""#),
                true,
            ),
            (
                "a halted VM with a status",
                plain
                    .replace(r#""running":true"#, r#""runStrategy":"Halted""#)
                    .replacen(
                        r#""spec":"#,
                        r#""status":{"created":true,"other":[1,2.5,null]},"spec":"#,
                        1,
                    ),
                true,
            ),
            (
                "being deleted",
                plain.replace(
                    r#""namespace":"ns""#,
                    r#""namespace":"ns","deletionTimestamp":"2026-01-01T00:00:00Z""#,
                ),
                true,
            ),
            // What the tree refuses, in fields only checked.
            (
                "nested too deep",
                with(&format!(r#""unknown":{deep}"#)),
                false,
            ),
            ("a lone surrogate", with(r#""unknown":"\ud800""#), false),
            ("a number out of range", with(r#""unknown":1e400"#), false),
            ("a wrong type", with(r#""state":5"#), false),
            (
                "a null apiVersion",
                plain.replace(r#""apiVersion":"kubevirt.io/v1""#, r#""apiVersion":null"#),
                false,
            ),
            // The metadata's managed fields: checked, not kept.
            (
                "managed fields",
                plain.replace(
                    r#""namespace":"ns""#,
                    r#""namespace":"ns","managedFields":[{"apiVersion":"kubevirt.io/v1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{".":{},"f:running":{}}},"manager":"kubectl","operation":"Update","time":"2026-11-01T10:00:00Z"}]"#,
                ),
                true,
            ),
            (
                "null managed fields",
                plain.replace(r#""namespace":"ns""#, r#""namespace":"ns","managedFields":null"#),
                true,
            ),
            (
                "managed fields with a bad time",
                plain.replace(
                    r#""namespace":"ns""#,
                    r#""namespace":"ns","managedFields":[{"time":"yesterday"}]"#,
                ),
                false,
            ),
            (
                "managed fields nested too deep",
                plain.replace(
                    r#""namespace":"ns""#,
                    &format!(r#""namespace":"ns","managedFields":[{{"fieldsV1":{deep}}}]"#),
                ),
                false,
            ),
            (
                "managed fields with a key twice",
                plain.replace(
                    r#""namespace":"ns""#,
                    r#""namespace":"ns","managedFields":[{"manager":"a","manager":"b"}]"#,
                ),
                false,
            ),
            // What the tree reads its own way.
            (
                "a key twice",
                plain.replace(r#""running":true"#, r#""running":true,"running":false"#),
                false,
            ),
            (
                "null template metadata",
                plain.replace(r#""template":{"#, r#""template":{"metadata":null,"#),
                false,
            ),
            ("a struct as a list", template(r#"{"domain":[]}"#), false),
            ("no template", vm(r#"{"running":true}"#), false),
            (
                "a body too large to try",
                with(&format!(
                    r#""unknown":"{}""#,
                    "x".repeat(ONE_PASS_MAX_BYTES)
                )),
                false,
            ),
        ];
        let body = |kind: &str, object: &str, old: Option<&str>| {
            let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
            let old = old
                .map(|o| format!(r#","oldObject":{o}"#))
                .unwrap_or_default();
            let group = match kind {
                "VirtualMachinePool" => "pool.kubevirt.io",
                _ => "kubevirt.io",
            };
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"object":{object}{old},"uid":"u","kind":{{"group":"{group}","version":"v1","kind":"{kind}"}},"resource":{{"group":"{group}","version":"v1","resource":"r"}},"operation":"{operation}","userInfo":{{}}}}}}"#
            )
        };
        let other_kinds = [
            (
                "VirtualMachineInstance",
                format!(r#"{{"metadata":{{"name":"i"}},"spec":{vmi}}}"#),
            ),
            (
                "VirtualMachineInstanceReplicaSet",
                format!(
                    r#"{{"metadata":{{"name":"r"}},"spec":{{"template":{{"metadata":{{"annotations":{{"kubevirt-net-webhook.io/mutate":"true"}}}},"spec":{vmi}}}}}}}"#
                ),
            ),
            (
                "VirtualMachinePool",
                format!(
                    r#"{{"metadata":{{"name":"p"}},"spec":{{"virtualMachineTemplate":{{"metadata":{{}},"spec":{{"template":{{"spec":{vmi}}}}}}}}}}}"#
                ),
            ),
        ];
        let all = cases
            .iter()
            .map(|(what, object, fast)| (*what, "VirtualMachine", object.clone(), *fast))
            .chain(
                other_kinds
                    .iter()
                    .map(|(kind, object)| (*kind, *kind, object.clone(), true)),
            );
        // A bridge NAD with a subnet: the VM gets MACs and a cloud-init network config, so
        // the answers carry the patch paths that depend on the object's shape.
        let mut inventory = Inventory::new();
        for ns in ["ns", "default"] {
            inventory.upsert_nad(crate::model::nad::Nad::from_config(ns, "nad", r#"{"cniVersion":"0.4.0","type":"bridge","bridge":"br0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24","gateway":"10.0.0.1"}]]}}"#));
        }
        let config = Config::default();
        for (what, kind, object, fast) in all {
            for old in [None, Some(plain.as_str())] {
                let body = body(kind, &object, old.filter(|_| kind == "VirtualMachine"));
                let read = read(body.as_bytes()).unwrap();
                let parsed = parse(body.as_bytes()).unwrap();
                assert_eq!(matches!(read, Read::OnePass(_)), fast, "{what}: {body}");
                for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
                    let (a, b) = (
                        read.answer(endpoint, &inventory, &config),
                        parsed.answer(endpoint, &inventory, &config),
                    );
                    let text = |a: &Answer| String::from_utf8(a.to_vec()).unwrap();
                    assert_eq!(text(&a), text(&b), "{what}, {endpoint:?}: {body}");
                    assert_eq!(
                        format!("{:?}{:?}", a.facts, a.violations),
                        format!("{:?}{:?}", b.facts, b.violations),
                        "{what}"
                    );
                }
            }
        }
    }
    /// A pool's VM template may nest another under `spec` (the one-pass reading reads every
    /// kind's parts of `spec`): nested as deep as the decoder allows, it is read without
    /// exhausting a thread's stack, and answered as `parse` answers it.
    #[test]
    fn templates_nested_to_the_depth_limit_are_read() {
        for levels in [55, 70] {
            let mut spec = r#"{"template":{"spec":{"domain":{}}}}"#.to_string();
            for _ in 0..levels {
                spec = format!(
                    r#"{{"template":{{"spec":{{}}}},"virtualMachineTemplate":{{"spec":{spec}}}}}"#
                );
            }
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"pool.kubevirt.io","version":"v1beta1","kind":"VirtualMachinePool"}},"resource":{{"group":"pool.kubevirt.io","version":"v1beta1","resource":"virtualmachinepools"}},"operation":"CREATE","userInfo":{{}},"object":{{"metadata":{{"name":"p"}},"spec":{spec}}}}}}}"#
            );
            let one_pass = matches!(read(body.as_bytes()), Ok(Read::OnePass(_)));
            assert_eq!(one_pass, levels < 60, "{levels} levels");
            // Run where the server runs decisions: a thread with the default stack.
            let (read_answer, parse_answer) = std::thread::spawn(move || {
                let answer = |endpoint| {
                    let config = Config::default();
                    let inventory = Inventory::new();
                    (
                        read(body.as_bytes())
                            .map(|r| r.answer(endpoint, &inventory, &config).to_vec()),
                        parse(body.as_bytes())
                            .map(|p| p.answer(endpoint, &inventory, &config).to_vec()),
                    )
                };
                answer(Endpoint::Validate)
            })
            .join()
            .unwrap();
            assert_eq!(
                read_answer.map_err(|e| e.to_string()),
                parse_answer.map_err(|e| e.to_string()),
                "{levels} levels"
            );
        }
    }
}
