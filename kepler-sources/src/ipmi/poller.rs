//! Background polling: one thread with a small async runtime, one task per BMC. Each task
//! polls its BMC, stores the last answer with the instant it was taken, and sleeps: the
//! interval ±10% on success, an exponential backoff on failure (shared with Redfish). Readers
//! only lock the shared state for a copy; nothing they do waits on the network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::{Bmc, IpmiError, IpmiErrorKind, Sample};
use super::config::{IpmiBmcConfig, IpmiOptions};
use crate::bmc::{wait_next_poll, BmcShared, PollState, PollThread};
use crate::Error;

/// What the poller knows about one BMC: the last successful poll's sample and the counts.
pub type IpmiState = PollState<Option<Sample>, { IpmiErrorKind::ALL.len() }>;

/// One BMC's state, shared between its polling task and the readers.
pub type IpmiShared = BmcShared<Option<Sample>, { IpmiErrorKind::ALL.len() }>;

/// The polling thread; stopping it (or dropping it) ends every task and closes sessions.
#[derive(Debug)]
pub struct IpmiPoller(PollThread);

/// The longest one poll may take: session setup plus an SDR walk, each request with its
/// resends.
fn poll_deadline(opts: &IpmiOptions) -> Duration {
    opts.timeout
        .saturating_mul(opts.attempts.max(1))
        .saturating_mul(8)
}

impl IpmiPoller {
    /// Starts polling every BMC in `bmcs`.
    pub fn start(
        bmcs: Vec<(IpmiBmcConfig, Arc<IpmiShared>)>,
        opts: IpmiOptions,
    ) -> Result<IpmiPoller, Error> {
        let grace = opts.timeout + Duration::from_secs(1);
        // The `ipmi` crate's futures are not `Send`: the tasks are local to the thread.
        let thread = PollThread::start("IPMI", bmcs, grace, move |(cfg, shared), stop, rng| {
            tokio::task::spawn_local(poll_loop(
                Bmc::new(cfg, opts.clone()),
                shared,
                opts.clone(),
                stop,
                rng,
            ))
        })?;
        Ok(IpmiPoller(thread))
    }

    /// Stops every task, closes sessions, and waits for the thread.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

/// A short, stable description of the poll's outcome, logged only when it changes.
fn outcome(result: &Result<Sample, IpmiError>) -> String {
    match result {
        Ok(Sample {
            watts: Some(_),
            method,
        }) => format!("reading via {}", method.label()),
        Ok(Sample {
            watts: None,
            method,
        }) => format!("inactive via {}", method.label()),
        Err(e) => format!("{} {}", e.kind.label(), e.step),
    }
}

async fn poll_loop(
    mut bmc: Bmc,
    shared: Arc<IpmiShared>,
    opts: IpmiOptions,
    mut stop: watch::Receiver<bool>,
    mut rng: u64,
) {
    let mut failures = 0u32;
    let mut last: Option<String> = None;
    let deadline = poll_deadline(&opts);
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = bmc.poll(deadline) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let took = started.elapsed();
        shared.lock().record(
            took,
            result
                .as_ref()
                .map(|s| Some(s.clone()))
                .map_err(|e| e.kind.index()),
        );
        // One log line per change of state, never one per poll. Errors carry no credentials.
        let now = outcome(&result);
        if last.as_deref() != Some(now.as_str()) {
            match &result {
                Err(e) => {
                    tracing::warn!(bmc = %shared.id, error = %e, "IPMI BMC poll failed; its platform power is not exported until it recovers")
                }
                Ok(Sample {
                    watts: None,
                    method,
                }) => {
                    tracing::info!(bmc = %shared.id, method = method.label(), "IPMI BMC says power measurement is inactive; no reading exported")
                }
                Ok(Sample {
                    watts: Some(_),
                    method,
                }) => {
                    let sensor = match method {
                        super::client::Method::Sdr(name) => name.as_str(),
                        super::client::Method::Dcmi => "",
                    };
                    tracing::info!(bmc = %shared.id, method = method.label(), sensor, "IPMI BMC power reading OK")
                }
            }
            last = Some(now);
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
    bmc.close().await;
}
