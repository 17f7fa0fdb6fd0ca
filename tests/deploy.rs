//! Invariants of the manifests in `deploy/`, checked on what `kubectl kustomize` renders
//! (`tests/support/kustomize.rs`: kubectl >= 1.21, or its fallback renderer for the base and
//! the plain overlays); the monitoring objects validated against prometheus-operator's CRDs.
mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::kustomize::{
    CLUSTER_SCOPED, kubectl_has_modern_kustomize, name, render, render_fallback, repo,
};

const NAMESPACE: &str = "kubevirt-net-webhook";
const TLS_SECRET: &str = "kubevirt-net-webhook-tls";
const CERT_DIR: &str = "/etc/webhook/certs";
/// The binary's defaults for `--listen` and `--admin-listen` (SPEC §3).
const DEFAULT_HTTPS_PORT: u64 = 8443;
const DEFAULT_ADMIN_PORT: u64 = 9090;
const INJECT_CA: &str = "cert-manager.io/inject-ca-from";
/// The binary's default `--decision-timeout`, in seconds.
const DEFAULT_DECISION_TIMEOUT_S: f64 = 2.0;
/// Peak RSS measured under load and attack (benches/README.md, "Sizing (measured)"), MiB: the memory limit must
/// leave room above it, the request must cover the steady state under load.
const MEASURED_PEAK_MIB: f64 = 150.0;
const MEASURED_LOADED_MIB: f64 = 28.0;
/// `serve` with 100,000 VMs on a real API server (benches/README.md, "Start-up at scale"): the
/// slowest start to ready, fallback to pages included (a pages start while the API server read
/// 130,000 VMs from etcd for its own consistency check), in seconds, and the highest peak RSS
/// of those starts, MiB.
const MEASURED_READY_100K_S: f64 = 104.9;
const MEASURED_READY_100K_PEAK_MIB: f64 = 116.0;
/// Kubernetes' `progressDeadlineSeconds` when a Deployment leaves it out.
const DEFAULT_PROGRESS_DEADLINE_S: f64 = 600.0;

use kube::core::admission::Operation;
use kubevirt_net_webhook::model::kinds::Kind;

fn kind_of<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = kind_of(objects, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether every `matchLabels` pair is among `labels` (and there is at least one).
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(match_labels) = selector["matchLabels"].as_object() else {
        return false;
    };
    !match_labels.is_empty() && match_labels.iter().all(|(k, v)| &labels[k] == v)
}

/// Whether a selector's `matchExpressions` select a namespace with `labels`.
fn expressions_select(selector: &Value, labels: &Value) -> bool {
    let exprs = selector["matchExpressions"]
        .as_array()
        .expect("matchExpressions");
    exprs.iter().all(|e| {
        let value = labels[e["key"].as_str().unwrap()].as_str();
        let values = strs(&e["values"]);
        match e["operator"].as_str().unwrap() {
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            op => panic!("operator {op}"),
        }
    })
}

/// The port an `--listen`-style flag binds, or its default.
fn flag_port(args: &[&str], flag: &str, default: u64) -> u64 {
    let value = args
        .iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1).copied())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')))
        });
    match value {
        None => default,
        Some(addr) => addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{flag} {addr}: no port")),
    }
}

/// Resolves a probe's or Service's port (number or container port name) to a number.
fn resolve_port(port: &Value, container: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let wanted = port.as_str().unwrap_or_else(|| panic!("bad port {port}"));
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == wanted)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {wanted:?}"))
}

/// The single webhook container and the pod spec around it.
fn webhook_container(objects: &[Value]) -> (&Value, &Value) {
    let deployment = one(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    let container = containers
        .iter()
        .find(|c| strs(&c["args"]).first() == Some(&"serve"))
        .expect("a container running `serve`");
    (pod, container)
}

fn check_common(objects: &[Value]) {
    // Namespace and placement of everything namespaced.
    let namespace = one(objects, "Namespace");
    assert_eq!(name(namespace), NAMESPACE);
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        if !CLUSTER_SCOPED.contains(&kind) {
            assert_eq!(
                o["metadata"]["namespace"],
                NAMESPACE,
                "{kind}/{} is not in {NAMESPACE}",
                name(o)
            );
        }
    }

    // Deployment.
    let deployment = one(objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let template_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&deployment["spec"]["selector"], template_labels));
    let (pod, container) = webhook_container(objects);
    let args = strs(&container["args"]);
    let flag_value = |flag: &str| {
        let i = args.iter().position(|a| *a == flag)?;
        args.get(i + 1).copied()
    };
    let tls_cert = flag_value("--tls-cert");
    let tls_key = flag_value("--tls-key");
    assert_eq!(tls_cert, Some(format!("{CERT_DIR}/tls.crt").as_str()));
    assert_eq!(tls_key, Some(format!("{CERT_DIR}/tls.key").as_str()));
    let https_port = flag_port(&args, "--listen", DEFAULT_HTTPS_PORT);
    let admin_port = flag_port(&args, "--admin-listen", DEFAULT_ADMIN_PORT);
    assert_eq!(resolve_port(&json!("https"), container), https_port);
    assert_eq!(resolve_port(&json!("admin"), container), admin_port);

    // The certificate directory is the TLS Secret, read-only, mounted whole (not subPath)
    // so that rotations reach the running server.
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == CERT_DIR)
        .expect("a volume mounted at the certificate directory");
    assert_eq!(mount["readOnly"], true);
    assert!(
        mount.get("subPath").is_none(),
        "subPath mounts never rotate"
    );
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["secret"]["secretName"], TLS_SECRET);

    // Probes on the admin port.
    let readiness = &container["readinessProbe"]["httpGet"];
    let liveness = &container["livenessProbe"]["httpGet"];
    assert_eq!(readiness["path"], "/readyz");
    assert_eq!(liveness["path"], "/healthz");
    assert_eq!(resolve_port(&readiness["port"], container), admin_port);
    assert_eq!(resolve_port(&liveness["port"], container), admin_port);

    // Every container: non-root, read-only root, no escalation, no capabilities, bounded.
    for c in pod["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        let psc = &pod["securityContext"];
        let cname = c["name"].as_str().unwrap_or_default();
        assert!(
            sc["runAsNonRoot"] == true
                || (sc["runAsNonRoot"].is_null() && psc["runAsNonRoot"] == true),
            "{cname}: runAsNonRoot"
        );
        let uid = if sc["runAsUser"].is_null() {
            &psc["runAsUser"]
        } else {
            &sc["runAsUser"]
        };
        assert_eq!(uid, 65532, "{cname}: runAsUser");
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{cname}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{cname}: allowPrivilegeEscalation"
        );
        assert!(
            strs(&sc["capabilities"]["drop"]).contains(&"ALL"),
            "{cname}: drop ALL"
        );
        let seccomp = if sc["seccompProfile"].is_null() {
            &psc["seccompProfile"]
        } else {
            &sc["seccompProfile"]
        };
        assert_eq!(seccomp["type"], "RuntimeDefault", "{cname}: seccompProfile");
        for section in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    c["resources"][section][resource].is_string()
                        || c["resources"][section][resource].is_number(),
                    "{cname}: resources.{section}.{resource} missing"
                );
            }
        }
    }

    // Replicas spread over nodes.
    let anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .map(|t| if t["podAffinityTerm"].is_null() { t } else { &t["podAffinityTerm"] })
        .find(|t| t["topologyKey"] == "kubernetes.io/hostname")
        .expect("podAntiAffinity on kubernetes.io/hostname");
    assert!(
        selects(&anti["labelSelector"], template_labels),
        "anti-affinity must select the pods"
    );

    // PDB keeps one replica through drains.
    let pdb = one(objects, "PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"], template_labels),
        "PDB must select the pods"
    );
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    // Service → container.
    let service = one(objects, "Service");
    assert!(selects(
        &json!({"matchLabels": service["spec"]["selector"]}),
        template_labels
    ));
    let service_ports = service["spec"]["ports"].as_array().expect("service ports");
    let https = service_ports
        .iter()
        .find(|p| p["port"] == 443)
        .expect("Service port 443");
    let target = if https["targetPort"].is_null() {
        &https["port"]
    } else {
        &https["targetPort"]
    };
    assert_eq!(
        resolve_port(target, container),
        https_port,
        "Service 443 must reach the HTTPS listener"
    );

    // Webhooks: /mutate, and /validate or /validate/warn by the namespace's enforcement
    // label (SPEC §2.11).
    let expected = [
        (
            "MutatingWebhookConfiguration",
            "mutate.kubevirt-net-webhook.io",
            "/mutate",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validate.kubevirt-net-webhook.io",
            "/validate",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validate-warn.kubevirt-net-webhook.io",
            "/validate/warn",
        ),
    ];
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let names: Vec<&str> = one(objects, kind)["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .filter_map(|w| w["name"].as_str())
            .collect();
        let wanted: Vec<&str> = expected
            .iter()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, name, _)| *name)
            .collect();
        assert_eq!(names, wanted, "{kind}");
    }
    for (kind, webhook_name, path) in expected {
        let config = one(objects, kind);
        let w = config["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .find(|w| w["name"] == webhook_name)
            .expect("the webhook");
        assert_eq!(w["name"], webhook_name);
        let svc = &w["clientConfig"]["service"];
        assert_eq!(
            svc["name"], service["metadata"]["name"],
            "{kind}: Service name"
        );
        assert_eq!(svc["namespace"], NAMESPACE, "{kind}: Service namespace");
        assert_eq!(svc["path"], path, "{kind}: path");
        let port = svc["port"].as_u64().unwrap_or(443);
        assert!(
            service_ports.iter().any(|p| p["port"] == port),
            "{kind}: port {port} not on the Service"
        );
        assert!(
            w["clientConfig"].get("url").is_none(),
            "{kind}: use the Service, not a URL"
        );
        assert_eq!(w["sideEffects"], "None", "{kind}");
        assert_eq!(w["failurePolicy"], "Fail", "{kind}");
        assert_eq!(w["matchPolicy"], "Equivalent", "{kind}");
        let timeout = w["timeoutSeconds"].as_u64().expect("timeoutSeconds set");
        assert!(
            (1..=10).contains(&timeout),
            "{kind}: timeoutSeconds {timeout}"
        );
        assert!(
            strs(&w["admissionReviewVersions"]).contains(&"v1"),
            "{kind}"
        );
        if kind == "MutatingWebhookConfiguration" {
            assert_eq!(w["reinvocationPolicy"], "IfNeeded", "{kind}");
        } else {
            assert!(
                w.get("reinvocationPolicy").is_none(),
                "{kind}: no reinvocationPolicy"
            );
        }
        let rules = w["rules"].as_array().expect("rules");
        // Every kind the webhook decides is registered, with exactly the operations it
        // decides (SPEC §2.8; the facts come from the code's one place for them).
        for k in Kind::ALL {
            let operations: Vec<&str> =
                [("CREATE", Operation::Create), ("UPDATE", Operation::Update)]
                    .into_iter()
                    .filter(|(_, op)| k.decides(op))
                    .map(|(name, _)| name)
                    .collect();
            let rule = rules.iter().find(|r| {
                strs(&r["apiGroups"]) == [k.group()]
                    && strs(&r["apiVersions"]).contains(&k.version())
                    && strs(&r["resources"]).contains(&k.resource())
            });
            let rule = rule
                .unwrap_or_else(|| panic!("{kind}: no rule for {} {}", k.group(), k.resource()));
            assert_eq!(
                strs(&rule["operations"]),
                operations,
                "{kind}: {}",
                k.resource()
            );
        }
        for r in rules {
            assert!(
                !strs(&r["resources"]).contains(&"*"),
                "{kind}: no wildcard resources"
            );
            assert!(
                !strs(&r["operations"]).contains(&"DELETE"),
                "{kind}: no DELETE"
            );
        }
        let exprs = w["namespaceSelector"]["matchExpressions"]
            .as_array()
            .expect("namespaceSelector");
        assert!(
            exprs
                .iter()
                .any(|e| e["key"] == "kubevirt-net-webhook.io/ignore"
                    && e["operator"] == "DoesNotExist"),
            "{kind}: opt-out label"
        );
        assert!(
            exprs
                .iter()
                .any(|e| e["key"] == "kubernetes.io/metadata.name"
                    && e["operator"] == "NotIn"
                    && strs(&e["values"]).contains(&NAMESPACE)),
            "{kind}: own namespace excluded"
        );
        let conditions: Vec<&str> = w["matchConditions"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            conditions,
            ["not-being-deleted", "changes-what-the-webhook-reads"],
            "{kind} {webhook_name}: matchConditions"
        );
    }
    // Each namespace is validated by exactly one entry, whatever its enforcement label.
    let validating = one(objects, "ValidatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap();
    for (labels, path) in [
        (json!({}), "/validate"),
        (
            json!({"kubevirt-net-webhook.io/enforcement": "deny"}),
            "/validate",
        ),
        (
            json!({"kubevirt-net-webhook.io/enforcement": "warn"}),
            "/validate/warn",
        ),
    ] {
        let mut labels = labels;
        labels["kubernetes.io/metadata.name"] = json!("team-a");
        let chosen: Vec<&Value> = validating
            .iter()
            .filter(|w| expressions_select(&w["namespaceSelector"], &labels))
            .map(|w| &w["clientConfig"]["service"]["path"])
            .collect();
        assert_eq!(chosen, [path], "{labels}");
    }

    check_resources(container);
    check_startup(deployment, container);
    check_decision_timeout(objects, &args);
    check_network_policy(objects, template_labels, container, https_port, admin_port);
    check_rbac(objects, deployment);
}

/// A Kubernetes quantity in base units (cores, bytes): `250m`, `1`, `64Mi`, `1Gi`, `1e3`.
fn quantity(v: &Value) -> f64 {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => panic!("bad quantity {v}"),
    };
    let units = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("m", 1e-3),
    ];
    for (suffix, factor) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n.parse::<f64>().expect("quantity number") * factor;
        }
    }
    text.parse()
        .unwrap_or_else(|_| panic!("bad quantity {text}"))
}

/// Requests within limits, sized from the measurements (benches/README.md, "Sizing (measured)").
fn check_resources(container: &Value) {
    let r = &container["resources"];
    let mib = |v: &Value| quantity(v) / 1024f64.powi(2);
    for resource in ["cpu", "memory"] {
        assert!(
            quantity(&r["requests"][resource]) <= quantity(&r["limits"][resource]),
            "{resource}: request above limit"
        );
    }
    assert!(
        mib(&r["limits"]["memory"]) >= MEASURED_PEAK_MIB * 1.25,
        "memory limit {} below the measured peak {MEASURED_PEAK_MIB} MiB plus 25%",
        r["limits"]["memory"]
    );
    assert!(
        mib(&r["requests"]["memory"]) >= MEASURED_LOADED_MIB,
        "memory request {} below the RSS under load",
        r["requests"]["memory"]
    );
    // Those measurements were taken with mimalloc purging freed memory at once.
    assert!(
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "MIMALLOC_PURGE_DELAY" && e["value"] == "0"),
        "MIMALLOC_PURGE_DELAY=0 missing: the allocator would keep freed memory for a second"
    );
    // At least one core: the TLS and decisions of a burst must not be throttled to nothing.
    assert!(quantity(&r["limits"]["cpu"]) >= 1.0, "cpu limit");
}

/// A replica restarting on a large cluster lists every VM before it is ready: it must get no
/// traffic before (readiness on `/readyz`, checked in `check_common`), must not be killed while
/// it lists, and must not fail the rollout, with room for a cluster three times as slow.
fn check_startup(deployment: &Value, container: &Value) {
    let spec = &deployment["spec"];
    let room = 3.0 * MEASURED_READY_100K_S;
    // The old replicas stay until the new one is ready.
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let deadline = spec["progressDeadlineSeconds"]
        .as_f64()
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_S);
    assert!(
        deadline >= room,
        "progressDeadlineSeconds {deadline} would fail a rollout whose replicas take {room} s to list"
    );
    // Liveness must not depend on the caches: /healthz answers while they list
    // (tests/startup.rs). A probe on /readyz would kill a replica that lists longer than its
    // window, and the next one would start listing from the beginning.
    for probe in ["livenessProbe", "startupProbe"] {
        let p = &container[probe];
        if p.is_null() || p["httpGet"]["path"] != "/readyz" {
            continue;
        }
        let field = |name: &str, default: f64| p[name].as_f64().unwrap_or(default);
        let window = field("initialDelaySeconds", 0.0)
            + field("periodSeconds", 10.0) * field("failureThreshold", 3.0);
        assert!(
            window >= room,
            "{probe} on /readyz kills a replica still listing after {window} s (< {room} s)"
        );
    }
    // A ready replica is noticed soon: a small fraction of the start-up itself.
    let readiness = &container["readinessProbe"];
    let period = readiness["periodSeconds"].as_f64().unwrap_or(10.0);
    assert!(
        period <= MEASURED_READY_100K_S / 4.0,
        "readiness periodSeconds {period}: a ready replica waits that long for traffic"
    );
    // The cache at that size fits the memory limit with room.
    let limit = quantity(&container["resources"]["limits"]["memory"]) / 1024f64.powi(2);
    assert!(
        limit >= MEASURED_READY_100K_PEAK_MIB * 1.5,
        "memory limit {limit} MiB: the peak at 100,000 VMs is {MEASURED_READY_100K_PEAK_MIB} MiB"
    );
}

/// The decision deadline is well below every webhook's timeoutSeconds, so the API server gets
/// the webhook's answer instead of timing out itself.
fn check_decision_timeout(objects: &[Value], args: &[&str]) {
    let seconds = args
        .iter()
        .position(|a| *a == "--decision-timeout")
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            kubevirt_net_webhook::server::parse_duration(v)
                .unwrap_or_else(|e| panic!("--decision-timeout {v}: {e}"))
                .as_secs_f64()
        })
        .unwrap_or(DEFAULT_DECISION_TIMEOUT_S);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in one(objects, kind)["webhooks"].as_array().unwrap() {
            let timeout = w["timeoutSeconds"].as_f64().expect("timeoutSeconds");
            assert!(
                seconds + 1.0 <= timeout,
                "{kind}: --decision-timeout {seconds}s must be at least 1s below timeoutSeconds {timeout}"
            );
        }
    }
}

/// The pods are isolated; only the HTTPS and admin ports are reachable, the admin port only
/// from selected namespaces, the HTTPS port from any source or from address blocks.
fn check_network_policy(
    objects: &[Value],
    template_labels: &Value,
    container: &Value,
    https_port: u64,
    admin_port: u64,
) {
    let policy = kind_of(objects, "NetworkPolicy")
        .into_iter()
        .find(|p| selects(&p["spec"]["podSelector"], template_labels))
        .expect("a NetworkPolicy selecting the webhook pods");
    assert!(
        strs(&policy["spec"]["policyTypes"]).contains(&"Ingress"),
        "the policy must isolate ingress"
    );
    let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
    let mut admitted = BTreeSet::new();
    for rule in rules {
        let ports: Vec<u64> = rule["ports"]
            .as_array()
            .expect("every rule names its ports (none would admit all ports)")
            .iter()
            .map(|p| {
                assert_eq!(p["protocol"], "TCP");
                resolve_port(&p["port"], container)
            })
            .collect();
        let peers = rule["from"].as_array();
        for port in ports {
            admitted.insert(port);
            if port == admin_port {
                let peers = peers.expect("the admin port admits selected peers only");
                assert!(!peers.is_empty());
                for peer in peers {
                    assert!(
                        peer.get("ipBlock").is_none(),
                        "admin port: select namespaces, not addresses: {peer}"
                    );
                    assert!(peer["namespaceSelector"].is_object(), "{peer}");
                }
            } else {
                assert_eq!(
                    port, https_port,
                    "only the webhook and admin ports are open"
                );
                for peer in peers.into_iter().flatten() {
                    if let Some(cidr) = peer["ipBlock"]["cidr"].as_str() {
                        assert!(
                            !["0.0.0.0/0", "::/0"].contains(&cidr),
                            "an ipBlock of everything: leave `from` out instead"
                        );
                    } else {
                        assert!(peer["namespaceSelector"].is_object(), "{peer}");
                    }
                }
            }
        }
    }
    assert_eq!(admitted, BTreeSet::from([https_port, admin_port]));
}

fn check_rbac(objects: &[Value], deployment: &Value) {
    let allowed_verbs: BTreeSet<&str> = ["get", "list", "watch"].into();
    // Exactly what the caches watch (the code's one list of them).
    use kubevirt_net_webhook::inventory::apply::Cached;
    let watched: Vec<(String, String)> = [Cached::Nad, Cached::Vm, Cached::Vmi]
        .map(|c| c.api_resource())
        .into_iter()
        .map(|r| (r.group, r.plural))
        .collect();
    let allowed: BTreeSet<(&str, &str)> = watched
        .iter()
        .map(|(g, r)| (g.as_str(), r.as_str()))
        .collect();
    assert!(allowed.contains(&("kubevirt.io", "virtualmachineinstances")));
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    assert!(
        kind_of(objects, "ServiceAccount")
            .iter()
            .any(|s| name(s) == sa),
        "ServiceAccount {sa} missing"
    );
    assert!(kind_of(objects, "Role").is_empty() && kind_of(objects, "RoleBinding").is_empty());
    let mut granted: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for role in kind_of(objects, "ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            assert!(rule.get("nonResourceURLs").is_none(), "no nonResourceURLs");
            for verb in strs(&rule["verbs"]) {
                assert!(
                    allowed_verbs.contains(verb),
                    "{}: verb {verb} not allowed",
                    name(role)
                );
                for group in strs(&rule["apiGroups"]) {
                    for resource in strs(&rule["resources"]) {
                        assert!(
                            allowed.contains(&(group, resource)),
                            "{}: {group}/{resource} not allowed",
                            name(role)
                        );
                        granted.insert((group, resource, verb));
                    }
                }
            }
        }
    }
    // The reflectors need all three on every resource.
    for (group, resource) in &allowed {
        for verb in &allowed_verbs {
            assert!(
                granted.contains(&(group, resource, verb)),
                "missing {verb} on {group}/{resource}"
            );
        }
    }
    let binding = one(objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert!(
        kind_of(objects, "ClusterRole")
            .iter()
            .any(|r| binding["roleRef"]["name"] == name(r))
    );
    assert!(
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount"
                && s["name"] == sa
                && s["namespace"] == NAMESPACE),
        "ClusterRoleBinding must bind the Deployment's ServiceAccount"
    );
}

#[test]
fn base_renders_and_holds_invariants() {
    let objects = render("deploy");
    check_common(&objects);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = one(&objects, kind);
        assert!(
            config["metadata"]["annotations"][INJECT_CA].is_null(),
            "{kind}: the base must not depend on cert-manager"
        );
        // Left out (not ""), so that re-applying the base keeps an injected caBundle.
        for w in config["webhooks"].as_array().unwrap() {
            assert!(
                w["clientConfig"].get("caBundle").is_none(),
                "{kind}: caBundle in the base"
            );
        }
    }
}

#[test]
fn cert_manager_overlay_injects_ca_from_an_existing_certificate() {
    let objects = render("deploy/overlays/cert-manager");
    check_common(&objects);
    let certificates = kind_of(&objects, "Certificate");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = one(&objects, kind);
        let from = config["metadata"]["annotations"][INJECT_CA]
            .as_str()
            .unwrap_or_else(|| panic!("{kind}: no {INJECT_CA} annotation"));
        let (ns, cert_name) = from.split_once('/').expect("NAMESPACE/NAME");
        let cert = certificates
            .iter()
            .find(|c| c["metadata"]["namespace"] == ns && name(c) == cert_name)
            .unwrap_or_else(|| panic!("{kind}: {INJECT_CA} names missing Certificate {from}"));
        assert_eq!(
            cert["spec"]["secretName"], TLS_SECRET,
            "the Certificate must write the mounted Secret"
        );
        let dns = strs(&cert["spec"]["dnsNames"]);
        let service = one(&objects, "Service");
        let svc_name = name(service);
        for wanted in [
            format!("{svc_name}.{NAMESPACE}.svc"),
            format!("{svc_name}.{NAMESPACE}.svc.cluster.local"),
        ] {
            assert!(dns.contains(&wanted.as_str()), "Certificate lacks {wanted}");
        }
        assert!(
            cert["spec"]["isCA"] != true,
            "the serving Certificate is not a CA"
        );
        // Its issuer exists in the same render (an Issuer in its namespace).
        let issuer_ref = &cert["spec"]["issuerRef"];
        assert_eq!(issuer_ref["kind"], "Issuer");
        assert!(
            kind_of(&objects, "Issuer")
                .iter()
                .any(|i| name(i) == issuer_ref["name"] && i["metadata"]["namespace"] == ns),
            "issuer {} missing",
            issuer_ref["name"]
        );
    }
}

#[test]
fn fallback_renderer_agrees_with_kubectl() {
    if !kubectl_has_modern_kustomize() {
        eprintln!("note: kubectl lacks kustomize v4+; nothing to compare the fallback with");
        return;
    }
    for rel in [
        "deploy",
        "deploy/overlays/cert-manager",
        "deploy/examples/control-plane-only",
        "deploy/examples/audit-cronjob",
    ] {
        let key = |o: &Value| format!("{}/{}/{}", o["kind"], o["metadata"]["namespace"], name(o));
        let mut real = render(rel);
        let mut fallback = render_fallback(&repo().join(rel));
        real.sort_by_key(key);
        fallback.sort_by_key(key);
        assert_eq!(
            real, fallback,
            "{rel}: fallback renderer differs from kubectl kustomize"
        );
    }
}

#[test]
fn control_plane_example_admits_only_its_addresses_to_the_webhook_port() {
    let objects = render("deploy/examples/control-plane-only");
    check_common(&objects);
    let policy = one(&objects, "NetworkPolicy");
    let https_rule = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"][0]["port"] == "https")
        .expect("the webhook port's rule");
    let peers = https_rule["from"].as_array().expect("peers");
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| p["ipBlock"]["cidr"].is_string()),
        "{peers:?}"
    );
}

#[test]
fn audit_cronjob_example_runs_audit_and_may_only_read() {
    let objects = render("deploy/examples/audit-cronjob");
    let cronjob = one(&objects, "CronJob");
    assert_eq!(cronjob["metadata"]["namespace"], NAMESPACE);
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(strs(&container["args"]), ["audit", "-A", "-o", "report"]);
    assert!(
        container.get("command").is_none(),
        "the image's ENTRYPOINT runs"
    );
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let sa = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    assert!(
        kind_of(&objects, "ServiceAccount")
            .iter()
            .any(|s| name(s) == sa && s["metadata"]["namespace"] == NAMESPACE),
        "ServiceAccount {sa} missing"
    );
    // get and list on what audit reads; nothing else, no watch, no write.
    let wanted: BTreeSet<(&str, &str, &str)> = Kind::ALL
        .map(|k| (k.group(), k.resource()))
        .into_iter()
        .chain([("k8s.cni.cncf.io", "network-attachment-definitions")])
        .flat_map(|(g, r)| [(g, r, "get"), (g, r, "list")])
        .collect();
    assert!(kind_of(&objects, "Role").is_empty() && kind_of(&objects, "RoleBinding").is_empty());
    let role = one(&objects, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none());
        for group in strs(&rule["apiGroups"]) {
            for resource in strs(&rule["resources"]) {
                for verb in strs(&rule["verbs"]) {
                    granted.insert((group, resource, verb));
                }
            }
        }
    }
    assert_eq!(granted, wanted);
    let binding = one(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], name(role));
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}])
    );
}

#[test]
fn containerfile_matches_the_deployment() {
    let path = repo().join("deploy/Containerfile");
    let text = std::fs::read_to_string(&path).expect("deploy/Containerfile");
    // The image's binary is the profile-guided build of deploy/pgo-build.sh: both of its
    // builds (instrumented, then with the profile) from Cargo.lock.
    assert!(
        text.contains("CARGO_FLAGS=--locked deploy/pgo-build.sh"),
        "reproducible build from Cargo.lock"
    );
    let script = std::fs::read_to_string(repo().join("deploy/pgo-build.sh")).unwrap();
    assert_eq!(
        script
            .matches("cargo build --release $flags --bin kubevirt-net-webhook")
            .count(),
        2,
        "instrumented and profile-guided builds"
    );
    assert!(script.contains("-Cprofile-generate=") && script.contains("-Cprofile-use="));
    assert!(
        text.contains("COPY --from=builder /usr/local/bin/kubevirt-net-webhook"),
        "the image takes the binary the builder stage put there"
    );
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("USER in the final stage");
    assert!(
        user.starts_with("65532"),
        "image USER {user} must match runAsUser 65532"
    );
    let entrypoint = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    assert!(entrypoint.contains("kubevirt-net-webhook"), "{entrypoint}");
    let objects = render("deploy");
    let (_, container) = webhook_container(&objects);
    // The Deployment passes `serve ...` as args, so the entrypoint must be the binary alone.
    assert!(
        container.get("command").is_none(),
        "command would override the ENTRYPOINT"
    );
}

/// Validates a rendered prometheus-operator object against its CRD (v0.93, `tests/data/crds`).
fn validate_against_operator_crd(object: &Value, plural: &str) {
    let file = support::data(&format!(
        "crds/prometheus-operator-monitoring.coreos.com_{plural}.yaml"
    ));
    let (schema, info) = support::schema::Schema::from_crd_file(&file, "v1");
    assert_eq!(object["kind"], info.kind.as_str());
    assert_eq!(object["apiVersion"], format!("{}/v1", info.group));
    let mut errs = Vec::new();
    support::schema::validate_root(&schema, object, &mut errs);
    assert!(
        errs.is_empty(),
        "{}/{} does not validate against {}:\n{}",
        info.kind,
        name(object),
        file.display(),
        errs.join("\n")
    );
}

/// The monitoring objects of `deploy/components/monitoring`, checked against the rest of the
/// render: the ServiceMonitor scrapes the admin port through the Service, the alerts name the
/// namespace, job and Deployment that exist, each alert has its severity, texts and a runbook
/// in the repository, and the dashboard is a ConfigMap Grafana's sidecar picks up.
fn check_monitoring(objects: &[Value]) {
    let service = one(objects, "Service");
    let deployment = one(objects, "Deployment");
    let (_, container) = webhook_container(objects);
    let admin_port = flag_port(
        &strs(&container["args"]),
        "--admin-listen",
        DEFAULT_ADMIN_PORT,
    );

    let monitor = one(objects, "ServiceMonitor");
    validate_against_operator_crd(monitor, "servicemonitors");
    assert_eq!(monitor["metadata"]["namespace"], NAMESPACE);
    assert!(
        selects(&monitor["spec"]["selector"], &service["metadata"]["labels"]),
        "the ServiceMonitor must select the Service"
    );
    assert_eq!(
        strs(&monitor["spec"]["namespaceSelector"]["matchNames"]),
        [NAMESPACE]
    );
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    let port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoints[0]["port"])
        .unwrap_or_else(|| panic!("no Service port named {}", endpoints[0]["port"]));
    assert_eq!(
        resolve_port(&port["targetPort"], container),
        admin_port,
        "the ServiceMonitor must scrape the admin port"
    );
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["scheme"], "http");

    let rule = one(objects, "PrometheusRule");
    validate_against_operator_crd(rule, "prometheusrules");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    let runbooks = repo().join("deploy/runbooks");
    let url_prefix =
        "https://github.com/kubevirt-net-webhook/kubevirt-net-webhook/blob/main/deploy/runbooks/";
    let mut alerts = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for r in group["rules"].as_array().expect("rules") {
            let alert = r["alert"].as_str().expect("only alerting rules");
            alerts.insert(alert.to_string());
            assert!(
                ["critical", "warning", "info"]
                    .contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{alert}: severity"
            );
            for key in ["summary", "description"] {
                assert!(
                    r["annotations"][key].as_str().is_some_and(|t| t.len() > 20),
                    "{alert}: no {key}"
                );
            }
            // The values: the expression's ($value), or for a 0/1 gauge the labels saying
            // which one is 0.
            let description = r["annotations"]["description"].as_str().unwrap();
            assert!(
                description.contains("$value") || description.contains("$labels"),
                "{alert}: the description must give the values"
            );
            let url = r["annotations"]["runbook_url"]
                .as_str()
                .expect("runbook_url");
            let file = url
                .strip_prefix(url_prefix)
                .unwrap_or_else(|| panic!("{alert}: runbook_url {url} is not under {url_prefix}"));
            assert_eq!(file, format!("{alert}.md"), "{alert}: runbook file name");
            let page = std::fs::read_to_string(runbooks.join(file))
                .unwrap_or_else(|e| panic!("{alert}: runbook {file}: {e}"));
            assert_eq!(page.lines().next(), Some(format!("# {alert}").as_str()));
            for section in [
                "## What it means",
                "## How to confirm",
                "## How to fix",
                "## Getting VMs moving again",
            ] {
                assert!(page.contains(section), "{file}: no {section:?} section");
            }
            // What the expression names exists in this render.
            let expr = r["expr"].as_str().unwrap();
            for (label, wanted) in [
                ("namespace", NAMESPACE),
                ("job", name(service)),
                ("deployment", name(deployment)),
            ] {
                for (i, _) in expr.match_indices(&format!("{label}=\"")) {
                    let value = expr[i + label.len() + 2..].split('"').next().unwrap();
                    assert_eq!(value, wanted, "{alert}: {label}=\"{value}\"");
                }
            }
        }
    }
    // Every runbook page belongs to an alert, and the index lists each.
    let index = std::fs::read_to_string(runbooks.join("README.md")).expect("runbooks/README.md");
    for entry in std::fs::read_dir(&runbooks).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if file == "README.md" {
            continue;
        }
        let alert = file.strip_suffix(".md").expect("only .md files");
        assert!(alerts.contains(alert), "{file}: no alert of that name");
        assert!(
            index.contains(&format!("[{alert}]({file})")),
            "the index lacks {file}"
        );
    }

    // The p99 alert: at half of the webhooks' timeoutSeconds or more (so that it means "near
    // the timeout"), below it, and above --decision-timeout (the webhook answers by then).
    let slow = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == "KubevirtNetWebhookSlowAdmission")
        .expect("the latency alert");
    let threshold: f64 = slow["expr"]
        .as_str()
        .unwrap()
        .rsplit('>')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("a number after the last >");
    let args = strs(&container["args"]);
    let decision = args
        .iter()
        .position(|a| *a == "--decision-timeout")
        .map(|i| {
            kubevirt_net_webhook::server::parse_duration(args[i + 1])
                .unwrap()
                .as_secs_f64()
        })
        .unwrap_or(DEFAULT_DECISION_TIMEOUT_S);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in one(objects, kind)["webhooks"].as_array().unwrap() {
            let timeout = w["timeoutSeconds"].as_f64().unwrap();
            assert!(
                threshold >= timeout / 2.0 && threshold < timeout && threshold > decision,
                "latency alert at {threshold}s: keep it in [timeoutSeconds/2, timeoutSeconds) = \
                 [{}, {timeout}) and above --decision-timeout {decision}s",
                timeout / 2.0
            );
            assert!(
                slow["annotations"]["description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("timeoutSeconds is {timeout}s")),
                "the latency alert's description must give timeoutSeconds {timeout}s"
            );
        }
    }

    // The dashboard: one ConfigMap with the grafana_dashboard label holding the JSON.
    let dashboards: Vec<&Value> = kind_of(objects, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(dashboards.len(), 1, "one dashboard ConfigMap");
    let data = dashboards[0]["data"].as_object().expect("data");
    assert_eq!(data.len(), 1);
    let (key, text) = data.iter().next().unwrap();
    assert!(key.ends_with(".json"), "{key}");
    let dashboard: Value = serde_json::from_str(text.as_str().unwrap()).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "kubevirt-net-webhook");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(
        panels
            .iter()
            .filter(|p| p["type"] != "row")
            .all(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty())),
        "every panel has a query"
    );
}

#[test]
fn monitoring_overlay_is_the_base_with_valid_monitoring_objects() {
    let objects = render("deploy/overlays/monitoring");
    check_common(&objects);
    check_monitoring(&objects);
}

#[test]
fn monitoring_adds_to_the_cert_manager_overlay() {
    let objects = render("deploy/examples/cert-manager-monitoring");
    check_common(&objects);
    check_monitoring(&objects);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert!(
            one(&objects, kind)["metadata"]["annotations"][INJECT_CA].is_string(),
            "{kind}: cert-manager's CA injection lost"
        );
    }
}
