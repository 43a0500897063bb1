//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! The algorithm is the one Kubernetes' own controllers use: read the Lease,
//! and take or renew it with a replace that carries the `resourceVersion`
//! just read, so that of two replicas racing for it, one gets 409 Conflict
//! and stays a follower. A Lease held by someone else counts as expired only
//! when it has not changed for `duration` by this replica's own clock (when it
//! was last seen to change), so clock skew between nodes cannot make two
//! leaders. A leader that has not renewed within `renew_deadline` (shorter
//! than `duration`) stops leading at once, before anyone else may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Lease timings.
#[derive(Clone, Debug)]
pub struct LeaseTimings {
    /// How long a Lease stays valid after its last renewal.
    pub duration: Duration,
    /// A leader that could not renew for this long stops leading.
    pub renew_deadline: Duration,
    /// How often the leader renews and followers retry.
    pub retry_period: Duration,
}

/// What tells one Lease write from the next: holder, renew time, transitions.
type LeaseContent = (Option<String>, Option<MicroTime>, Option<i32>);

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    /// The last Lease content seen and when it was first seen.
    observed: Option<(LeaseContent, Instant)>,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (taken or renewed).
    Held,
    /// Someone else holds a Lease that has not expired.
    Other(String),
    /// Another replica wrote the Lease between our read and our write (409).
    Conflict,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timings: LeaseTimings) -> Elector {
        Elector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            observed: None,
        }
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One read-then-write round.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let seen: LeaseContent = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            spec.lease_transitions,
        );
        let now = Instant::now();
        let changed_at = match &self.observed {
            Some((content, at)) if *content == seen => *at,
            _ => now,
        };
        self.observed = Some((seen, changed_at));
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.identity.as_str());
        if let Some(other) = holder.as_ref().filter(|_| !mine) {
            let valid = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            if now.duration_since(changed_at) < valid {
                return Ok(Attempt::Other(other.clone()));
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(if mine {
            self.spec(spec.acquire_time, transitions)
        } else {
            self.spec(None, transitions + 1)
        });
        // The replace carries the resourceVersion read above: a concurrent
        // writer makes it fail with 409 instead of both believing they lead.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown), so that another replica takes over
    /// without waiting for it to expire.
    pub async fn release(&mut self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                let _ = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }

    /// Runs the election until `stop` turns true. `leading` holds the
    /// instant until which this replica may act as leader (`None` while it
    /// is a follower); it is cleared as soon as leadership is lost or could
    /// not be renewed in time, and on stop, before the Lease is given up.
    pub async fn run(
        mut self,
        leading: watch::Sender<Option<Instant>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            // Follower: retry until the Lease is ours.
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Held) => break,
                    Ok(Attempt::Other(holder)) => {
                        tracing::debug!(lease = %self.name, %holder, "another replica leads")
                    }
                    Ok(Attempt::Conflict) => {
                        tracing::debug!(lease = %self.name, "lost a race for the lease (409 Conflict)")
                    }
                    Err(e) => {
                        tracing::warn!(lease = %self.name, error = %e, "could not read or take the lease; check the API server and the watcher's Role on leases")
                    }
                }
                if pause(jitter(self.timings.retry_period), &mut stop).await {
                    return;
                }
            }
            let mut renewed = Instant::now();
            tracing::info!(lease = %self.name, identity = %self.identity, "leading: publishing notices");
            let _ = leading.send(Some(renewed + self.timings.renew_deadline));
            // Leader: renew every retry period; stop at the renew deadline.
            loop {
                if pause(self.timings.retry_period, &mut stop).await {
                    let _ = leading.send(None);
                    self.release().await;
                    return;
                }
                let left = self
                    .timings
                    .renew_deadline
                    .saturating_sub(renewed.elapsed());
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Held)) => {
                        renewed = Instant::now();
                        let _ = leading.send(Some(renewed + self.timings.renew_deadline));
                    }
                    Ok(Ok(Attempt::Other(_) | Attempt::Conflict)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %self.name, error = %e, "could not renew the lease")
                    }
                    Err(_) => break,
                }
            }
            let _ = leading.send(None);
            tracing::warn!(lease = %self.name, identity = %self.identity, "lost the lease: stopped publishing");
        }
    }
}

/// Sleeps `d`; true if `stop` turned true meanwhile (or its sender is gone).
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}

/// `d` plus up to 20%, so that replicas do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.2)
}

/// Whether `leading` says this replica may act as leader now.
pub fn is_leading(leading: &watch::Receiver<Option<Instant>>) -> bool {
    leading.borrow().is_some_and(|until| Instant::now() < until)
}
