//! Prometheus metrics of the server (SPEC §3), prefix `kubevirt_net_webhook_`.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use std::sync::{OnceLock, atomic::AtomicU64};

use crate::admission::{Action, Endpoint};
use crate::engine::Rule;
use crate::inventory::ConflictCounts;

/// Labels of `requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub operation: &'static str,
    pub allowed: &'static str,
    pub dry_run: &'static str,
}

/// Labels of `request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

/// Labels of `violations_total` (SPEC §2.11): the rule id, and `deny`, `warn` or `ratchet`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: &'static str,
    pub action: &'static str,
}

/// Labels of the cache gauges: `nad` or `vm`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Labels of the connection metrics: `webhook` (HTTPS) or `admin`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: &'static str,
}

/// Labels of `connections_closed_total`: why the server closed a connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub port: &'static str,
    /// One of [`CLOSE_REASONS`].
    pub reason: &'static str,
}

/// The `reason` label values of `connections_closed_total`: no first request in time, no
/// headers of a later HTTP/1.1 request in time, idle keep-alive, evicted at the connection
/// limit, TLS handshake failed.
pub const CLOSE_REASONS: [&str; 5] = [
    "first_request_timeout",
    "header_timeout",
    "idle_timeout",
    "evicted",
    "tls_error",
];

/// Labels of `certificate_reloads_total`: `success` or `error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

/// All metrics; cheap handles, shared by the tasks that update them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: HistogramFamily,
    pub in_flight: Gauge,
    pub cache_objects: Family<KindLabels, Gauge>,
    pub cache_ready: Family<KindLabels, Gauge>,
    pub cache_list_seconds: Family<KindLabels, Gauge<f64, AtomicU64>>,
    pub cache_list_fallbacks: Family<KindLabels, Counter>,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    pub certificate_expiry: Gauge,
    pub conflicts: Family<KindLabels, Gauge>,
    pub shed: Family<EndpointLabels, Counter>,
    pub decision_timeouts: Family<EndpointLabels, Counter>,
    pub connections_open: Family<PortLabels, Gauge>,
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub connection_limit_reached: Family<PortLabels, Counter>,
    pub violations: Family<ViolationLabels, Counter>,
    answered: Answered,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s: the engine answers in microseconds, the apiserver gives up at seconds.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The values of the operation label, in [`operation_slot`]'s order: the client chooses the
/// string, so only known values are kept.
const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "other"];

fn operation_slot(operation: &str) -> usize {
    let known = &OPERATIONS[..OPERATIONS.len() - 1];
    known
        .iter()
        .position(|o| *o == operation)
        .unwrap_or(known.len())
}

fn bool_label(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Where a violation's counter is in [`Answered::violations`]: rule, then action, by their
/// places in `Rule::ALL` and `Action::ALL` (declaration order, which a test holds).
fn violation_slot(rule: Rule, action: Action) -> usize {
    rule as usize * Action::ALL.len() + action as usize
}

/// The series an answered AdmissionReview updates, each looked up in its family once and
/// then kept: a family's lookup hashes the labels and takes the family's lock, shared by
/// every thread that answers, on every request otherwise. Request series are looked up the
/// first time they are used, so that `/metrics` lists them from their first request on, as
/// the families alone did.
#[derive(Debug)]
struct Answered {
    /// By endpoint, operation, allowed, dry run ([`Answered::request_slot`]).
    requests: Box<[OnceLock<Counter>]>,
    /// By endpoint.
    duration: [OnceLock<Histogram>; Endpoint::ALL.len()],
    /// Every violation's counter, in [`violation_slot`]'s order; the family has all of them
    /// from the start.
    violations: Box<[Counter]>,
}

impl Answered {
    fn new(violations: &Family<ViolationLabels, Counter>) -> Self {
        let slots = Endpoint::ALL.len() * OPERATIONS.len() * 4;
        Self {
            requests: (0..slots).map(|_| OnceLock::new()).collect(),
            duration: Default::default(),
            violations: Rule::ALL
                .iter()
                .flat_map(|rule| {
                    Action::ALL.iter().map(|action| {
                        violations.get_or_create_owned(&ViolationLabels {
                            rule: rule.id(),
                            action: action.as_str(),
                        })
                    })
                })
                .collect(),
        }
    }

    fn request_slot(endpoint: Endpoint, operation: usize, allowed: bool, dry_run: bool) -> usize {
        ((endpoint as usize * OPERATIONS.len() + operation) * 2 + usize::from(allowed)) * 2
            + usize::from(dry_run)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubevirt_net_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "AdmissionReviews answered", requests.clone());
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time to answer an AdmissionReview, from body received to response built",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "AdmissionReviews being answered",
            in_flight.clone(),
        );
        let cache_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "cache_objects",
            "Objects in the cache (vm: VMs with at least one Multus NIC)",
            cache_objects.clone(),
        );
        let cache_ready = Family::<KindLabels, Gauge>::default();
        registry.register(
            "cache_ready",
            "1 once the cache has had its initial list",
            cache_ready.clone(),
        );
        let cache_list_seconds = Family::<KindLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "cache_list_seconds",
            "How long the cache's last full list took (the initial one: time to ready)",
            cache_list_seconds.clone(),
        );
        let cache_list_fallbacks = Family::<KindLabels, Counter>::default();
        registry.register(
            "cache_list_fallbacks",
            "Times the API server refused a list from its watch cache and the cache fell back \
             to pages from etcd (for good)",
            cache_list_fallbacks.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Attempts to load a changed serving certificate",
            certificate_reloads.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in Unix seconds",
            certificate_expiry.clone(),
        );
        let conflicts = Family::<KindLabels, Gauge>::default();
        registry.register(
            "conflicts",
            "MACs (kind=mac) and addresses (kind=address) held by more than one cached VM on one NAD",
            conflicts.clone(),
        );
        let shed = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "shed",
            "AdmissionReviews refused with 503 because too many were pending (--max-pending-mib) \
             or no decision slot freed up before --decision-timeout",
            shed.clone(),
        );
        let decision_timeouts = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "decision_timeouts",
            "AdmissionReviews answered allowed=false (code 504) because the decision took longer \
             than --decision-timeout",
            decision_timeouts.clone(),
        );
        let connections_open = Family::<PortLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Open client connections",
            connections_open.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the server closed: no request in time, idle, evicted at the limit, TLS error",
            connections_closed.clone(),
        );
        let connection_limit_reached = Family::<PortLabels, Counter>::default();
        registry.register(
            "connection_limit_reached",
            "Times a port was at --max-connections when a connection was waiting to be accepted",
            connection_limit_reached.clone(),
        );
        let violations = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "violations",
            "Violations found by /validate, by rule id and what became of them: deny, warn \
             (enforcement: warn) or ratchet (the stored object had it too)",
            violations.clone(),
        );
        // Every series from the start, so that rate() and alerts see a rise from zero.
        let answered = Answered::new(&violations);
        for port in ["webhook", "admin"] {
            connections_open.get_or_create(&PortLabels { port }).set(0);
            connection_limit_reached
                .get_or_create(&PortLabels { port })
                .inc_by(0);
            for reason in CLOSE_REASONS {
                connections_closed
                    .get_or_create(&ClosedLabels { port, reason })
                    .inc_by(0);
            }
        }
        for result in ["success", "error"] {
            certificate_reloads
                .get_or_create(&ResultLabels { result })
                .inc_by(0);
        }
        for endpoint in Endpoint::ALL.map(Endpoint::as_str) {
            shed.get_or_create(&EndpointLabels { endpoint }).inc_by(0);
            decision_timeouts
                .get_or_create(&EndpointLabels { endpoint })
                .inc_by(0);
        }
        for kind in ["nad", "vm", "vmi"] {
            cache_ready.get_or_create(&KindLabels { kind }).set(0);
            cache_objects.get_or_create(&KindLabels { kind }).set(0);
        }
        for kind in ["mac", "address"] {
            conflicts.get_or_create(&KindLabels { kind }).set(0);
        }
        Self {
            registry,
            requests,
            duration,
            in_flight,
            cache_objects,
            cache_ready,
            cache_list_seconds,
            cache_list_fallbacks,
            certificate_reloads,
            certificate_expiry,
            conflicts,
            shed,
            decision_timeouts,
            connections_open,
            connections_closed,
            connection_limit_reached,
            violations,
            answered,
        }
    }

    /// Counts the violations of one answer.
    pub fn observe_violations(&self, found: &[(Rule, Action)]) {
        for &(rule, action) in found {
            self.answered.violations[violation_slot(rule, action)].inc();
        }
    }

    /// Counts one answered AdmissionReview.
    pub fn observe_request(
        &self,
        endpoint: Endpoint,
        operation: &str,
        allowed: bool,
        dry_run: bool,
        seconds: f64,
    ) {
        let operation = operation_slot(operation);
        let slot = Answered::request_slot(endpoint, operation, allowed, dry_run);
        self.answered.requests[slot]
            .get_or_init(|| {
                self.requests.get_or_create_owned(&RequestLabels {
                    endpoint: endpoint.as_str(),
                    operation: OPERATIONS[operation],
                    allowed: bool_label(allowed),
                    dry_run: bool_label(dry_run),
                })
            })
            .inc();
        self.answered.duration[endpoint as usize]
            .get_or_init(|| {
                self.duration.get_or_create_owned(&EndpointLabels {
                    endpoint: endpoint.as_str(),
                })
            })
            .observe(seconds);
    }

    pub fn set_cache(&self, kind: &'static str, objects: usize, ready: bool) {
        self.cache_objects
            .get_or_create(&KindLabels { kind })
            .set(objects as i64);
        self.cache_ready
            .get_or_create(&KindLabels { kind })
            .set(i64::from(ready));
    }

    /// A cache's full list took `seconds`.
    pub fn set_list_seconds(&self, kind: &'static str, seconds: f64) {
        self.cache_list_seconds
            .get_or_create(&KindLabels { kind })
            .set(seconds);
    }

    /// A cache fell back from snapshots to pages.
    pub fn list_fell_back(&self, kind: &'static str) {
        self.cache_list_fallbacks
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// `conflicts{kind="mac"|"address"}`, as computed over the cache.
    pub fn set_conflicts(&self, counts: ConflictCounts) {
        for (kind, n) in [("mac", counts.macs), ("address", counts.addresses)] {
            self.conflicts
                .get_or_create(&KindLabels { kind })
                .set(n as i64);
        }
    }

    pub fn certificate_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.certificate_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a connection the server closed, by port and reason.
    pub fn connection_closed(&self, port: &'static str, reason: &'static str) {
        debug_assert!(
            CLOSE_REASONS.contains(&reason),
            "{reason}: add it to CLOSE_REASONS, so that its series exists from the start"
        );
        self.connections_closed
            .get_or_create(&ClosedLabels { port, reason })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }

    /// Counts a request in flight until the guard is dropped (also on cancellation).
    pub fn in_flight_guard(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }
}

/// Decrements `requests_in_flight` when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_labels() {
        let m = Metrics::new();
        m.observe_request(Endpoint::Mutate, "CREATE", true, false, 0.001);
        m.observe_request(Endpoint::Mutate, "bogus-op", false, true, 0.001);
        m.certificate_reload(true);
        m.certificate_expiry.set(1_900_000_000);
        let text = m.encode();
        assert!(
            text.contains("kubevirt_net_webhook_conflicts{kind=\"address\"} 0"),
            "{text}"
        );
        m.set_conflicts(ConflictCounts {
            macs: 2,
            addresses: 1,
        });
        let text = m.encode();
        for needle in [
            "kubevirt_net_webhook_requests_total{endpoint=\"mutate\",operation=\"CREATE\",allowed=\"true\",dry_run=\"false\"} 1",
            "operation=\"other\",allowed=\"false\",dry_run=\"true\"} 1",
            "kubevirt_net_webhook_request_duration_seconds_bucket{le=\"0.0005\",endpoint=\"mutate\"}",
            "kubevirt_net_webhook_requests_in_flight 0",
            "kubevirt_net_webhook_cache_ready{kind=\"vm\"} 0",
            "kubevirt_net_webhook_certificate_reloads_total{result=\"success\"} 1",
            "kubevirt_net_webhook_certificate_expiry_timestamp_seconds 1900000000",
            "kubevirt_net_webhook_conflicts{kind=\"mac\"} 2",
            "kubevirt_net_webhook_conflicts{kind=\"address\"} 1",
            "kubevirt_net_webhook_shed_total{endpoint=\"validate\"} 0",
            "kubevirt_net_webhook_decision_timeouts_total{endpoint=\"mutate\"} 0",
            "kubevirt_net_webhook_connections_open{port=\"admin\"} 0",
            "kubevirt_net_webhook_connection_limit_reached_total{port=\"webhook\"} 0",
            "kubevirt_net_webhook_connections_closed_total{port=\"admin\",reason=\"tls_error\"} 0",
            "kubevirt_net_webhook_certificate_reloads_total{result=\"error\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
    }

    /// Every answer counts in the series of its own labels: each combination is observed a
    /// number of times of its own, so two combinations sharing a slot, or a slot holding
    /// another's series, would show in the counts.
    #[test]
    fn each_answer_counts_in_its_own_series() {
        let combinations = || {
            Endpoint::ALL.into_iter().flat_map(|endpoint| {
                OPERATIONS.into_iter().flat_map(move |operation| {
                    [false, true].into_iter().flat_map(move |allowed| {
                        [false, true].map(move |dry_run| (endpoint, operation, allowed, dry_run))
                    })
                })
            })
        };
        let m = Metrics::new();
        for (times, (endpoint, operation, allowed, dry_run)) in (1..).zip(combinations()) {
            for _ in 0..times {
                m.observe_request(endpoint, operation, allowed, dry_run, 0.001);
            }
        }
        let text = m.encode();
        for (times, (endpoint, operation, allowed, dry_run)) in (1..).zip(combinations()) {
            let line = format!(
                "kubevirt_net_webhook_requests_total{{endpoint=\"{}\",operation=\"{operation}\",\
                 allowed=\"{allowed}\",dry_run=\"{dry_run}\"}} {times}\n",
                endpoint.as_str()
            );
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
        // 20 combinations per endpoint, observed 1 + 2 + … times in turn.
        for (i, endpoint) in Endpoint::ALL.into_iter().enumerate() {
            let count: usize = (i * 20 + 1..=i * 20 + 20).sum();
            let line = format!(
                "kubevirt_net_webhook_request_duration_seconds_count{{endpoint=\"{}\"}} {count}\n",
                endpoint.as_str()
            );
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
    }

    /// The same for violations, whose counters are kept by rule and action.
    #[test]
    fn each_violation_counts_in_its_own_series() {
        let m = Metrics::new();
        let pairs = || {
            Rule::ALL
                .into_iter()
                .flat_map(|rule| Action::ALL.map(move |action| (rule, action)))
        };
        for (times, pair) in (1..).zip(pairs()) {
            m.observe_violations(&vec![pair; times]);
        }
        let text = m.encode();
        for (times, (rule, action)) in (1..).zip(pairs()) {
            let line = format!(
                "kubevirt_net_webhook_violations_total{{rule=\"{}\",action=\"{}\"}} {times}\n",
                rule.id(),
                action.as_str()
            );
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
    }
}
