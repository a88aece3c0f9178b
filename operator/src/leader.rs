//! Leader election through a `coordination.k8s.io/v1` Lease, built so two
//! replicas never reconcile at once, whatever their clocks say:
//!
//! - Every write carries the `resourceVersion` it read, so of two
//!   candidates exactly one wins (the other gets 409 Conflict).
//! - The holder renews every `renew_every` and must succeed within
//!   `renew_deadline` of its last successful renewal, measured on its own
//!   monotonic clock from the moment that renewal was *sent*; otherwise it
//!   steps down (the operator stops its controllers at once). A renewal
//!   that hangs counts as failed when the deadline passes.
//! - A candidate never compares its clock with `renewTime` (another
//!   machine's clock). It takes the Lease over only after it has itself
//!   seen the same record (holder, renewTime, acquireTime, transitions) for
//!   a whole `leaseDurationSeconds` on its monotonic clock, counted from
//!   when it first read that record, which is after the holder sent it.
//!
//! So the old holder stops at most `renew_deadline` after sending its last
//! renewal, and a candidate starts at least `lease_duration` after that
//! renewal was written: the gap (`lease_duration - renew_deadline`, 5 s by
//! default) is what a stopping holder has to drop its reconciles. Clock
//! rates are assumed equal; clock offsets do not matter.

use crate::config::LeaderConfig;
use crate::error::Result;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This instance holds the Lease (acquired or renewed).
    Leading,
    /// Another instance holds it, and has not been seen to stop renewing.
    Standby,
    /// Our write lost a race (409): someone else wrote the Lease meanwhile.
    Conflict,
}

/// The Lease's record as a candidate compares it: any change means the
/// holder is alive (or another candidate took over).
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration_seconds: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.clone(),
            acquire_time: spec.acquire_time.clone(),
            transitions: spec.lease_transitions,
            duration_seconds: spec.lease_duration_seconds,
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    identity: String,
    /// The record last read, and when (this instance's monotonic clock) it
    /// was first seen unchanged.
    observed: Mutex<Option<(Record, Instant)>>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderConfig, identity: String) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
            identity,
            observed: Mutex::new(None),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Whether the holder of `record` has been seen not to renew for its
    /// lease duration (by this instance's own clock). Records it otherwise.
    fn expired(&self, record: Record) -> bool {
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let duration = record
            .duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.config.lease_duration)
            // Never shorter than ours: a holder configured with a shorter
            // lease still renews within its own deadline.
            .max(self.config.lease_duration);
        match observed.as_ref() {
            Some((seen, since)) if *seen == record => since.elapsed() >= duration,
            _ => {
                *observed = Some((record, Instant::now()));
                false
            }
        }
    }

    /// One attempt to acquire or renew.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt> {
        if let Some(stall) = &self.config.stall_renewals {
            // Tests: hang while stalled (a dropped sender un-stalls).
            let _ = stall.clone().wait_for(|stalled| !*stalled).await;
        }
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return written(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record = Record::of(spec);
        if record.holder.as_deref() != Some(self.identity.as_str()) {
            // Released (no holder): free at once. Held: only once this
            // instance has watched it stay unchanged for a lease duration.
            if record.holder.is_some() && !self.expired(record) {
                return Ok(Attempt::Standby);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.renew_time = Some(now);
        written(
            self.api
                .replace(&self.config.lease_name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// Gives the Lease up so another instance need not wait for it to expire.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        written(
            self.api
                .replace(&self.config.lease_name, &PostParams::default(), &lease)
                .await,
        )?;
        Ok(())
    }

    /// The current holder, if any.
    pub async fn holder(&self) -> Result<Option<String>> {
        Ok(self
            .api
            .get_opt(&self.config.lease_name)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }
}

fn written(result: kube::Result<Lease>) -> Result<Attempt> {
    match result {
        Ok(_) => Ok(Attempt::Leading),
        // Another candidate (or holder) wrote first.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
        Err(e) => Err(e.into()),
    }
}
