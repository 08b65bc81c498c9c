//! `kube.*` beyond enabled/config/nodeName: the pod informer (issue 8).

use std::path::PathBuf;
use std::time::Duration;

use kepler_k8s::{InformerConfig, InformerMode};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{duration, err, ConfigError};

/// `kube.podInformer.*`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInformerSection {
    /// `kube.podInformer.mode`: `kubelet` (default) or `apiserver`.
    pub mode: Option<String>,
    /// `kube.podInformer.pollInterval` (kubelet mode; default 15s).
    pub poll_interval: Option<String>,
    /// `kube.podInformer.kubeletURL` (default `https://$NODE_IP:10250`).
    #[serde(rename = "kubeletURL")]
    pub kubelet_url: Option<String>,
    /// `kube.podInformer.kubeletInsecureTLS`: accept the kubelet's self-signed certificate.
    #[serde(rename = "kubeletInsecureTLS")]
    pub kubelet_insecure_tls: Option<bool>,
    #[serde(flatten)]
    pub(super) unknown: std::collections::BTreeMap<String, IgnoredAny>,
}

/// The informer configuration, `None` when `kube.enabled` is false.
pub(super) fn informer_config(
    enabled: bool,
    kubeconfig: Option<&str>,
    node_name: &str,
    section: Option<&PodInformerSection>,
) -> Result<Option<InformerConfig>, ConfigError> {
    let mode_text = section.and_then(|s| s.mode.as_deref()).unwrap_or("kubelet");
    let mode = InformerMode::parse(mode_text).ok_or_else(|| {
        err(
            "kube.podInformer.mode",
            format!("{mode_text:?} is not one of kubelet, apiserver"),
        )
    })?;
    let poll_interval = duration(
        "kube.podInformer.pollInterval",
        section
            .and_then(|s| s.poll_interval.as_deref())
            .unwrap_or("15s"),
    )?;
    if poll_interval < Duration::from_secs(1) || poll_interval > Duration::from_secs(3600) {
        return Err(err(
            "kube.podInformer.pollInterval",
            format!("{poll_interval:?} is out of range: accepted 1s to 1h"),
        ));
    }
    let kubelet_url = section
        .and_then(|s| s.kubelet_url.clone())
        .filter(|u| !u.trim().is_empty());
    if let Some(u) = &kubelet_url {
        if !u.starts_with("https://") {
            return Err(err(
                "kube.podInformer.kubeletURL",
                format!("{u:?} must start with https://"),
            ));
        }
    }
    if !enabled {
        return Ok(None);
    }
    Ok(Some(InformerConfig {
        mode,
        poll_interval,
        kubeconfig: kubeconfig.map(PathBuf::from),
        kubelet_url,
        kubelet_insecure_tls: section
            .and_then(|s| s.kubelet_insecure_tls)
            .unwrap_or(false),
        ..InformerConfig::new(node_name)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> PodInformerSection {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_are_kubelet_every_15s_and_disabled_is_none() {
        assert_eq!(informer_config(false, None, "n", None).unwrap(), None);
        let c = informer_config(true, None, "n1", None).unwrap().unwrap();
        assert_eq!(c.mode, InformerMode::Kubelet);
        assert_eq!(c.poll_interval, Duration::from_secs(15));
        assert_eq!(c.node_name, "n1");
        assert!(!c.kubelet_insecure_tls);
    }

    #[test]
    fn reads_every_key() {
        let s = section("mode: apiserver\npollInterval: 30s\nkubeletURL: https://10.0.0.1:10250\nkubeletInsecureTLS: true\n");
        let c = informer_config(true, Some("/k"), "n", Some(&s))
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
            let e = informer_config(false, None, "n", Some(&section(yaml))).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
        }
    }
}
