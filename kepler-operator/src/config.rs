//! Kepler's `config.yaml` for a PowerMonitor: three layers, each merged over the one before.
//!
//! 1. The base: what kepler needs inside the DaemonSet (host mounts, port, pod informer) and
//!    the [`Defaults`](crate::Defaults) of the spec fields.
//! 2. Each `additionalConfigMaps` entry's `config.yaml`, in order.
//! 3. The spec fields the user actually wrote (a defaulted field does not hide layer 2).
//!
//! Maps merge key by key; a scalar or a list replaces what was below it.

use serde_json::{json, Map, Value};

use crate::crd::{ConfigSpec, Defaults, PowerMonitorSpec, Resolved, SecurityMode};

/// The port kepler listens on (Kepler's default).
pub const KEPLER_PORT: u16 = 28282;
/// Where the serving certificate Secret is mounted in rbac mode.
pub const TLS_DIR: &str = "/etc/kepler-tls";
/// kepler's `web.configFile` in rbac mode (a key of the config ConfigMap).
pub const WEB_CONFIG_PATH: &str = "/etc/kepler/web-config.yaml";

/// The exporter-toolkit web config of rbac mode: TLS from the mounted Secret.
pub fn web_config_yaml() -> String {
    format!("tls_server_config:\n  cert_file: {TLS_DIR}/tls.crt\n  key_file: {TLS_DIR}/tls.key\n")
}

/// A ConfigMap's `config.yaml` that is not a YAML mapping.
#[derive(Debug, thiserror::Error)]
#[error("config.yaml of ConfigMap {configmap}: {problem}")]
pub struct BadConfigYaml {
    /// The ConfigMap's name.
    pub configmap: String,
    /// What is wrong.
    pub problem: String,
}

/// Parses one additional ConfigMap's `config.yaml` into a mapping.
pub fn parse_config_yaml(configmap: &str, text: &str) -> Result<Value, BadConfigYaml> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| BadConfigYaml {
        configmap: configmap.into(),
        problem: e.to_string(),
    })?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(BadConfigYaml {
            configmap: configmap.into(),
            problem: format!("expected a mapping of kepler's keys, found {other}"),
        }),
    }
}

/// The merged config as YAML text. `additional` are the parsed `config.yaml`s in spec order.
pub fn render(spec: &PowerMonitorSpec, resolved: &Resolved, additional: &[Value]) -> String {
    let mut merged = base(resolved);
    for layer in additional {
        merge(&mut merged, layer.clone());
    }
    let written = spec
        .kepler
        .as_ref()
        .and_then(|k| k.config.clone())
        .unwrap_or_default();
    merge(&mut merged, explicit(&written, resolved));
    serde_saphyr::to_string(&merged).expect("a JSON value always serializes")
}

fn base(r: &Resolved) -> Value {
    let mut v = json!({
        "log": {"level": Defaults::LOG_LEVEL.as_str()},
        "host": {"sysfs": "/host/sys", "procfs": "/host/proc"},
        "monitor": {
            "interval": Defaults::SAMPLE_RATE,
            "staleness": Defaults::STALENESS,
            "maxTerminated": Defaults::MAX_TERMINATED,
        },
        "exporter": {"prometheus": {
            "enabled": true,
            "metricsLevel": Defaults::METRIC_LEVELS.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        }},
        "web": {"listenAddresses": [format!(":{KEPLER_PORT}")]},
        "kube": {"enabled": true, "podInformer": {"mode": "kubelet", "kubeletInsecureTLS": true}},
    });
    if r.security_mode == SecurityMode::Rbac {
        let allowed: Vec<String> = r
            .allowed_sa_names
            .iter()
            .map(|(ns, n)| format!("{ns}:{n}"))
            .collect();
        v["web"]["auth"] = json!({"kubernetes": {"enabled": true, "allowedSANames": allowed}});
        // Bearer tokens only over TLS.
        v["web"]["configFile"] = json!(WEB_CONFIG_PATH);
    }
    v
}

fn explicit(written: &ConfigSpec, r: &Resolved) -> Value {
    let mut v = json!({});
    if written.log_level.is_some() {
        v["log"] = json!({"level": r.log_level.as_str()});
    }
    let mut monitor = Map::new();
    if written.sample_rate.is_some() {
        monitor.insert("interval".into(), json!(r.sample_rate));
    }
    if written.staleness.is_some() {
        monitor.insert("staleness".into(), json!(r.staleness));
    }
    if written.max_terminated.is_some() {
        monitor.insert("maxTerminated".into(), json!(r.max_terminated));
    }
    if !monitor.is_empty() {
        v["monitor"] = Value::Object(monitor);
    }
    if written.metric_levels.is_some() {
        let levels: Vec<&str> = r.metric_levels.iter().map(|l| l.as_str()).collect();
        v["exporter"] = json!({"prometheus": {"metricsLevel": levels}});
    }
    v
}

/// Merges `over` into `under`: maps key by key, anything else replaced.
fn merge(under: &mut Value, over: Value) {
    match (under, over) {
        (Value::Object(u), Value::Object(o)) => {
            for (k, v) in o {
                match u.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        u.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> PowerMonitorSpec {
        serde_json::from_str(json).unwrap()
    }

    fn parsed(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_then_configmaps_then_written_spec() {
        let s = spec(r#"{"kepler":{"config":{"metricLevels":["node","process"]}}}"#);
        let r = s.resolve().unwrap();
        let extra = parse_config_yaml(
            "extra",
            "monitor:\n  interval: 10s\nexporter:\n  prometheus:\n    metricsLevel: [pod]\n",
        )
        .unwrap();
        let out = parsed(&render(&s, &r, &[extra]));
        // The ConfigMap beats the default sampleRate (not written in the spec) ...
        assert_eq!(out["monitor"]["interval"], "10s");
        // ... and the written metricLevels beat the ConfigMap.
        assert_eq!(
            out["exporter"]["prometheus"]["metricsLevel"],
            json!(["node", "process"])
        );
        // Untouched defaults stay.
        assert_eq!(out["monitor"]["maxTerminated"], 500);
        assert_eq!(out["host"]["procfs"], "/host/proc");
        assert_eq!(out["exporter"]["prometheus"]["enabled"], true);
    }

    #[test]
    fn a_configmap_that_is_not_a_mapping_is_named() {
        let e = parse_config_yaml("broken", "- a\n- b\n").unwrap_err();
        assert!(e.to_string().contains("broken"), "{e}");
        assert!(parse_config_yaml("empty", "").is_ok());
    }

    #[test]
    fn rbac_mode_turns_on_kepler_token_checks() {
        let s = spec(
            r#"{"kepler":{"deployment":{"security":{"mode":"rbac","allowedSANames":["monitoring:prometheus-k8s"]}}}}"#,
        );
        let out = parsed(&render(&s, &s.resolve().unwrap(), &[]));
        assert_eq!(
            out["web"]["auth"]["kubernetes"]["allowedSANames"],
            json!(["monitoring:prometheus-k8s"])
        );
        assert_eq!(out["web"]["configFile"], WEB_CONFIG_PATH);
    }
}
