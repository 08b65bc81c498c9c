//! What the BMC-polling sources (Redfish, IPMI) share: the credentials file's shape and
//! checks, passwords that never print, the poll schedule (backoff and jitter), the per-BMC poll
//! state and its report, and the platform zones built from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kepler_core::{
    EndpointStatus, MicroWatts, Nanos, PowerFrame, ReadError, Reading, SourceReport, Timestamp,
    ZoneInfo, ZoneLabels,
};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::watch;

use crate::{Error, ErrorKind};

/// A password: never shown by `Debug` or `Display`, never logged.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The delay after `failures` consecutive failed polls: starts at min(interval, 5 s) so a
/// passing glitch is retried soon, doubles each time, and stops at `max_backoff`.
pub fn backoff_delay(interval: Duration, max_backoff: Duration, failures: u32) -> Duration {
    let base = interval.min(Duration::from_secs(5));
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max_backoff.max(base))
}

/// `d` scaled by a factor in [0.9, 1.1): BMCs of many nodes then drift apart instead of
/// being polled in lockstep.
pub fn jitter(d: Duration, rng: &mut u64) -> Duration {
    // xorshift64: plenty for spreading timers.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let unit = (*rng >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.9 + 0.2 * unit)
}

/// A seed for [`jitter`] that differs between processes.
pub(crate) fn jitter_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ 0x9E37_79B9_7F4A_7C15
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The BMCs of one node, and warnings to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBmcs<C> {
    /// The BMCs this node maps to, in file order.
    pub bmcs: Vec<C>,
    /// Things to log once (a readable file in insecure mode).
    pub warnings: Vec<String>,
}

/// What every BMC entry of a credentials file has, whatever its protocol.
pub(crate) trait RawBmcEntry {
    /// The `endpoint` as written, `None` when missing.
    fn endpoint(&self) -> Option<&str>;
    /// Whether `insecure: true` allows a file others can read.
    fn insecure(&self) -> bool;
}

/// A BMC file, `nodes: {<node>: <bmc id> | [ids]}` and `bmcs: {<id>: B}`, with its mode.
pub(crate) struct BmcFile<B> {
    nodes: BTreeMap<String, OneOrMany>,
    bmcs: BTreeMap<String, B>,
    mode: u32,
}

#[derive(Deserialize)]
#[serde(bound = "B: DeserializeOwned")]
struct RawFile<B> {
    #[serde(default)]
    nodes: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    bmcs: BTreeMap<String, B>,
}

pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, Some(path), detail)
}

impl<B: DeserializeOwned> BmcFile<B> {
    /// Reads the file at `path` and its permission bits.
    pub(crate) fn load(path: &Path) -> Result<BmcFile<B>, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
        let mode = file_mode(path)?;
        BmcFile::parse(path, &text, mode)
    }

    /// Parses `text`, read from `path` with permission bits `mode`.
    pub(crate) fn parse(path: &Path, text: &str, mode: u32) -> Result<BmcFile<B>, Error> {
        let raw: RawFile<B> = if text.trim().is_empty() {
            RawFile {
                nodes: BTreeMap::new(),
                bmcs: BTreeMap::new(),
            }
        } else {
            // serde-saphyr's messages quote the offending line; a password on a bad line
            // would be echoed, so only the position is kept.
            serde_saphyr::from_str(text)
                .map_err(|e| invalid(path, redact_yaml_error(&e.to_string())))?
        };
        Ok(BmcFile {
            nodes: raw.nodes,
            bmcs: raw.bmcs,
            mode,
        })
    }

    /// The BMCs `node` maps to, in file order without repeats; an id with no entry under
    /// `bmcs` is an error naming both.
    pub(crate) fn node_bmcs(&self, path: &Path, node: &str) -> Result<Vec<(&str, &B)>, Error> {
        let ids: Vec<&str> = match self.nodes.get(node) {
            None => Vec::new(),
            Some(OneOrMany::One(id)) => vec![id.as_str()],
            Some(OneOrMany::Many(ids)) => ids.iter().map(String::as_str).collect(),
        };
        let mut out: Vec<(&str, &B)> = Vec::new();
        for id in ids {
            let Some(b) = self.bmcs.get(id) else {
                return Err(invalid(
                    path,
                    format!("node {node:?} maps to BMC {id:?}, which has no entry under bmcs"),
                ));
            };
            if !out.iter().any(|(x, _)| *x == id) {
                out.push((id, b));
            }
        }
        Ok(out)
    }

    /// The BMCs `node` maps to, each checked and built by `build` from its id, entry and
    /// endpoint (normalized by `normalize`, named in the error when missing or bad), and the
    /// file's mode checked against its `insecure` flag.
    pub(crate) fn node_configs<C>(
        &self,
        path: &Path,
        node: &str,
        normalize: fn(&str) -> Result<String, String>,
        mut build: impl FnMut(&str, &B, String) -> Result<C, Error>,
    ) -> Result<NodeBmcs<C>, Error>
    where
        B: RawBmcEntry,
    {
        let mut out = NodeBmcs {
            bmcs: Vec::new(),
            warnings: Vec::new(),
        };
        for (id, b) in self.node_bmcs(path, node)? {
            let endpoint = b
                .endpoint()
                .ok_or_else(|| invalid(path, format!("bmcs.{id}.endpoint is missing")))
                .and_then(|e| {
                    normalize(e).map_err(|m| invalid(path, format!("bmcs.{id}.endpoint: {m}")))
                })?;
            let config = build(id, b, endpoint)?;
            self.check_mode(path, id, b.insecure(), &mut out.warnings)?;
            out.bmcs.push(config);
        }
        Ok(out)
    }

    /// Refuses a file readable by group or others (it holds passwords) unless the BMC `id`
    /// is marked `insecure`, in which case a warning is added instead.
    pub(crate) fn check_mode(
        &self,
        path: &Path,
        id: &str,
        insecure: bool,
        warnings: &mut Vec<String>,
    ) -> Result<(), Error> {
        let mode = self.mode;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        let msg = format!(
            "holds BMC passwords but is readable by group or others (mode {mode:04o}); run chmod 600 on it"
        );
        if insecure {
            warnings.push(format!(
                "{}: {msg} (allowed because bmcs.{id}.insecure is set)",
                path.display()
            ));
            Ok(())
        } else {
            Err(Error::new(ErrorKind::PermissionDenied, Some(path), msg))
        }
    }
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Result<u32, Error> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(path, &e))?
        .mode()
        & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> Result<u32, Error> {
    Ok(0o600)
}

/// Keeps the first line of a YAML error (kind and position), dropping the quoted snippet.
fn redact_yaml_error(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("invalid YAML");
    format!("invalid BMC file: {first}")
}

/// What a poller knows about one BMC: `T` is the last successful poll's result, `N` the
/// number of error kinds of its protocol (each counted by its index).
#[derive(Debug, Clone)]
pub struct PollState<T, const N: usize> {
    /// The last successful poll's result.
    pub last_good: T,
    /// When the last successful poll finished; `None` before the first.
    pub polled_at: Option<Instant>,
    /// True when the latest poll succeeded.
    pub up: bool,
    /// How long the latest poll took.
    pub last_duration: Duration,
    /// Polls since start.
    pub polls: u64,
    /// Failures since start, by the error kind's index.
    pub errors: [u64; N],
}

impl<T: Default, const N: usize> Default for PollState<T, N> {
    fn default() -> Self {
        PollState {
            last_good: T::default(),
            polled_at: None,
            up: false,
            last_duration: Duration::ZERO,
            polls: 0,
            errors: [0; N],
        }
    }
}

impl<T, const N: usize> PollState<T, N> {
    /// Counts one poll that took `took`: its result on success, the index of its error
    /// kind on failure.
    pub fn record(&mut self, took: Duration, outcome: Result<T, usize>) {
        self.polls += 1;
        self.last_duration = took;
        match outcome {
            Ok(good) => {
                self.last_good = good;
                self.polled_at = Some(Instant::now());
                self.up = true;
            }
            Err(kind) => {
                self.up = false;
                self.errors[kind] += 1;
            }
        }
    }
}

/// One BMC's state, shared between its polling task and the readers.
#[derive(Debug)]
pub struct BmcShared<T, const N: usize> {
    /// The BMC id.
    pub id: String,
    state: Mutex<PollState<T, N>>,
}

impl<T: Default, const N: usize> BmcShared<T, N> {
    /// A BMC not polled yet.
    pub fn new(id: &str) -> Self {
        BmcShared {
            id: id.to_string(),
            state: Mutex::new(PollState::default()),
        }
    }
}

impl<T, const N: usize> BmcShared<T, N> {
    /// The state, for a short look.
    pub fn lock(&self) -> MutexGuard<'_, PollState<T, N>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint status of this BMC for a report at `at` (`now` on the poll clock);
    /// `labels` names the error kinds by index.
    pub(crate) fn endpoint(
        &self,
        labels: &[&'static str; N],
        at: Timestamp,
        now: Instant,
    ) -> EndpointStatus {
        let st = self.lock();
        EndpointStatus {
            id: self.id.clone(),
            up: st.up,
            last_success: st
                .polled_at
                .map(|t| stamp(at, now.saturating_duration_since(t))),
            last_duration: Nanos(st.last_duration.as_nanos().min(u64::MAX as u128) as u64),
            polls: st.polls,
            errors: labels.iter().copied().zip(st.errors).collect(),
        }
    }
}

/// Waits until the next poll: the interval on success (resetting `failures`), the backoff
/// after `failures` consecutive failures otherwise; both jittered. True when `stop` said so
/// first: the poll loop ends.
pub(crate) async fn wait_next_poll(
    ok: bool,
    failures: &mut u32,
    interval: Duration,
    max_backoff: Duration,
    rng: &mut u64,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let delay = if ok {
        *failures = 0;
        jitter(interval, rng)
    } else {
        *failures += 1;
        jitter(backoff_delay(interval, max_backoff, *failures), rng)
    };
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// The polling thread of a BMC source; stopping it (or dropping it) ends every task, which
/// closes its session.
#[derive(Debug)]
pub(crate) struct PollThread {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl PollThread {
    /// Starts the thread `name` (the source, as messages name it) with one poll task per item
    /// on a current-thread runtime, until stopped; then waits up to `grace` for the tasks to
    /// close their sessions. `spawn` starts one task from an item, its stop receiver and a
    /// jitter seed. The tasks run inside a LocalSet, so `spawn` may use `spawn_local` for
    /// futures that are not `Send` (the `ipmi` crate's) as well as `tokio::spawn`.
    pub(crate) fn start<T: Send + 'static>(
        name: &str,
        items: Vec<T>,
        grace: Duration,
        spawn: impl Fn(T, watch::Receiver<bool>, u64) -> tokio::task::JoinHandle<()> + Send + 'static,
    ) -> Result<PollThread, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    None,
                    format!("cannot start the {name} runtime: {e}"),
                )
            })?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(name.to_lowercase())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let seed = jitter_seed();
                    let tasks: Vec<_> = items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| {
                            spawn(item, stop_rx.clone(), seed.wrapping_mul(i as u64 + 1) | 1)
                        })
                        .collect();
                    let mut stop_rx = stop_rx;
                    let _ = stop_rx.wait_for(|s| *s).await;
                    // Tasks close their sessions (bounded by the timeout); wait no longer.
                    let _ = tokio::time::timeout(grace, async {
                        for t in tasks {
                            let _ = t.await;
                        }
                    })
                    .await;
                });
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    None,
                    format!("cannot start the {name} thread: {e}"),
                )
            })?;
        Ok(PollThread {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops every task and waits for the thread.
    pub(crate) fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PollThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `at` moved back by `age`: when a poll that finished `age` ago happened on the caller's clock.
pub(crate) fn stamp(at: Timestamp, age: Duration) -> Timestamp {
    Timestamp(at.0.saturating_sub(age.as_nanos().min(u64::MAX as u128) as u64))
}

/// The timestamp of the poll that finished at `polled_at` (`age` ago): computed once per
/// poll and kept in `slot`, so every read of one poll carries the same timestamp (the engine
/// then counts its energy once).
pub(crate) fn poll_stamp(
    slot: &mut Option<(Instant, Timestamp)>,
    polled_at: Instant,
    at: Timestamp,
    age: Duration,
) -> Timestamp {
    match *slot {
        Some((seen, ts)) if seen == polled_at => ts,
        _ => {
            let ts = stamp(at, age);
            *slot = Some((polled_at, ts));
            ts
        }
    }
}

/// One platform zone of a BMC, with its labels and the reading pushed in the latest read.
#[derive(Debug)]
pub(crate) struct BmcZone {
    pub(crate) zone: Arc<ZoneInfo>,
    pub(crate) labels: Arc<[(&'static str, String)]>,
    /// Index of its BMC in the source's list.
    pub(crate) bmc: usize,
    /// The reading pushed in the latest `read`, when fresh.
    pub(crate) latest: Option<Reading>,
}

impl BmcZone {
    /// Pushes `watts` sampled at `ts` and remembers it for the report.
    pub(crate) fn push_watts(&mut self, watts: f64, ts: Timestamp, out: &mut PowerFrame) {
        let reading = Reading::Power(MicroWatts::from_watts(watts));
        self.latest = Some(reading);
        out.push_sampled(&self.zone, ts, Ok(reading));
    }

    /// Pushes the error of a zone the latest poll did not give: `Missing` when that poll is
    /// fresh, `Stale` when it is too old.
    pub(crate) fn push_absent(&mut self, fresh: bool, out: &mut PowerFrame) {
        self.latest = None;
        let what = self.zone.path.clone();
        let err = if fresh {
            ReadError::Missing { what }
        } else {
            ReadError::Stale { what }
        };
        out.push(&self.zone, Err(err));
    }
}

/// The report of a BMC source: every zone with its labels, and every BMC's endpoint status.
pub(crate) fn report<'a, T, const N: usize>(
    zones: impl Iterator<Item = &'a BmcZone>,
    bmcs: &[Arc<BmcShared<T, N>>],
    error_labels: &[&'static str; N],
    at: Timestamp,
    out: &mut SourceReport,
) {
    let now = Instant::now();
    for z in zones {
        out.zones.push(ZoneLabels {
            zone: Arc::clone(&z.zone),
            labels: Arc::clone(&z.labels),
            latest: z.latest,
        });
    }
    for b in bmcs {
        out.endpoints.push(b.endpoint(error_labels, at, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_short_first_retry_to_the_cap() {
        let d: Vec<u64> = (1..=8)
            .map(|n| backoff_delay(Duration::from_secs(30), Duration::from_secs(240), n).as_secs())
            .collect();
        assert_eq!(d, [5, 10, 20, 40, 80, 160, 240, 240]);
        let (i, m) = (Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(backoff_delay(i, m, 1), Duration::from_millis(200));
        assert_eq!(backoff_delay(i, m, 30), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut rng = 0x1234_5678_9abc_def1;
        let d = Duration::from_secs(30);
        let xs: Vec<Duration> = (0..1000).map(|_| jitter(d, &mut rng)).collect();
        assert!(xs
            .iter()
            .all(|x| *x >= d.mul_f64(0.9) && *x < d.mul_f64(1.1)));
        let min = xs.iter().min().unwrap();
        let max = xs.iter().max().unwrap();
        assert!(*max - *min > Duration::from_secs(4), "{min:?}..{max:?}");
    }
}
