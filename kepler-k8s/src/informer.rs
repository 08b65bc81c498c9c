//! Starting the background task that fills the [`PodCache`] in the chosen mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cache::{CacheConfig, PodCache};
use crate::stats::RequestKind;
use crate::timing::TimingLayer;

/// Where pod metadata comes from (`kube.podInformer.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InformerMode {
    /// Poll the node's kubelet `/pods` (default; no API-server load).
    #[default]
    Kubelet,
    /// Watch pods of this node on the API server.
    ApiServer,
}

impl InformerMode {
    /// Parses `kubelet` or `apiserver`.
    pub fn parse(s: &str) -> Option<InformerMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kubelet" => Some(InformerMode::Kubelet),
            "apiserver" => Some(InformerMode::ApiServer),
            _ => None,
        }
    }
}

/// How to reach Kubernetes and what to cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformerConfig {
    /// The mode.
    pub mode: InformerMode,
    /// This node's name: the watch's field selector, the filter on `/pods`.
    pub node_name: String,
    /// Kubeconfig path; `None`: the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// `kubelet` mode: time between two `/pods` requests.
    pub poll_interval: Duration,
    /// `kubelet` mode: the kubelet's base URL, e.g. `https://10.0.0.5:10250`. `None`: the
    /// node's IP from `$NODE_IP` (the downward API's `status.hostIP`), else its name, on 10250.
    pub kubelet_url: Option<String>,
    /// `kubelet` mode: skip verification of the kubelet's serving certificate (kubeadm and
    /// kind kubelets serve a self-signed one that no cluster CA signs).
    pub kubelet_insecure_tls: bool,
    /// Cache expiries.
    pub cache: CacheConfig,
}

impl InformerConfig {
    /// Defaults for `node_name`: kubelet mode, 15 s polls, in-cluster credentials.
    pub fn new(node_name: impl Into<String>) -> InformerConfig {
        InformerConfig {
            mode: InformerMode::Kubelet,
            node_name: node_name.into(),
            kubeconfig: None,
            poll_interval: Duration::from_secs(15),
            kubelet_url: None,
            kubelet_insecure_tls: false,
            cache: CacheConfig::default(),
        }
    }

    /// The kubelet URL this config polls, `NODE_IP` given.
    pub fn kubelet_base(&self, node_ip: Option<&str>) -> String {
        match &self.kubelet_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let host = node_ip.filter(|s| !s.is_empty()).unwrap_or(&self.node_name);
                if host.contains(':') {
                    format!("https://[{host}]:10250")
                } else {
                    format!("https://{host}:10250")
                }
            }
        }
    }
}

/// Why the informer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No node name: the informer would watch every pod of the cluster.
    #[error("kube.nodeName is empty: set it, --kube.node-name or $NODE_NAME")]
    NoNodeName,
    /// The kubeconfig could not be read.
    #[error("cannot load kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Not running in a pod and no kubeconfig given.
    #[error("no in-cluster service account (set kube.config to a kubeconfig): {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// A bad URL.
    #[error("kube.podInformer.kubeletURL {url:?} is not a URL: {message}")]
    KubeletUrl {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A `web.auth.kubernetes.allowedSANames` entry is not `namespace:name`.
    #[error("web.auth.kubernetes.allowedSANames: {0:?} is not namespace:serviceaccount")]
    ServiceAccountName(String),
    /// The HTTP client could not be built (bad CA, bad client certificate...).
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// The running informer: its cache, and the background task that fills it (aborted on drop).
#[derive(Debug)]
pub struct PodInformer {
    cache: PodCache,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodInformer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads credentials from the kubeconfig or the in-cluster service account.
pub async fn load_client_config(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Config, StartError> {
    // kube's rustls client uses the process-wide provider: kepler-crypto's.
    kepler_crypto::install_process_default();
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| StartError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| StartError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })
        }
        None => kube::Config::incluster().map_err(StartError::InCluster),
    }
}

impl PodInformer {
    /// Loads credentials and spawns the informer on the current tokio runtime. Returns at
    /// once: the cache fills in the background, and lookups miss until the first list.
    pub async fn start(config: &InformerConfig) -> Result<PodInformer, StartError> {
        if config.node_name.trim().is_empty() {
            return Err(StartError::NoNodeName);
        }
        let mut base = load_client_config(config.kubeconfig.as_deref()).await?;
        let cache = PodCache::new(config.cache);
        let kind = match config.mode {
            InformerMode::ApiServer => None,
            InformerMode::Kubelet => {
                let url = config.kubelet_base(std::env::var("NODE_IP").ok().as_deref());
                base.cluster_url =
                    url.parse()
                        .map_err(|e: http::uri::InvalidUri| StartError::KubeletUrl {
                            url: url.clone(),
                            message: e.to_string(),
                        })?;
                // The kubelet's certificate names the node, not the API server.
                base.tls_server_name = None;
                base.accept_invalid_certs = config.kubelet_insecure_tls;
                Some(RequestKind::KubeletPods)
            }
        };
        let layer = TimingLayer {
            stats: Arc::clone(&cache.stats),
            kind,
        };
        let client = ClientBuilder::try_from(base)
            .map_err(StartError::Client)?
            .with_layer(&layer)
            .build();
        Ok(PodInformer::spawn_with_client(client, config, cache))
    }

    /// Spawns the informer with a ready client (for kubelet mode, one whose base URL is the
    /// kubelet). Tests pass a mock service here.
    pub fn spawn_with_client(
        client: kube::Client,
        config: &InformerConfig,
        cache: PodCache,
    ) -> PodInformer {
        let node = config.node_name.clone();
        let task_cache = cache.clone();
        let sweep = config.cache.deleted_retention.max(Duration::from_secs(1)) / 2;
        let task = match config.mode {
            InformerMode::Kubelet => tokio::spawn(crate::kubelet::run(
                client,
                "/pods".into(),
                node,
                config.poll_interval,
                task_cache,
            )),
            InformerMode::ApiServer => {
                tokio::spawn(crate::apiserver::run(client, node, task_cache, sweep))
            }
        };
        PodInformer { cache, task }
    }

    /// The cache this informer fills.
    pub fn cache(&self) -> &PodCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_url_from_node_ip_or_name() {
        let mut c = InformerConfig::new("node-a");
        assert_eq!(c.kubelet_base(Some("10.0.0.5")), "https://10.0.0.5:10250");
        assert_eq!(c.kubelet_base(Some("fd00::5")), "https://[fd00::5]:10250");
        assert_eq!(c.kubelet_base(None), "https://node-a:10250");
        c.kubelet_url = Some("https://127.0.0.1:9999/".into());
        assert_eq!(c.kubelet_base(Some("10.0.0.5")), "https://127.0.0.1:9999");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(InformerMode::parse("Kubelet"), Some(InformerMode::Kubelet));
        assert_eq!(
            InformerMode::parse("apiserver"),
            Some(InformerMode::ApiServer)
        );
        assert_eq!(InformerMode::parse("informer"), None);
    }
}
