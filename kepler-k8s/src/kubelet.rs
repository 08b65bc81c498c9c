//! `kubelet` mode: poll the node's kubelet `GET /pods` (Kepler's default since #2366, because
//! it costs the API server nothing). Exactly one request per poll interval, whatever the
//! misses: lookups never ask for a poll.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use crate::cache::PodCache;
use crate::meta::{PodObjectList, PodRecord};

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Transport error or error status.
    #[error("GET {path} on the kubelet failed: {source}")]
    Request {
        /// The path requested.
        path: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The answer is not a pod list.
    #[error("the kubelet's {path} answer is not a pod list: {source}")]
    Decode {
        /// The path requested.
        path: String,
        /// The decode error.
        #[source]
        source: serde_json::Error,
    },
}

/// Polls once: `GET <path>` and replaces the cache with the pods bound to `node` (all of them
/// when the kubelet omits `spec.nodeName`, which only happens for its own static pods).
pub async fn poll_once(
    client: &kube::Client,
    path: &str,
    node: &str,
    cache: &PodCache,
) -> Result<usize, PollError> {
    let req = http::Request::get(path)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| PollError::Request {
            path: path.into(),
            source: kube::Error::HttpError(e),
        })?;
    let text = client
        .request_text(req)
        .await
        .map_err(|source| PollError::Request {
            path: path.into(),
            source,
        })?;
    let records = parse_pods(text.as_bytes(), node).map_err(|source| PollError::Decode {
        path: path.into(),
        source,
    })?;
    let n = records.len();
    cache.replace_all(records, Instant::now());
    Ok(n)
}

/// Decodes a kubelet `/pods` answer into the records of the pods bound to `node` (all of them
/// when the kubelet omits `spec.nodeName`, which only happens for its own static pods). Pure,
/// so the `kubelet_pods` fuzz target and its replayed corpus exercise exactly what a poll does
/// with the bytes the kubelet sent.
pub fn parse_pods(body: &[u8], node: &str) -> Result<Vec<PodRecord>, serde_json::Error> {
    let list: PodObjectList = serde_json::from_slice(body)?;
    Ok(list
        .items
        .iter()
        .filter(|p| {
            p.spec
                .node_name
                .as_deref()
                .is_none_or(|n| n.is_empty() || n == node)
        })
        .filter_map(PodRecord::from_object)
        .collect())
}

/// Polls every `interval` until dropped. A failed poll keeps the previous pods (a kubelet
/// restart must not blank every pod's name) and is logged once per failure streak.
pub(crate) async fn run(
    client: kube::Client,
    path: String,
    node: String,
    interval: Duration,
    cache: PodCache,
) {
    let mut ticker = tokio::time::interval(interval);
    // A slow kubelet delays the next poll instead of causing a burst to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match poll_once(&client, &path, &node, &cache).await {
            Ok(n) => {
                if failing {
                    tracing::info!(pods = n, "kubelet pod list recovered");
                }
                failing = false;
                tracing::debug!(pods = n, "kubelet pods polled");
            }
            Err(e) => {
                cache.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(error = %e, "kubelet pod list failed; keeping the last known pods");
                }
                failing = true;
            }
        }
        cache.sweep(Instant::now());
    }
}
