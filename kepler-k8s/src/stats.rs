//! Self-metrics of the informer, counted with atomics by the background tasks and read at
//! every tick without a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What a request to the kubelet or API server was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET /pods` on the kubelet.
    KubeletPods,
    /// A list of pods on the API server (initial list, relist after 410 Gone).
    List,
    /// A watch of pods on the API server (time to the response head).
    Watch,
}

impl RequestKind {
    /// Every kind, in label order.
    pub const ALL: [RequestKind; 3] = [
        RequestKind::KubeletPods,
        RequestKind::List,
        RequestKind::Watch,
    ];

    /// The `request` label value.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::KubeletPods => "kubelet_pods",
            RequestKind::List => "list",
            RequestKind::Watch => "watch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct RequestCounters {
    ok: AtomicU64,
    failed: AtomicU64,
    nanos_total: AtomicU64,
    last_nanos: AtomicU64,
}

/// Counters shared by the informer tasks and the cache.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests: [RequestCounters; 3],
    pub(crate) misses: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) relists: AtomicU64,
    pub(crate) watch_errors: AtomicU64,
    pub(crate) poll_errors: AtomicU64,
    pub(crate) synced: AtomicBool,
}

impl Stats {
    pub(crate) fn record(&self, kind: RequestKind, took: Duration, ok: bool) {
        let c = &self.requests[kind.index()];
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        if ok { &c.ok } else { &c.failed }.fetch_add(1, Ordering::Relaxed);
        c.nanos_total.fetch_add(nanos, Ordering::Relaxed);
        c.last_nanos.store(nanos, Ordering::Relaxed);
    }
}

/// One request kind's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RequestStats {
    /// Requests that got a successful answer.
    pub ok: u64,
    /// Requests that failed (transport error or error status).
    pub failed: u64,
    /// Time spent in all of them, seconds.
    pub seconds_total: f64,
    /// Time the latest one took, seconds.
    pub last_seconds: f64,
}

/// A copy of the informer's self-metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct InformerStats {
    /// Pods cached (including deleted ones still retained).
    pub pods: u64,
    /// Container ids cached.
    pub containers: u64,
    /// Container ids in the negative cache.
    pub negative_entries: u64,
    /// Lookups of an id in no pod and not already in the negative cache.
    pub misses: u64,
    /// Lookups answered by the negative cache.
    pub negative_hits: u64,
    /// Watch restarts that relisted (first list excluded; 410 Gone ends here).
    pub relists: u64,
    /// Watch errors (each followed by a backoff and a resumed or new watch).
    pub watch_errors: u64,
    /// Failed kubelet polls.
    pub poll_errors: u64,
    /// True once the first full list or poll succeeded.
    pub synced: bool,
    /// Per request kind, in [`RequestKind::ALL`] order.
    pub requests: [(RequestKind, RequestStats); 3],
}

impl Stats {
    pub(crate) fn requests(&self) -> [(RequestKind, RequestStats); 3] {
        RequestKind::ALL.map(|k| {
            let c = &self.requests[k.index()];
            (
                k,
                RequestStats {
                    ok: c.ok.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    seconds_total: c.nanos_total.load(Ordering::Relaxed) as f64 / 1e9,
                    last_seconds: c.last_nanos.load(Ordering::Relaxed) as f64 / 1e9,
                },
            )
        })
    }
}
