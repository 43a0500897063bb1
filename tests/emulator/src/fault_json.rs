//! The JSON form of a fault (admin API, ready line, seed of faults) and its checks.

use crate::counts::Operation;
use crate::faults::{Fault, FaultKind};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The JSON form of a fault, e.g.
/// `{"kind":"status","status":503,"operation":"get_secret","times":2}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    /// `status`, `reset`, `latency`, `challenge` or `oversized`.
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fraction: Option<f64>,
}

impl TryFrom<FaultSpec> for Fault {
    type Error = String;

    fn try_from(spec: FaultSpec) -> Result<Fault, String> {
        let kind = match spec.kind.as_str() {
            "status" => FaultKind::Status {
                status: spec
                    .status
                    .ok_or("a status fault needs \"status\" (e.g. 503)")?,
                retry_after: spec.retry_after,
                retry_after_ms: spec.retry_after_ms,
            },
            "reset" => FaultKind::Reset,
            "latency" => FaultKind::Latency(Duration::from_millis(
                spec.millis.ok_or("a latency fault needs \"millis\"")?,
            )),
            "challenge" => FaultKind::Challenge {
                resource: spec
                    .resource
                    .ok_or("a challenge fault needs \"resource\" (e.g. https://management.azure.com)")?,
            },
            "oversized" => FaultKind::Oversized {
                bytes: spec.bytes.ok_or("an oversized fault needs \"bytes\"")?,
            },
            other => {
                return Err(format!(
                    "unknown fault kind {other:?}; expected status, reset, latency, challenge or oversized"
                ))
            }
        };
        let operation = match spec.operation.as_deref() {
            None => None,
            Some(name) => Some(
                Operation::from_name(name).ok_or_else(|| format!("unknown operation {name:?}"))?,
            ),
        };
        let fault = Fault {
            kind,
            operation,
            times: spec.times,
            fraction: spec.fraction,
        };
        fault.validate()?;
        Ok(fault)
    }
}

impl From<Fault> for FaultSpec {
    fn from(f: Fault) -> FaultSpec {
        let mut spec = FaultSpec {
            kind: String::new(),
            status: None,
            retry_after: None,
            retry_after_ms: None,
            millis: None,
            resource: None,
            bytes: None,
            operation: f.operation.map(|op| op.name().to_string()),
            times: f.times,
            fraction: f.fraction,
        };
        match f.kind {
            FaultKind::Status {
                status,
                retry_after,
                retry_after_ms,
            } => {
                spec.kind = "status".into();
                spec.status = Some(status);
                spec.retry_after = retry_after;
                spec.retry_after_ms = retry_after_ms;
            }
            FaultKind::Reset => spec.kind = "reset".into(),
            FaultKind::Latency(d) => {
                spec.kind = "latency".into();
                spec.millis = Some(d.as_millis() as u64);
            }
            FaultKind::Challenge { resource } => {
                spec.kind = "challenge".into();
                spec.resource = Some(resource);
            }
            FaultKind::Oversized { bytes } => {
                spec.kind = "oversized".into();
                spec.bytes = Some(bytes);
            }
        }
        spec
    }
}
