//! The monitoring of `deploy/components/monitoring`, checked with the real tools (Debian's
//! `prometheus` package, which `.ci/run` installs; `PROMTOOL` and `PROMETHEUS` override the
//! commands, and a missing one fails the tests):
//!
//! - `promtool check rules` and `promtool test rules` on the PrometheusRule's groups, with
//!   `alerts_test.yaml`: every alert has a case where it fires and one where it stays quiet.
//! - A real `prometheus` scraping a running `serve` (files-only caches, its admin port every
//!   second, labelled as the ServiceMonitor labels a pod) and evaluating the rules: every
//!   metric selector of every alert and every dashboard query (panels and variables) matches
//!   series with those labels (`/api/v1/series`), every label an aggregation groups by or a
//!   match uses is on the series it groups, every query evaluates, and every rule's health is
//!   "ok". A renamed metric, label or label value fails; the test proves that on three
//!   renamed copies. The metrics only the API server (`apiserver_admission_webhook_*`) or
//!   kube-state-metrics (`kube_*`) export are checked against [`EXTERNAL`], their names and
//!   labels as those projects define them, instead.
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::apiserver::{Process, free_port, tail};
use support::kustomize::{render, repo};

const BIN: &str = env!("CARGO_BIN_EXE_kubevirt-net-webhook");
const OVERLAY: &str = "deploy/overlays/monitoring";
const ALERT_TESTS: &str = "deploy/components/monitoring/alerts_test.yaml";
/// The rule file `alerts_test.yaml` names.
const RULES_FILE: &str = "kubevirt-net-webhook.rules.yaml";
/// The target labels prometheus-operator gives a ServiceMonitor's target (job: the Service's
/// name), before the ServiceMonitor's own `relabelings`, which the test applies too.
const TARGET_LABELS: &[(&str, &str)] = &[
    ("namespace", "kubevirt-net-webhook"),
    ("pod", "kubevirt-net-webhook-7d9f8-abcde"),
    ("service", "kubevirt-net-webhook"),
    ("container", "webhook"),
    ("endpoint", "metrics"),
];
const JOB: &str = "kubevirt-net-webhook";

/// Metrics other components export, with their label names: the API server's admission
/// webhook metrics (k8s.io/apiserver v0.36 `pkg/admission/metrics`: namespace `apiserver`,
/// subsystem `admission`) and kube-state-metrics' Deployment metrics. Any series also has the
/// target labels `job` and `instance`.
const EXTERNAL: &[(&str, &[&str])] = &[
    (
        "apiserver_admission_webhook_rejection_count",
        &["name", "type", "operation", "error_type", "rejection_code"],
    ),
    (
        "apiserver_admission_webhook_request_total",
        &["name", "type", "operation", "code", "rejected"],
    ),
    (
        "apiserver_admission_webhook_admission_duration_seconds_bucket",
        &["name", "type", "operation", "rejected", "le"],
    ),
    (
        "kube_deployment_status_replicas_available",
        &["namespace", "deployment"],
    ),
];

/// `promtool` or `prometheus`, or the command in `env`; a missing one fails with what to do.
fn tool(name: &str, env: &str) -> String {
    let command = std::env::var(env).unwrap_or_else(|_| name.into());
    match Command::new(&command).arg("--version").output() {
        Ok(o) if o.status.success() => command,
        Ok(o) => panic!(
            "`{command} --version` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{command}` ({e}). Install Debian's `prometheus` package (it has \
             prometheus and promtool; .ci/run installs it), or set {env}."
        ),
    }
}

/// The ServiceMonitor's `relabelings` as Prometheus `relabel_configs` (YAML lines indented
/// for a scrape config).
fn relabel_configs(monitor: &Value) -> String {
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    let mut out = String::new();
    for r in endpoints[0]["relabelings"].as_array().into_iter().flatten() {
        let mut first = true;
        for (key, value) in r.as_object().unwrap() {
            let key = match key.as_str() {
                "sourceLabels" => "source_labels",
                "targetLabel" => "target_label",
                "action" | "regex" | "replacement" | "separator" | "modulus" => key.as_str(),
                other => panic!("relabeling field {other}: teach tests/monitoring.rs"),
            };
            let value = match value {
                Value::String(s) if key == "action" => s.to_lowercase(),
                other => other.to_string(),
            };
            out += &format!("      {} {key}: {value}\n", if first { "-" } else { " " });
            first = false;
        }
    }
    if out.is_empty() {
        String::new()
    } else {
        format!("    relabel_configs:\n{out}")
    }
}

/// The PrometheusRule and the dashboard, as the overlay renders them.
fn rendered() -> (Value, Value) {
    let objects = render(OVERLAY);
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("{OVERLAY} renders no {kind}"))
            .clone()
    };
    let rule = find("PrometheusRule");
    let config_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    let text = config_map["data"]
        .as_object()
        .and_then(|d| d.values().next())
        .and_then(Value::as_str)
        .expect("the dashboard JSON");
    (rule, serde_json::from_str(text).expect("dashboard JSON"))
}

fn rendered_monitor() -> Value {
    render(OVERLAY)
        .into_iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor")
}

/// Writes the PrometheusRule's groups as a plain rule file into `dir`.
fn write_rules(rule: &Value, dir: &Path) -> PathBuf {
    let path = dir.join(RULES_FILE);
    std::fs::write(&path, serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    path
}

/// Every rule: (alert name, severity, expression).
fn alerts(rule: &Value) -> Vec<(String, String, String)> {
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| {
            (
                r["alert"].as_str().expect("alert").to_string(),
                r["labels"]["severity"]
                    .as_str()
                    .expect("severity")
                    .to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            )
        })
        .collect()
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_and_tests_every_alert_firing_and_quiet() {
    let promtool = tool("promtool", "PROMTOOL");
    let (rule, _) = rendered();
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(&rule, dir.path());
    let tests = dir.path().join("alerts_test.yaml");
    std::fs::copy(repo().join(ALERT_TESTS), &tests).unwrap();
    let checked = run(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    eprintln!("{checked}");
    let tested = run(Command::new(&promtool).args(["test", "rules"]).arg(&tests));
    eprintln!("{tested}");

    // Every alert, and each of its severities, has a case that fires it; every alert has a
    // case where it stays quiet.
    let cases: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let mut fired: BTreeSet<(String, String)> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    for case in cases["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().unwrap().to_string();
            let expected = check["exp_alerts"].as_array().cloned().unwrap_or_default();
            if expected.is_empty() {
                quiet.insert(name.clone());
            }
            for alert in expected {
                let severity = alert["exp_labels"]["severity"].as_str().unwrap_or("");
                fired.insert((name.clone(), severity.to_string()));
                assert!(
                    alert["exp_annotations"]["description"].is_string(),
                    "{name}: a firing case must check the rendered description"
                );
            }
        }
    }
    for (name, severity, _) in alerts(&rule) {
        assert!(
            fired.contains(&(name.clone(), severity.clone())),
            "{ALERT_TESTS}: no case where {name} fires with severity {severity}"
        );
        assert!(
            quiet.contains(&name),
            "{ALERT_TESTS}: no case where {name} stays quiet"
        );
    }
}

// --- PromQL, as far as this test needs it -------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident,
    Str,
    Num,
    Punct,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    text: String,
    start: usize,
    end: usize,
}

/// PromQL tokens with their byte spans: identifiers (metric, label and function names,
/// keywords), strings, numbers and durations, punctuation and operators.
fn lex(expr: &str) -> Vec<Tok> {
    let b = expr.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        let start = i;
        let kind = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < b.len() && b[i] as char != c {
                if b[i] == b'\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            assert!(i < b.len(), "unterminated string in {expr}");
            i += 1;
            Kind::Str
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            Kind::Num
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            Kind::Ident
        } else {
            let two = expr.get(i..i + 2).unwrap_or("");
            i += if ["==", "!=", "=~", "!~", "<=", ">="].contains(&two) {
                2
            } else {
                1
            };
            Kind::Punct
        };
        toks.push(Tok {
            kind,
            text: expr[start..i].to_string(),
            start,
            end: i,
        });
    }
    toks
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];

/// A vector selector: its metric name, its text (as written) and the label names it matches.
#[derive(Debug)]
struct Selector {
    metric: String,
    text: String,
    labels: Vec<String>,
    at: usize,
}

/// Label names a clause uses (`by`, `without`, `on`, `ignoring`, `group_left`,
/// `group_right`), and the token range whose selectors must carry them: the aggregation's
/// body for `by`/`without`, the whole expression for the vector-matching clauses.
#[derive(Debug)]
struct Grouping {
    clause: String,
    labels: Vec<String>,
    scope: std::ops::Range<usize>,
}

/// The index of the token closing the parenthesis opened at `open`.
fn closing(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses")
}

/// The index of the token opening the parenthesis closed at `close`.
fn opening(toks: &[Tok], close: usize) -> usize {
    let mut depth = 0;
    for i in (0..=close).rev() {
        match toks[i].text.as_str() {
            ")" => depth += 1,
            "(" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses")
}

/// Label names listed in the parentheses opened at `open`; the index of `)`.
fn label_list(toks: &[Tok], open: usize) -> (Vec<String>, usize) {
    let close = closing(toks, open);
    let labels = toks[open + 1..close]
        .iter()
        .filter(|t| t.kind == Kind::Ident)
        .map(|t| t.text.clone())
        .collect();
    (labels, close)
}

fn analyze(expr: &str) -> (Vec<Selector>, Vec<Grouping>) {
    let toks = lex(expr);
    let mut selectors = Vec::new();
    let mut groupings = Vec::new();
    let mut i = 0;
    let mut in_range = false;
    while i < toks.len() {
        let t = &toks[i];
        let next = toks.get(i + 1).map(|t| t.text.as_str());
        match (t.kind.clone(), t.text.as_str()) {
            (Kind::Punct, "[") => in_range = true,
            (Kind::Punct, "]") => in_range = false,
            (Kind::Punct, "{") => panic!("a selector without a metric name in {expr}"),
            _ if in_range => {}
            (Kind::Ident, word @ ("by" | "without")) if next == Some("(") => {
                let (labels, close) = label_list(&toks, i + 1);
                // `agg by (..) (body)` or `agg (body) by (..)`.
                let body = if i > 0 && AGGREGATIONS.contains(&toks[i - 1].text.as_str()) {
                    let open = close + 1;
                    open..closing(&toks, open)
                } else {
                    assert_eq!(
                        toks[i - 1].text,
                        ")",
                        "`{word}` after no aggregation in {expr}"
                    );
                    opening(&toks, i - 1)..i - 1
                };
                groupings.push(Grouping {
                    clause: word.to_string(),
                    labels,
                    scope: body,
                });
                i = close;
            }
            (Kind::Ident, word @ ("on" | "ignoring" | "group_left" | "group_right"))
                if next == Some("(") =>
            {
                let (labels, close) = label_list(&toks, i + 1);
                groupings.push(Grouping {
                    clause: word.to_string(),
                    labels,
                    scope: 0..toks.len(),
                });
                i = close;
            }
            (Kind::Ident, word)
                if KEYWORDS.contains(&word)
                    || AGGREGATIONS.contains(&word)
                    || next == Some("(") => {}
            (Kind::Ident, metric) => {
                let mut labels = Vec::new();
                let mut end = t.end;
                if next == Some("{") {
                    let mut j = i + 2;
                    while toks[j].text != "}" {
                        if matches!(toks[j].kind, Kind::Ident | Kind::Str)
                            && ["=", "!=", "=~", "!~"].contains(&toks[j + 1].text.as_str())
                        {
                            labels.push(toks[j].text.trim_matches('"').to_string());
                            j += 3;
                        } else {
                            j += 1;
                        }
                    }
                    end = toks[j].end;
                    i = j;
                }
                selectors.push(Selector {
                    metric: metric.to_string(),
                    text: expr[t.start..end].to_string(),
                    labels,
                    at: selectors_index(&toks, t.start),
                });
            }
            _ => {}
        }
        i += 1;
    }
    (selectors, groupings)
}

/// The token index of the token starting at byte `start`.
fn selectors_index(toks: &[Tok], start: usize) -> usize {
    toks.iter().position(|t| t.start == start).unwrap()
}

// --- A running serve and a real Prometheus ------------------------------------------------

/// GET over HTTP/1.0 (no chunked answers): status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return (0, String::new());
    }
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    addr: SocketAddr,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// The API's `data`, or the error it answered.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.addr, path);
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("{path}: HTTP {status}, not JSON ({e}): {body}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{path}: {} {}", v["errorType"], v["error"]))
        }
    }

    fn query(&self, expr: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/query?query={}", encode(expr)))
    }

    /// The label names of every series a selector matches (empty: none matches).
    fn series_labels(&self, selector: &str) -> Result<Vec<BTreeSet<String>>, String> {
        let data = self.api(&format!("/api/v1/series?match[]={}", encode(selector)))?;
        Ok(data
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_object().unwrap().keys().cloned().collect())
            .collect())
    }
}

/// Checks one query: it evaluates; each selector of our metrics (and `up`) matches series
/// that have the labels it names; each external metric is a known one with those labels; each
/// label a clause uses is on the series of its scope. Returns what is wrong.
fn check_query(prom: &Prometheus, origin: &str, expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = prom.query(expr) {
        problems.push(format!("{origin}: does not evaluate: {e}"));
    }
    let (selectors, groupings) = analyze(expr);
    assert!(!selectors.is_empty(), "{origin}: no metric in {expr}");
    let mut labels_at: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for s in &selectors {
        let known: BTreeSet<String> =
            if let Some((_, labels)) = EXTERNAL.iter().find(|(name, _)| *name == s.metric) {
                labels
                    .iter()
                    .chain(&["job", "instance"])
                    .map(|l| l.to_string())
                    .collect()
            } else if s.metric.starts_with("apiserver_") || s.metric.starts_with("kube_") {
                problems.push(format!(
                    "{origin}: {} is not a metric the API server or kube-state-metrics exports \
                 (EXTERNAL in tests/monitoring.rs)",
                    s.metric
                ));
                continue;
            } else {
                match prom.series_labels(&s.text) {
                    Err(e) => {
                        problems.push(format!("{origin}: {e}"));
                        continue;
                    }
                    Ok(series) if series.is_empty() => {
                        problems.push(format!(
                            "{origin}: no series matches {} (a metric, label or value that \
                         serve does not export)",
                            s.text
                        ));
                        continue;
                    }
                    Ok(series) => series.into_iter().flatten().collect(),
                }
            };
        for label in &s.labels {
            if !known.contains(label) {
                problems.push(format!("{origin}: {} has no label {label}", s.metric));
            }
        }
        labels_at.insert(s.at, known);
    }
    for g in &groupings {
        let in_scope: BTreeSet<&String> = labels_at
            .range(g.scope.clone())
            .flat_map(|(_, labels)| labels)
            .collect();
        if in_scope.is_empty() {
            continue;
        }
        for label in &g.labels {
            if !in_scope.contains(label) {
                problems.push(format!(
                    "{origin}: `{} ({label})` but no series it applies to has label {label}",
                    g.clause
                ));
            }
        }
    }
    problems
}

/// Grafana's variables, as a dashboard user would have them set.
fn substitute(query: &str) -> String {
    query
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$namespace", TARGET_LABELS[0].1)
        .replace("$pod", ".*")
}

/// Every query of the dashboard: (where, PromQL). A variable's `label_values(SELECTOR,
/// LABEL)` becomes `count by (LABEL) (SELECTOR)`, which needs the same.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                format!("dashboard panel {:?}", panel["title"].as_str().unwrap()),
                substitute(target["expr"].as_str().expect("expr")),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {query}: only label_values(...)"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        queries.push((
            format!("dashboard variable {}", variable["name"]),
            substitute(&format!("count by ({}) ({selector})", label.trim())),
        ));
    }
    queries
}

/// POSTs every case's objects to /mutate, /validate and /validate/warn over TLS, so that the
/// request counters and the latency histogram have series, and some violations counted.
fn send_traffic(addr: SocketAddr, ca: &support::server::Ca) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut http = support::server::Http::tls(addr, ca.client_config(&[b"http/1.1"])).await;
        let mut n = 0;
        for entry in std::fs::read_dir(support::server::CASES).unwrap() {
            let path = entry.unwrap().path();
            for doc in kubevirt_net_webhook::manifests::read_path(&path).unwrap() {
                if doc.kind() == "NetworkAttachmentDefinition" {
                    continue;
                }
                for endpoint in ["/mutate", "/validate", "/validate/warn"] {
                    n += 1;
                    let review = support::fixtures::admission_review(
                        "admission.k8s.io/v1",
                        &format!("uid-{n}"),
                        "CREATE",
                        Some(&doc.value),
                        None,
                        false,
                    );
                    let (status, answer) = http.post_json(endpoint, &review).await;
                    assert_eq!(status, 200, "{endpoint} {}: {answer}", path.display());
                }
            }
        }
        assert!(n > 0);
    });
}

#[test]
fn a_real_prometheus_finds_every_metric_and_label_the_alerts_and_dashboard_use() {
    let prometheus_bin = tool("prometheus", "PROMETHEUS");
    let (rule, dashboard) = rendered();

    // serve, as the other process tests run it: certificates from a test CA, files-only caches.
    let serve_dir = tempfile::Builder::new()
        .prefix("knw-monitoring-serve-")
        .tempdir()
        .unwrap();
    let ca = support::server::Ca::new();
    let (crt, key) = ca.leaf().write_to(serve_dir.path());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut serve = Command::new(BIN);
    serve
        .arg("serve")
        .arg("--tls-cert")
        .arg(&crt)
        .arg("--tls-key")
        .arg(&key)
        .arg(format!("--listen={addr}"))
        .arg(format!("--admin-listen={admin}"))
        .args([
            "--nads",
            support::server::CASES,
            "--vms",
            support::server::CASES,
        ])
        .args(["--shutdown-delay", "0s", "--log-format", "plain"])
        .env("RUST_LOG", "warn");
    let mut serve = Process::spawn("serve", serve, serve_dir.path(), "serve.log");
    let until = Instant::now() + Duration::from_secs(30);
    while http_get(admin, "/readyz").0 != 200 {
        serve.assert_alive();
        assert!(Instant::now() < until, "serve not ready after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    send_traffic(addr, &ca);

    // Prometheus with its own data directory on a free port, scraping the admin port every
    // second and evaluating the rules every second.
    let dir = tempfile::Builder::new()
        .prefix("knw-prometheus-")
        .tempdir()
        .unwrap();
    write_rules(&rule, dir.path());
    let labels: String = TARGET_LABELS
        .iter()
        .map(|(k, v)| format!("          {k}: {v}\n"))
        .collect();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {RULES_FILE}\n\
             scrape_configs:\n  - job_name: {JOB}\n{}    static_configs:\n      - targets: ['{admin}']\n        labels:\n{labels}",
            relabel_configs(&rendered_monitor())
        ),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(&prometheus_bin);
    command
        .current_dir(dir.path())
        .arg("--config.file=prometheus.yml")
        .arg("--storage.tsdb.path=data")
        .arg(format!("--web.listen-address={web}"));
    let process = Process::spawn("prometheus", command, dir.path(), "prometheus.log");
    let mut prom = Prometheus {
        addr: web,
        process,
        _dir: dir,
    };

    // Wait for a scrape after the traffic, and for every rule to have been evaluated.
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let rules = loop {
        prom.process.assert_alive();
        assert!(
            Instant::now() < until,
            "Prometheus did not scrape serve and evaluate the rules within 60 s ({last}):\n{}",
            tail(&prom.process.log, 30)
        );
        std::thread::sleep(Duration::from_millis(500));
        let scraped = prom
            .query(&format!(
                "kubevirt_net_webhook_requests_total{{job=\"{JOB}\"}}"
            ))
            .is_ok_and(|d| d["result"].as_array().is_some_and(|r| !r.is_empty()));
        let Ok(rules) = prom.api("/api/v1/rules") else {
            continue;
        };
        let all: Vec<Value> = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        let evaluated = !all.is_empty()
            && all.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
        last = format!(
            "scraped: {scraped}, targets: {:?}",
            prom.api("/api/v1/targets")
        );
        if scraped && evaluated {
            break all;
        }
    };

    // Prometheus loaded every rule, and each evaluates without error.
    let mut names: Vec<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let mut wanted: Vec<String> = alerts(&rule).into_iter().map(|(n, ..)| n).collect();
    names.sort();
    wanted.sort();
    assert_eq!(names, wanted, "the rules Prometheus loaded");
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "{}: health {} {}",
            r["name"], r["health"], r["lastError"]
        );
    }

    // No target label collides with a label of the webhook's metrics (Prometheus would
    // rename the metric's to exported_NAME, and queries would group by the target's).
    let collided: BTreeSet<String> = prom
        .series_labels(&format!("{{job=\"{JOB}\"}}"))
        .unwrap()
        .into_iter()
        .flatten()
        .filter(|l| l.starts_with("exported_"))
        .collect();
    assert!(
        collided.is_empty(),
        "target labels hide the metrics' own labels: {collided:?} (relabel the target's away \
         in the ServiceMonitor)"
    );

    // Every metric and label of every alert and dashboard query.
    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, _, expr) in alerts(&rule) {
        problems.extend(check_query(&prom, &format!("alert {name}"), &expr));
        checked += 1;
    }
    for (origin, query) in dashboard_queries(&dashboard) {
        problems.extend(check_query(&prom, &origin, &query));
        checked += 1;
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("{checked} queries checked against Prometheus");

    // A healthy server trips no alert. A rule evaluated before the first scrape may have
    // one pending (no target up yet); it clears at the next evaluation (every second), so
    // only an alert still there after 15 s is one a healthy serve trips.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let firing = prom.api("/api/v1/alerts").unwrap();
        if firing["alerts"].as_array().map(Vec::len) == Some(0) {
            break;
        }
        assert!(
            Instant::now() < until,
            "alerts on a healthy serve: {firing}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // And the check does catch a renamed metric, label or label value.
    for (renamed, what) in [
        (
            "max by (namespace, kind) (kubevirt_net_webhook_conflict) > 0",
            "kubevirt_net_webhook_conflict",
        ),
        (
            "max by (namespace, knd) (kubevirt_net_webhook_conflicts) > 0",
            "knd",
        ),
        (
            "min by (pod) (kubevirt_net_webhook_cache_ready{kind=\"vms\"}) < 1",
            "kind=\"vms\"",
        ),
        (
            "sum(rate(apiserver_admission_webhook_rejections_total[5m]))",
            "apiserver_admission_webhook_rejections_total",
        ),
    ] {
        let found = check_query(&prom, "renamed", renamed);
        assert!(
            found.iter().any(|p| p.contains(what)),
            "renaming {what} went unnoticed: {found:?}"
        );
    }
    drop(serve);
}

#[test]
fn the_promql_reader_finds_selectors_and_clauses() {
    let (selectors, groupings) = analyze(
        "sum by (name, rejection_code) (rate(a_total{name=~\"x\\\\.y\", error_type=\"e\"}[5m]))\n\
         / on (name) group_left ()\nsum without (le) (rate(b_bucket[1d] offset 30m)) > 3 * (c or vector(0))",
    );
    let found: Vec<(&str, &str, Vec<&str>)> = selectors
        .iter()
        .map(|s| {
            (
                s.metric.as_str(),
                s.text.as_str(),
                s.labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "a_total",
                "a_total{name=~\"x\\\\.y\", error_type=\"e\"}",
                vec!["name", "error_type"]
            ),
            ("b_bucket", "b_bucket", vec![]),
            ("c", "c", vec![]),
        ]
    );
    let clauses: Vec<(&str, Vec<&str>)> = groupings
        .iter()
        .map(|g| {
            (
                g.clause.as_str(),
                g.labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        clauses,
        [
            ("by", vec!["name", "rejection_code"]),
            ("on", vec!["name"]),
            ("group_left", vec![]),
            ("without", vec!["le"]),
        ]
    );
    // `by`'s scope holds a_total only; `without`'s b_bucket only.
    assert!(groupings[0].scope.contains(&selectors[0].at));
    assert!(!groupings[0].scope.contains(&selectors[1].at));
    assert!(groupings[3].scope.contains(&selectors[1].at));
    assert!(!groupings[3].scope.contains(&selectors[2].at));
}
