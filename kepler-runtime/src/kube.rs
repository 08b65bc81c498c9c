//! The pod informer (issue 8): started with the monitor, it fills a metadata cache in the
//! background that the activity source reads after each read; a tick never waits on the
//! kubelet or the API server.

use kepler_core::ActivitySource;
use kepler_export::{KubeMode, KubeRequestStats, KubeStats};
use kepler_k8s::{
    InformerConfig, InformerMode, PodActivity, PodCache, PodInformer, RequestKind, StartError,
};

use crate::error::BuildError;

/// A running informer. Dropping it stops its background task.
pub(crate) struct Kube {
    _informer: PodInformer,
    cache: PodCache,
    mode: InformerMode,
}

impl Kube {
    /// Starts the informer on `tokio` and wraps `activity` so that it reads the cache.
    pub(crate) fn attach(
        config: &InformerConfig,
        tokio: &tokio::runtime::Handle,
        activity: Box<dyn ActivitySource>,
    ) -> Result<(Kube, Box<dyn ActivitySource>), BuildError> {
        let informer = tokio.block_on(PodInformer::start(config)).map_err(|e| {
            let key = match &e {
                StartError::NoNodeName => "kube.nodeName",
                StartError::Kubeconfig { .. } => "kube.config",
                StartError::KubeletUrl { .. } => "kube.podInformer.kubeletURL",
                _ => return BuildError::Kube(e),
            };
            BuildError::Setting {
                key,
                message: e.to_string(),
            }
        })?;
        tracing::info!(
            mode = ?config.mode,
            node_name = %config.node_name,
            poll_interval = ?config.poll_interval,
            "pod informer started"
        );
        let cache = informer.cache().clone();
        let activity = Box::new(PodActivity::new(activity, cache.clone()));
        let kube = Kube {
            _informer: informer,
            cache,
            mode: config.mode,
        };
        Ok((kube, activity))
    }

    /// The informer's counters now.
    pub(crate) fn stats(&self) -> KubeStats {
        stats(&self.cache, self.mode)
    }
}

/// Copies the cache's counters into the exporter's plain struct, with the requests that the
/// mode makes.
fn stats(cache: &PodCache, mode: InformerMode) -> KubeStats {
    let st = cache.stats();
    let (mode, kinds): (KubeMode, &[RequestKind]) = match mode {
        InformerMode::Kubelet => (
            KubeMode::Kubelet {
                poll_errors: st.poll_errors,
            },
            &[RequestKind::KubeletPods],
        ),
        InformerMode::ApiServer => (
            KubeMode::ApiServer {
                watch_errors: st.watch_errors,
                relists: st.relists,
            },
            &[RequestKind::List, RequestKind::Watch],
        ),
    };
    let requests = kinds
        .iter()
        .map(|k| {
            let r = st
                .requests
                .iter()
                .find(|(kind, _)| kind == k)
                .map(|r| r.1)
                .unwrap_or_default();
            KubeRequestStats {
                request: k.label(),
                ok: r.ok,
                failed: r.failed,
                seconds_total: r.seconds_total,
                last_seconds: r.last_seconds,
            }
        })
        .collect();
    KubeStats {
        synced: st.synced,
        pods: st.pods,
        containers: st.containers,
        negative_entries: st.negative_entries,
        misses: st.misses,
        negative_hits: st.negative_hits,
        mode,
        requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kepler_k8s::CacheConfig;

    #[test]
    fn each_mode_reports_its_own_requests() {
        let cache = PodCache::new(CacheConfig::default());
        let k = stats(&cache, InformerMode::Kubelet);
        assert_eq!(k.mode, KubeMode::Kubelet { poll_errors: 0 });
        let names: Vec<&str> = k.requests.iter().map(|r| r.request).collect();
        assert_eq!(names, ["kubelet_pods"]);
        let a = stats(&cache, InformerMode::ApiServer);
        assert!(matches!(a.mode, KubeMode::ApiServer { .. }));
        let names: Vec<&str> = a.requests.iter().map(|r| r.request).collect();
        assert_eq!(names, ["list", "watch"]);
        assert!(!a.synced);
    }
}
