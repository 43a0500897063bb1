//! Fault injection: which faults are active and which one fires on a request.
//!
//! Fault injection: added latency, a chosen HTTP status, a connection closed without an answer,
//! an authentication challenge naming another resource, or an oversized success body, for the
//! next N matching requests or a deterministic fraction of them.
//!
//! Faults are checked in the order they were added. Every latency fault that fires adds its delay
//! and the request goes on; the first status or reset fault that fires answers the request.
//! Vault requests meet faults after authentication (an unauthenticated challenge is never faulted),
//! token and managed identity requests before any validation.
//!
//! A fraction `p` fires deterministically: on the k-th matching request exactly when
//! `floor(k*p) > floor((k-1)*p)`, so 0.5 fires on the 2nd, 4th, 6th ... request.

use crate::counts::Operation;
use crate::fault_json::FaultSpec;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status (and a body in the style of the endpoint that was called).
    Status {
        /// HTTP status code, 100..=599.
        status: u16,
        /// `Retry-After` header value in seconds, if any.
        retry_after: Option<u64>,
        /// `x-ms-retry-after-ms` header value, if any.
        retry_after_ms: Option<u64>,
    },
    /// Close the TCP connection without answering (with a reset, SO_LINGER 0).
    Reset,
    /// Delay the request, then serve it normally.
    Latency(Duration),
    /// Answer 401 with a `WWW-Authenticate` challenge whose `resource` is this URL (what a
    /// hostile host or a compromised path sends to obtain a token for another service).
    Challenge {
        /// The resource named in the challenge, e.g. `https://management.azure.com`.
        resource: String,
    },
    /// Answer 200 with a JSON body of this many bytes: an object whose `value` is padding (an
    /// answer no Key Vault sends; values are at most 25 KB).
    Oversized {
        /// Size of the body in bytes.
        bytes: u64,
    },
}

/// Largest body an [`FaultKind::Oversized`] fault may send.
pub const MAX_OVERSIZED_BYTES: u64 = 256 * 1024 * 1024;

/// A fault to inject. Build one with [`Fault::status`], [`Fault::throttled`], [`Fault::reset`]
/// or [`Fault::latency`], then narrow it with the builder methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FaultSpec", into = "FaultSpec")]
pub struct Fault {
    /// What happens to a request it fires on.
    pub kind: FaultKind,
    /// Only requests of this operation (None: every request except admin calls).
    pub operation: Option<Operation>,
    /// Fire at most this many times, then disappear (None: until cleared).
    pub times: Option<u64>,
    /// Fire on this fraction (0 < p <= 1) of matching requests (None: all of them).
    pub fraction: Option<f64>,
}

impl Fault {
    /// Answer with `status`.
    pub fn status(status: u16) -> Fault {
        Fault::of(FaultKind::Status {
            status,
            retry_after: None,
            retry_after_ms: None,
        })
    }

    /// Answer 429 Throttled, with `Retry-After: secs` when given.
    pub fn throttled(retry_after: Option<u64>) -> Fault {
        Fault::of(FaultKind::Status {
            status: 429,
            retry_after,
            retry_after_ms: None,
        })
    }

    /// Close the connection without answering.
    pub fn reset() -> Fault {
        Fault::of(FaultKind::Reset)
    }

    /// Delay requests by `delay`.
    pub fn latency(delay: Duration) -> Fault {
        Fault::of(FaultKind::Latency(delay))
    }

    /// Answer 401 with a challenge naming `resource` instead of Key Vault.
    pub fn challenge(resource: &str) -> Fault {
        Fault::of(FaultKind::Challenge {
            resource: resource.to_string(),
        })
    }

    /// Answer 200 with a JSON body of `bytes` bytes.
    pub fn oversized(bytes: u64) -> Fault {
        Fault::of(FaultKind::Oversized { bytes })
    }

    fn of(kind: FaultKind) -> Fault {
        Fault {
            kind,
            operation: None,
            times: None,
            fraction: None,
        }
    }

    /// Only for requests of `op`.
    pub fn for_operation(mut self, op: Operation) -> Fault {
        self.operation = Some(op);
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Fault {
        self.times = Some(n);
        self
    }

    /// Only this fraction of matching requests (see the module docs for which ones).
    pub fn fraction(mut self, p: f64) -> Fault {
        self.fraction = Some(p);
        self
    }

    /// Add `Retry-After: secs` to a status fault.
    pub fn retry_after(mut self, secs: u64) -> Fault {
        if let FaultKind::Status { retry_after, .. } = &mut self.kind {
            *retry_after = Some(secs);
        }
        self
    }

    /// Add `x-ms-retry-after-ms: ms` to a status fault.
    pub fn retry_after_ms(mut self, ms: u64) -> Fault {
        if let FaultKind::Status { retry_after_ms, .. } = &mut self.kind {
            *retry_after_ms = Some(ms);
        }
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if let FaultKind::Status { status, .. } = self.kind {
            if !(100..=599).contains(&status) {
                return Err(format!("status {status} is not an HTTP status (100..=599)"));
            }
        }
        if let FaultKind::Challenge { resource } = &self.kind {
            if resource.is_empty() || resource.contains(['"', '\\', '\r', '\n']) {
                return Err(format!(
                    "resource {resource:?} must be non-empty and hold no quote, backslash or line break"
                ));
            }
        }
        if let FaultKind::Oversized { bytes } = self.kind {
            if !(16..=MAX_OVERSIZED_BYTES).contains(&bytes) {
                return Err(format!(
                    "bytes {bytes} must be from 16 to {MAX_OVERSIZED_BYTES}"
                ));
            }
        }
        if let Some(p) = self.fraction {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("fraction {p} must be in (0, 1]"));
            }
        }
        if self.times == Some(0) {
            return Err("times must be at least 1".into());
        }
        Ok(())
    }
}

/// A fault that has been injected, with its bookkeeping.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    /// Identifier returned when the fault was added.
    pub id: u64,
    /// The fault.
    pub fault: Fault,
    /// Matching requests seen so far.
    pub seen: u64,
    /// Times it fired so far.
    pub fired: u64,
}

/// What the injected faults decided for one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// Total added latency.
    pub delay: Duration,
    /// The status or reset fault that answers the request, if any.
    pub answer: Option<FaultKind>,
}

/// The list of active faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    active: Vec<ActiveFault>,
    next_id: u64,
}

impl Faults {
    pub(crate) fn add(&mut self, fault: Fault) -> Result<u64, String> {
        fault.validate()?;
        self.next_id += 1;
        self.active.push(ActiveFault {
            id: self.next_id,
            fault,
            seen: 0,
            fired: 0,
        });
        Ok(self.next_id)
    }

    pub(crate) fn clear(&mut self) {
        self.active.clear();
    }

    pub(crate) fn list(&self) -> Vec<ActiveFault> {
        self.active.clone()
    }

    /// Decides what happens to a request of `op`, updating the faults' bookkeeping.
    pub(crate) fn decide(&mut self, op: Operation) -> Decision {
        let mut decision = Decision::default();
        for af in self.active.iter_mut() {
            if decision.answer.is_some() {
                break;
            }
            if af.fault.operation.is_some_and(|o| o != op) {
                continue;
            }
            af.seen += 1;
            let fires = match af.fault.fraction {
                None => true,
                Some(p) => {
                    let k = af.seen as f64;
                    (k * p).floor() > ((k - 1.0) * p).floor()
                }
            };
            if !fires {
                continue;
            }
            af.fired += 1;
            match &af.fault.kind {
                FaultKind::Latency(d) => decision.delay = decision.delay.saturating_add(*d),
                other => decision.answer = Some(other.clone()),
            }
        }
        self.active
            .retain(|af| af.fault.times.is_none_or(|n| af.fired < n));
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_then_gone() {
        let mut f = Faults::default();
        f.add(Fault::status(503).times(2)).expect("valid");
        assert!(f.decide(Operation::GetSecret).answer.is_some());
        assert!(f.decide(Operation::ListSecrets).answer.is_some());
        assert!(f.decide(Operation::GetSecret).answer.is_none());
        assert!(f.list().is_empty());
    }

    #[test]
    fn operation_filter_and_fraction() {
        let mut f = Faults::default();
        f.add(
            Fault::reset()
                .for_operation(Operation::GetSecret)
                .fraction(0.5),
        )
        .expect("valid");
        let fired: Vec<bool> = (0..6)
            .map(|_| f.decide(Operation::GetSecret).answer.is_some())
            .collect();
        assert_eq!(fired, [false, true, false, true, false, true]);
        assert!(f.decide(Operation::SetSecret).answer.is_none());
    }

    #[test]
    fn latency_adds_up_and_first_answer_wins() {
        let mut f = Faults::default();
        f.add(Fault::latency(Duration::from_millis(5)))
            .expect("valid");
        f.add(Fault::status(500)).expect("valid");
        f.add(Fault::status(503)).expect("valid");
        let d = f.decide(Operation::GetSecret);
        assert_eq!(d.delay, Duration::from_millis(5));
        assert!(matches!(
            d.answer,
            Some(FaultKind::Status { status: 500, .. })
        ));
    }

    #[test]
    fn challenge_and_oversized_json_forms() {
        let f: Fault = serde_json::from_str(
            r#"{"kind":"challenge","resource":"https://management.azure.com","operation":"get_secret"}"#,
        )
        .expect("valid json");
        assert_eq!(
            f,
            Fault::challenge("https://management.azure.com").for_operation(Operation::GetSecret)
        );
        let f: Fault = serde_json::from_str(r#"{"kind":"oversized","bytes":10485760,"times":1}"#)
            .expect("valid json");
        assert_eq!(f, Fault::oversized(10 << 20).times(1));
        let back: Fault =
            serde_json::from_str(&serde_json::to_string(&f).expect("serializes")).expect("parses");
        assert_eq!(back, f);
    }

    #[test]
    fn json_form() {
        let f: Fault = serde_json::from_str(
            r#"{"kind":"status","status":429,"retry_after":3,"operation":"get_secret","times":1}"#,
        )
        .expect("valid json");
        assert_eq!(
            f,
            Fault::throttled(Some(3))
                .for_operation(Operation::GetSecret)
                .times(1)
        );
        let back: Fault =
            serde_json::from_str(&serde_json::to_string(&f).expect("serializes")).expect("parses");
        assert_eq!(back, f);
        for bad in [
            r#"{"kind":"status"}"#,
            r#"{"kind":"boom"}"#,
            r#"{"kind":"reset","fraction":2}"#,
            r#"{"kind":"reset","operation":"nope"}"#,
            r#"{"kind":"reset","extra":1}"#,
            r#"{"kind":"status","status":42}"#,
            r#"{"kind":"challenge"}"#,
            r#"{"kind":"challenge","resource":"a\"b"}"#,
            r#"{"kind":"oversized"}"#,
            r#"{"kind":"oversized","bytes":1}"#,
        ] {
            assert!(serde_json::from_str::<Fault>(bad).is_err(), "{bad}");
        }
    }
}
