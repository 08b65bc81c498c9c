//! `kube.*` beyond enabled/config/nodeName: the pod informer (issue 8).

use std::path::PathBuf;

use kepler_k8s::{InformerConfig, InformerMode};

use super::keys::*;
use super::{ConfigError, RawConfig};

/// The informer configuration, `None` when `kube.enabled` is false. Its keys are checked
/// even then, so a mistake shows before Kubernetes is turned on.
pub(super) fn informer_config(
    raw: &RawConfig,
    enabled: bool,
    kubeconfig: Option<&str>,
    node_name: &str,
) -> Result<Option<InformerConfig>, ConfigError> {
    let mode = match raw.value::<String>(&POD_INFORMER_MODE)?.as_str() {
        "apiserver" => InformerMode::ApiServer,
        _ => InformerMode::Kubelet,
    };
    let poll_interval = raw.value(&POD_INFORMER_POLL_INTERVAL)?;
    let kubelet_url = raw
        .get::<String>(&POD_INFORMER_KUBELET_URL)?
        .filter(|u| !u.trim().is_empty());
    let kubelet_insecure_tls = raw.value(&POD_INFORMER_KUBELET_INSECURE_TLS)?;
    if !enabled {
        return Ok(None);
    }
    Ok(Some(InformerConfig {
        mode,
        poll_interval,
        kubeconfig: kubeconfig.map(PathBuf::from),
        kubelet_url,
        kubelet_insecure_tls,
        ..InformerConfig::new(node_name)
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::build;
    use super::*;

    fn informer(flags: &[&str], yaml: &str) -> Result<Option<InformerConfig>, ConfigError> {
        build(flags, Some(&format!("kube:\n  podInformer:\n{yaml}"))).map(|c| c.kube_informer)
    }

    #[test]
    fn defaults_are_kubelet_every_15s_and_disabled_is_none() {
        assert_eq!(build(&[], None).unwrap().kube_informer, None);
        let c = build(&["--kube.enable", "--kube.node-name=n1"], None)
            .unwrap()
            .kube_informer
            .unwrap();
        assert_eq!(c.mode, InformerMode::Kubelet);
        assert_eq!(c.poll_interval, Duration::from_secs(15));
        assert_eq!(c.node_name, "n1");
        assert!(!c.kubelet_insecure_tls);
    }

    #[test]
    fn reads_every_key() {
        let c = informer(
            &["--kube.enable", "--kube.config=/k"],
            "    mode: apiserver\n    pollInterval: 30s\n    kubeletURL: https://10.0.0.1:10250\n    kubeletInsecureTLS: true\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.mode, InformerMode::ApiServer);
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.kubelet_url.as_deref(), Some("https://10.0.0.1:10250"));
        assert!(c.kubelet_insecure_tls);
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
    }

    #[test]
    fn bad_values_name_their_key_even_when_disabled() {
        for (yaml, key) in [
            ("mode: informer", "kube.podInformer.mode"),
            ("pollInterval: 100ms", "kube.podInformer.pollInterval"),
            ("pollInterval: soon", "kube.podInformer.pollInterval"),
            ("kubeletURL: http://x:10255", "kube.podInformer.kubeletURL"),
        ] {
            let e = informer(&[], &format!("    {yaml}\n")).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
        }
    }
}
