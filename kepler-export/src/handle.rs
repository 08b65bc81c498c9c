//! Where the monitor loop publishes expositions and the server reads them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::exposition::Exposition;

/// Where the monitor loop publishes and scrapes read: the latest [`Exposition`] plus a
/// readiness flag. Cloning is cheap; all clones share the same state.
///
/// Scrapes never trigger computation: they read whatever was published last, unless a
/// [refresher](Self::set_refresher) is set (Go Kepler's `monitor.interval: 0`, read on
/// scrape).
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle {
    inner: Arc<Inner>,
}

/// Called (on a blocking thread) before a scrape reads the latest exposition; returns once
/// a fresh enough one is published.
pub type Refresher = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    latest: RwLock<Option<Arc<Exposition>>>,
    ready: AtomicBool,
    refresher: OnceLock<Refresher>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("latest", &self.latest)
            .field("ready", &self.ready)
            .field("refresher", &self.refresher.get().is_some())
            .finish()
    }
}

impl MetricsHandle {
    /// An empty handle: nothing published, not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the latest exposition. Scrapes in flight keep the one they already hold.
    /// The gzip and OpenMetrics variants that scrapes asked of the previous exposition are
    /// made first, here on the publisher's thread, so that no scrape waits for one.
    pub fn publish(&self, e: Exposition) {
        if let Some(previous) = self.latest() {
            e.prepare_like(&previous);
        }
        self.publish_arc(Arc::new(e));
    }

    /// Like [`publish`](Self::publish), for an exposition already in an `Arc`.
    pub fn publish_arc(&self, e: Arc<Exposition>) {
        let old = {
            let mut guard = self.inner.latest.write().unwrap_or_else(|p| p.into_inner());
            guard.replace(e)
        };
        // The previous exposition (maybe 20 MB) is freed outside the lock.
        drop(old);
    }

    /// The latest exposition, if any was published.
    pub fn latest(&self) -> Option<Arc<Exposition>> {
        self.inner
            .latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes every scrape call `refresh` first (read on scrape); set once, later calls are
    /// ignored.
    pub fn set_refresher(&self, refresh: Refresher) {
        let _ = self.inner.refresher.set(refresh);
    }

    /// The refresher, when reading on scrape.
    pub fn refresher(&self) -> Option<Refresher> {
        self.inner.refresher.get().cloned()
    }

    /// Marks the exporter ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// True when marked ready and an exposition has been published: what `/readyz` reports.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire) && self.latest().is_some()
    }
}
