//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at once. kube-runtime 5 has none built in; this follows client-go's rules:
//!
//! - A lease is free when it has no holder or its record has not changed for
//!   `leaseDurationSeconds` **as measured by this process's own monotonic clock** (the
//!   holder's `renewTime` comes from another machine's clock and is only compared for change).
//! - Acquire and renew are `PUT`s with the read `resourceVersion`: of two candidates racing for
//!   a free lease, the API server lets exactly one write win (409 for the other).
//! - A leader that cannot renew within the lease duration stops leading ([`Elected::lost`]);
//!   the binary exits so that its controller never runs beside a new leader.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

/// How the lease is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease record stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews and candidates retry.
    pub retry_period: Duration,
}

/// A candidate for the lease.
pub struct LeaseLock {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The last record seen (holder, renew time) and when this process first saw it.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    /// A candidate with `cfg`.
    pub fn new(client: Client, cfg: LeaseConfig) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    /// One attempt to acquire or renew; `Ok(true)` when this replica holds the lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = self.cfg.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone());
        let changed = match &self.observed {
            Some((h, r, _)) => (h, r) != (&record.0, &record.1),
            None => true,
        };
        if changed {
            self.observed = Some((record.0, record.1, Instant::now()));
        }
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        let valid_for =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
        let seen_at = self
            .observed
            .as_ref()
            .map(|o| o.2)
            .unwrap_or_else(Instant::now);
        let expired = holder.is_none() || seen_at.elapsed() >= valid_for;
        if !mine && !expired {
            return Ok(false);
        }
        let mut next = spec;
        if !mine {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(self.cfg.identity.clone());
        next.lease_duration_seconds = Some(seconds);
        next.renew_time = Some(now);
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(stored) => {
                let s = stored.spec.unwrap_or_default();
                self.observed = Some((s.holder_identity, s.renew_time, Instant::now()));
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(mut self) -> Elected {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.cfg.name, "lease request failed")
                }
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
        tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.name, "became leader");
        Elected { lock: self }
    }
}

/// A replica that holds the lease.
pub struct Elected {
    lock: LeaseLock,
}

impl Elected {
    /// Renews the lease until a renewal has not succeeded for the lease duration (or another
    /// replica took it); returns then. Run it beside the controller and stop when it returns.
    pub async fn lost(mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.lock.cfg.retry_period).await;
            match self.lock.try_acquire_or_renew().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    tracing::error!("another replica holds the lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            if last_ok.elapsed() >= self.lock.cfg.lease_duration {
                tracing::error!("lease not renewed within its duration");
                return;
            }
        }
    }

    /// Gives the lease up so a standby replica takes over at once (on clean shutdown).
    pub async fn release(cfg: &LeaseConfig, client: Client) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let Some(mut lease) = api.get_opt(&cfg.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        lease.spec = Some(spec);
        match api.replace(&cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
