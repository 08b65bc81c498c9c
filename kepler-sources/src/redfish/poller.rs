//! Background polling: one thread with a small async runtime, one task per BMC. Each task
//! walks its BMC, stores the last good result with the instant it was taken, and sleeps:
//! the interval ±10% on success, an exponential backoff on failure. Readers only lock the
//! shared state for a copy of an `Arc`; nothing they do waits on the network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::Client;
use super::config::{BmcConfig, RedfishOptions};
use super::error::{FetchError, FetchErrorKind};
use super::model::PowerReading;
use super::walk::{walk, Walk};
pub use crate::bmc::jitter;
use crate::bmc::{backoff_delay, wait_next_poll, PollThread};
use crate::{Error, ErrorKind};

/// One BMC's state (the readings of its last successful walk; failed requests by
/// [`FetchErrorKind::index`]), shared between its polling task and the readers.
pub type BmcShared = crate::bmc::BmcShared<Arc<Vec<PowerReading>>, { FetchErrorKind::ALL.len() }>;

/// The polling thread; stopping it (or dropping it) ends every task and deletes sessions.
#[derive(Debug)]
pub struct Poller(PollThread);

/// The delay after `failures` consecutive failed walks (see [`crate::bmc::backoff_delay`]).
pub fn backoff(opts: &RedfishOptions, failures: u32) -> Duration {
    backoff_delay(opts.interval, opts.max_backoff, failures)
}

impl Poller {
    /// Starts polling every BMC in `bmcs`; each gets its own client and shared state.
    pub fn start(
        bmcs: Vec<(BmcConfig, Arc<BmcShared>)>,
        opts: RedfishOptions,
    ) -> Result<Poller, Error> {
        let mut clients = Vec::with_capacity(bmcs.len());
        for (b, shared) in bmcs {
            let client = Client::new(&b, opts.http_timeout, opts.max_body).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    None,
                    format!("BMC {:?}: {e}", b.id),
                )
            })?;
            clients.push((client, shared));
        }
        let grace = opts.http_timeout + Duration::from_secs(1);
        let thread = PollThread::start(
            "Redfish",
            clients,
            grace,
            move |(client, shared), stop, rng| {
                tokio::spawn(poll_loop(client, shared, opts.clone(), stop, rng))
            },
        )?;
        Ok(Poller(thread))
    }

    /// Stops every task, deletes open sessions, and waits for the thread.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

/// A short, stable description of what went wrong in a walk, to log only when it changes.
fn problem(result: &Result<Walk, FetchError>) -> Option<String> {
    match result {
        Err(e) => Some(format!("{} {}", e.kind.label(), e.path)),
        Ok(w) if !w.partial_errors.is_empty() => {
            let mut parts: Vec<String> = w
                .partial_errors
                .iter()
                .map(|e| format!("{} {}", e.kind.label(), e.path))
                .collect();
            parts.sort();
            parts.dedup();
            Some(parts.join(", "))
        }
        Ok(_) => None,
    }
}

async fn poll_loop(
    client: Client,
    shared: Arc<BmcShared>,
    opts: RedfishOptions,
    mut stop: watch::Receiver<bool>,
    mut rng: u64,
) {
    let mut failures = 0u32;
    let mut last_problem: Option<String> = None;
    let mut logged_empty = false;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = walk(&client) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let took = started.elapsed();
        {
            let mut st = shared.lock();
            st.record(
                took,
                result
                    .as_ref()
                    .map(|w| Arc::new(w.readings.clone()))
                    .map_err(|e| e.kind.index()),
            );
            if let Ok(w) = &result {
                for e in &w.partial_errors {
                    st.errors[e.kind.index()] += 1;
                }
            }
        }
        // Log once per change of state, not once per poll.
        let now_problem = problem(&result);
        if now_problem != last_problem {
            match (&result, &now_problem) {
                (Err(e), _) => {
                    tracing::warn!(bmc = %shared.id, error = %e, "Redfish BMC poll failed; its platform power is not exported until it recovers")
                }
                (Ok(w), Some(p)) => {
                    tracing::warn!(bmc = %shared.id, chassis = w.chassis, failed = %p, "Redfish BMC answered but some resources failed; they are skipped")
                }
                (Ok(_), None) => {
                    tracing::info!(bmc = %shared.id, "Redfish BMC polled cleanly again")
                }
            }
            last_problem = now_problem;
        }
        if let Ok(w) = &result {
            if w.readings.is_empty() && !logged_empty {
                tracing::info!(bmc = %shared.id, chassis = w.chassis, "Redfish BMC reports no power readings (no PowerControl, EnvironmentMetrics, PSU input or chassis power sensor)");
                logged_empty = true;
            }
        }
        let stopped = wait_next_poll(
            result.is_ok(),
            &mut failures,
            opts.interval,
            opts.max_backoff,
            &mut rng,
            &mut stop,
        )
        .await;
        if stopped {
            break;
        }
    }
    client.logout().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_short_first_retry_to_the_cap() {
        let opts = RedfishOptions::default();
        let d: Vec<u64> = (1..=8).map(|n| backoff(&opts, n).as_secs()).collect();
        assert_eq!(d, [5, 10, 20, 40, 80, 160, 240, 240]);
        let fast = RedfishOptions {
            interval: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            ..RedfishOptions::default()
        };
        assert_eq!(backoff(&fast, 1), Duration::from_millis(200));
        assert_eq!(backoff(&fast, 30), Duration::from_secs(1));
    }
}
