//! `apiserver` mode: one kube-rs watcher on pods with `spec.nodeName=<node>`: one list, then
//! one long watch per node, resumed from the last resourceVersion; when the server answers
//! 410 Gone (the version was compacted away) the watcher relists and the cache is replaced.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;

use crate::cache::PodCache;
use crate::meta::{PodObject, PodRecord};

/// The watcher's list and watch parameters for `node`.
pub fn watch_config(node: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("spec.nodeName={node}"))
}

/// Watches until dropped. Errors are retried by the watcher with exponential backoff.
pub(crate) async fn run(client: kube::Client, node: String, cache: PodCache, sweep: Duration) {
    let api: Api<PodObject> = Api::all(client);
    let mut events = watcher::watcher(api, watch_config(&node))
        .default_backoff()
        .boxed();
    let mut sweeper = tokio::time::interval(sweep);
    let mut listing: Option<Vec<PodRecord>> = None;
    let mut lists = 0u64;
    let mut failing = false;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = sweeper.tick() => {
                cache.sweep(Instant::now());
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Ok(Event::Init) => {
                lists += 1;
                if lists > 1 {
                    cache.stats.relists.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("pod watch restarted with a full list");
                }
                listing = Some(Vec::new());
            }
            Ok(Event::InitApply(pod)) => {
                if let (Some(buf), Some(r)) = (listing.as_mut(), PodRecord::from_object(&pod)) {
                    buf.push(r);
                }
            }
            Ok(Event::InitDone) => {
                let pods = listing.take().unwrap_or_default();
                tracing::debug!(pods = pods.len(), "pods listed");
                cache.replace_all(pods, Instant::now());
                if failing {
                    tracing::info!("pod watch recovered");
                }
                failing = false;
            }
            Ok(Event::Apply(pod)) => {
                if let Some(r) = PodRecord::from_object(&pod) {
                    cache.apply(r);
                }
                failing = false;
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    cache.remove(uid, Instant::now());
                }
            }
            Err(e) => {
                cache.stats.watch_errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(error = %e, "pod watch failed; retrying with backoff, keeping the last known pods");
                }
                failing = true;
            }
        }
    }
}
