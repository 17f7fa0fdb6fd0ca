//! Keeps the admission decision off the async workers and bounds what requests can cost.
//!
//! The decision (`admission::parse` + `answer`) is synchronous CPU work. It runs on tokio's
//! blocking pool, so a slow one never stalls the workers that serve probes, metrics and other
//! connections. Three limits apply:
//!
//! - **Pending budget** (`--max-pending-mib`): before its body is read, each AdmissionReview
//!   reserves its `Content-Length` (at least [`MIN_CHARGE`], [`super::BODY_LIMIT`] when
//!   unknown) until it is answered. When the budget is spent the request is shed: HTTP 503
//!   with `Retry-After: 1`, without reading the body. This bounds the memory held by bodies.
//! - **Decision slots** (`--max-concurrent-decisions`): decisions running at once, so the
//!   memory of parsed objects and the threads in use stay bounded. A request that finds no
//!   free slot before its deadline is shed like above.
//! - **Deadline** (`--decision-timeout`, counted from the body's arrival): a decision still
//!   running then is answered at once with HTTP 200, `allowed: false` and status code 504,
//!   echoing the uid. The decision itself cannot be interrupted (it is synchronous); it keeps
//!   its slot until it returns, so slow decisions cannot pile up beyond the slots. A decision
//!   whose client went away before it started is skipped.
//!
//! Why these answers: kube-apiserver calls webhooks with client-go's REST client, which
//! retries a 5xx carrying `Retry-After` within the webhook's `timeoutSeconds`, so a shed
//! request gets another chance a second later (often on another replica) instead of failing
//! the user's request at once. A deadline answer is an AdmissionReview denial because that is
//! what the API server relays verbatim ("admission webhook ... denied the request: ...",
//! code 504), whereas a bare 5xx becomes an opaque "failed calling webhook" and would be
//! retried although the same object would be just as slow again.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::warn;

use super::{BODY_LIMIT, logfmt::Escaped, metrics::Metrics};
use crate::admission::Endpoint;

/// The smallest reservation, so that the budget also bounds the number of pending requests.
pub const MIN_CHARGE: usize = 16 * 1024;

/// Test seam: decisions for uids starting with `uid_prefix` block their thread `delay`
/// longer, as a pathologically slow engine would; each such uid is sent to `started` when
/// its decision begins.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct SlowDecisions {
    pub uid_prefix: String,
    pub delay: Duration,
    pub started: tokio::sync::mpsc::UnboundedSender<String>,
}

/// The limits of [`Gate`].
#[derive(Debug, Clone)]
pub struct GateLimits {
    pub pending_bytes: usize,
    pub concurrent_decisions: usize,
    pub decision_timeout: Duration,
    pub slow: Option<SlowDecisions>,
}

/// Admission control for AdmissionReview requests; see the module documentation.
#[derive(Debug)]
pub struct Gate {
    /// In KiB, so that a 7 MiB body fits a `u32` permit count.
    budget: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    slow: Option<SlowDecisions>,
    metrics: Arc<Metrics>,
}

/// Budget held by one request until its decision has returned.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

/// Enough of an AdmissionReview to answer it without deciding: read in one pass over the body
/// that allocates only these strings.
#[derive(Debug, Clone, Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: HeadRequest,
}

#[derive(Debug, Clone, Deserialize)]
struct HeadRequest {
    uid: String,
}

impl Head {
    fn peek(body: &[u8]) -> Option<Self> {
        let head: Head = serde_json::from_slice(body).ok()?;
        let known = matches!(
            head.api_version.as_str(),
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        );
        (known && head.kind == "AdmissionReview").then_some(head)
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Gate {
    pub fn new(limits: &GateLimits, metrics: Arc<Metrics>) -> Self {
        let budget = kib(limits.pending_bytes.max(BODY_LIMIT)) as usize;
        Self {
            budget: Arc::new(Semaphore::new(budget)),
            slots: Arc::new(Semaphore::new(limits.concurrent_decisions.max(1))),
            timeout: limits.decision_timeout,
            slow: limits.slow.clone(),
            metrics,
        }
    }

    /// Reserves budget for a request with these headers, or `None` when it must be shed.
    pub fn reserve(&self, headers: &HeaderMap) -> Option<Reservation> {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(BODY_LIMIT);
        let charge = kib(length.clamp(MIN_CHARGE, BODY_LIMIT));
        self.budget
            .clone()
            .try_acquire_many_owned(charge)
            .ok()
            .map(Reservation)
    }

    /// 503 with `Retry-After`, counted in `shed_total`.
    pub fn shed(&self, endpoint: Endpoint, why: &'static str) -> Response {
        self.metrics
            .shed
            .get_or_create(&super::metrics::EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .inc();
        warn!(
            endpoint = endpoint.as_str(),
            reason = why,
            "overloaded: shedding request"
        );
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("kubevirt-net-webhook is overloaded ({why}); retry\n"),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }

    /// Runs `decide` on the blocking pool within the deadline; see the module documentation.
    pub async fn decide<F>(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        reservation: Reservation,
        decide: F,
    ) -> Response
    where
        F: FnOnce(&[u8]) -> Response + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout;
        let slot = match tokio::time::timeout_at(
            deadline.into(),
            self.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(slot)) => slot,
            _ => return self.shed(endpoint, "no decision slot before the deadline"),
        };
        let (head_tx, head_rx) = oneshot::channel();
        let slow = self.slow.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _held = (reservation, slot);
            let head = Head::peek(&body);
            let slow = slow
                .zip(head.as_ref())
                .filter(|(s, h)| h.request.uid.starts_with(&s.uid_prefix))
                .map(|(s, h)| (s, h.request.uid.clone()));
            // The handler is gone (client disconnected) or past its deadline: skip.
            if head_tx.send(head).is_err() || Instant::now() >= deadline {
                return None;
            }
            if let Some((slow, uid)) = slow {
                let _ = slow.started.send(uid);
                std::thread::sleep(slow.delay);
            }
            Some(decide(&body))
        });
        let mut head_rx = head_rx;
        match tokio::time::timeout_at(deadline.into(), job).await {
            Ok(Ok(Some(response))) => response,
            Ok(Err(e)) => {
                // A panic in the decision: the request fails, the server goes on.
                warn!(endpoint = endpoint.as_str(), error = %e, "decision failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "decision failed\n").into_response()
            }
            // Past the deadline, running or not started: the uid, if read by now, is here.
            Ok(Ok(None)) | Err(_) => {
                let head = head_rx.try_recv().ok().flatten();
                self.timed_out(endpoint, head)
            }
        }
    }

    fn timed_out(&self, endpoint: Endpoint, head: Option<Head>) -> Response {
        self.metrics
            .decision_timeouts
            .get_or_create(&super::metrics::EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .inc();
        let message = format!(
            "kubevirt-net-webhook could not decide within {}ms; try again",
            self.timeout.as_millis()
        );
        match head {
            Some(head) => {
                warn!(
                    endpoint = endpoint.as_str(),
                    uid = %Escaped(&head.request.uid),
                    timeout_ms = self.timeout.as_millis() as u64,
                    "decision deadline exceeded; answered allowed=false"
                );
                axum::Json(json!({
                    "apiVersion": head.api_version,
                    "kind": "AdmissionReview",
                    "response": {
                        "uid": head.request.uid,
                        "allowed": false,
                        "status": {"code": 504, "reason": "Timeout", "message": message},
                    }
                }))
                .into_response()
            }
            // Not an AdmissionReview we could answer (or the machine is starved).
            None => {
                warn!(
                    endpoint = endpoint.as_str(),
                    "decision deadline exceeded before the uid was read"
                );
                (StatusCode::GATEWAY_TIMEOUT, format!("{message}\n")).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_read_without_decoding_the_objects() {
        let body = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1",
            "request":{"object":{"deep":[[[[1]]]]},"uid":"u-1\n"}}"#;
        let head = Head::peek(body).unwrap();
        assert_eq!(head.request.uid, "u-1\n");
        assert_eq!(head.api_version, "admission.k8s.io/v1beta1");
        assert!(
            Head::peek(br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"x"}}"#)
                .is_none()
        );
        assert!(Head::peek(b"{not json").is_none());
    }

    #[test]
    fn reservations_are_charged_by_content_length() {
        let gate = Gate::new(
            &GateLimits {
                pending_bytes: 8 << 20,
                concurrent_decisions: 1,
                decision_timeout: Duration::from_secs(1),
                slow: None,
            },
            Arc::default(),
        );
        let mut big = HeaderMap::new();
        big.insert(header::CONTENT_LENGTH, HeaderValue::from(7usize << 20));
        let held = gate.reserve(&big).expect("7 MiB fits 8 MiB");
        assert!(
            gate.reserve(&HeaderMap::new()).is_none(),
            "unknown length = 7 MiB"
        );
        let mut small = HeaderMap::new();
        small.insert(header::CONTENT_LENGTH, HeaderValue::from(100usize));
        let smalls: Vec<_> = std::iter::from_fn(|| gate.reserve(&small)).collect();
        assert_eq!(
            smalls.len(),
            (1 << 20) / MIN_CHARGE,
            "each small one costs 16 KiB"
        );
        drop(held);
        assert!(gate.reserve(&big).is_some());
    }
}
