//! Wiring of the pod informer (issue 8): start it, wrap the activity source, report its
//! self-metrics.

use kepler_core::ActivitySource;
use kepler_export::ExtraMetric;
use kepler_k8s::{InformerMode, PodActivity, PodCache, PodInformer, RequestKind, StartError};

use crate::config::{Config, ConfigError};
use crate::monitor::ExtraStats;
use crate::run::RunError;

/// Starts the informer when `kube.enabled`, and wraps `activity` so that it reads the cache.
/// The informer must live as long as the monitor (dropping it stops the background task).
pub fn attach(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    activity: Box<dyn ActivitySource>,
) -> Result<(Box<dyn ActivitySource>, Option<PodInformer>), RunError> {
    let Some(cfg) = &config.kube_informer else {
        return Ok((activity, None));
    };
    let informer = runtime.block_on(PodInformer::start(cfg)).map_err(|e| {
        let key = match &e {
            StartError::NoNodeName => "kube.nodeName",
            StartError::Kubeconfig { .. } => "kube.config",
            StartError::KubeletUrl { .. } => "kube.podInformer.kubeletURL",
            _ => return RunError::Other(anyhow::Error::new(e)),
        };
        RunError::Config(ConfigError {
            key: key.into(),
            message: e.to_string(),
        })
    })?;
    tracing::info!(
        mode = ?cfg.mode,
        node_name = %cfg.node_name,
        poll_interval = ?cfg.poll_interval,
        "pod informer started"
    );
    let cache = informer.cache().clone();
    Ok((Box::new(PodActivity::new(activity, cache)), Some(informer)))
}

/// The informer's self-metrics, collected at every tick.
pub fn self_metrics(cache: PodCache, mode: InformerMode) -> ExtraStats {
    Box::new(move || metrics(&cache, mode))
}

fn metrics(cache: &PodCache, mode: InformerMode) -> Vec<ExtraMetric> {
    let st = cache.stats();
    let m = |name, help, counter, labels: Vec<(&'static str, String)>, value: u64| ExtraMetric {
        name,
        help,
        counter,
        labels,
        value: value as f64,
    };
    let mut out = vec![
        m(
            "kepler_kube_synced",
            "1 once the first pod list (kubelet poll or API-server list) succeeded.",
            false,
            vec![],
            u64::from(st.synced),
        ),
        m(
            "kepler_kube_cache_pods",
            "Pods of this node in the metadata cache, including deleted ones still retained.",
            false,
            vec![],
            st.pods,
        ),
        m(
            "kepler_kube_cache_containers",
            "Container ids in the metadata cache.",
            false,
            vec![],
            st.containers,
        ),
        m(
            "kepler_kube_negative_cache_entries",
            "Container ids cached as belonging to no pod (sandboxes, system containers).",
            false,
            vec![],
            st.negative_entries,
        ),
        m(
            "kepler_kube_cache_misses_total",
            "Lookups of a container id in no pod and not in the negative cache; never a request.",
            true,
            vec![],
            st.misses,
        ),
        m(
            "kepler_kube_negative_cache_hits_total",
            "Lookups answered by the negative cache.",
            true,
            vec![],
            st.negative_hits,
        ),
    ];
    let kinds: &[RequestKind] = match mode {
        InformerMode::Kubelet => {
            out.push(m(
                "kepler_kube_poll_errors_total",
                "Failed kubelet pod list polls; the last known pods are kept.",
                true,
                vec![],
                st.poll_errors,
            ));
            &[RequestKind::KubeletPods]
        }
        InformerMode::ApiServer => {
            let name = "kepler_kube_watch_restarts_total";
            let help = "Pod watch restarts: after an error (then resumed), or with a full relist (410 Gone).";
            out.push(m(
                name,
                help,
                true,
                vec![("reason", "error".into())],
                st.watch_errors,
            ));
            out.push(m(
                name,
                help,
                true,
                vec![("reason", "relist".into())],
                st.relists,
            ));
            &[RequestKind::List, RequestKind::Watch]
        }
    };
    let requests = |k: &RequestKind| st.requests.iter().find(|(kind, _)| kind == k).map(|r| r.1);
    for k in kinds {
        let r = requests(k).unwrap_or_default();
        for (result, n) in [("ok", r.ok), ("error", r.failed)] {
            out.push(m(
                "kepler_kube_requests_total",
                "Requests to the kubelet or API server, by request and result.",
                true,
                vec![("request", k.label().into()), ("result", result.into())],
                n,
            ));
        }
    }
    for k in kinds {
        let r = requests(k).unwrap_or_default();
        out.push(ExtraMetric {
            name: "kepler_kube_request_duration_seconds_total",
            help: "Time spent in requests to the kubelet or API server (to the response head).",
            counter: true,
            labels: vec![("request", k.label().into())],
            value: r.seconds_total,
        });
    }
    for k in kinds {
        let r = requests(k).unwrap_or_default();
        out.push(ExtraMetric {
            name: "kepler_kube_last_request_duration_seconds",
            help: "Time the latest request to the kubelet or API server took.",
            counter: false,
            labels: vec![("request", k.label().into())],
            value: r.last_seconds,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kepler_k8s::CacheConfig;

    #[test]
    fn families_are_adjacent_and_counters_end_in_total() {
        for mode in [InformerMode::Kubelet, InformerMode::ApiServer] {
            let ms = metrics(&PodCache::new(CacheConfig::default()), mode);
            let mut seen: Vec<&str> = Vec::new();
            for w in ms.windows(2) {
                if w[0].name != w[1].name {
                    assert!(!seen.contains(&w[1].name), "{} split", w[1].name);
                    seen.push(w[0].name);
                }
            }
            for m in &ms {
                assert_eq!(m.counter, m.name.ends_with("_total"), "{}", m.name);
            }
        }
    }
}
