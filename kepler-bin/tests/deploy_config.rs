//! The config files that deploy/ ships (issue 15): the plain ConfigMap and the Helm chart's
//! `config:` values are read by kepler's own config loader without an error or a warning,
//! the chart's values name every key kepler has, and both say the same.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kepler_bin::config::{Config, Flags};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The YAML keys of the README's generated tables (made from `config/keys.rs`).
fn readme_keys() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut keys = BTreeSet::new();
    for table in ["main", "redfish", "ipmi", "carbon"] {
        let body = readme
            .split(&format!("<!-- config-keys:{table} -->"))
            .nth(1)
            .and_then(|s| s.split(&format!("<!-- /config-keys:{table} -->")).next())
            .unwrap_or_else(|| panic!("README has no config-keys:{table} table"));
        for row in body.lines().skip(3) {
            let first = row.split('|').nth(1).unwrap_or_default().trim();
            let meaning = row.split('|').nth(4).unwrap_or_default();
            // Go Kepler's keys that kepler accepts with a warning are left out.
            if meaning.contains("has no effect") {
                continue;
            }
            if let Some(key) = first.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
                keys.insert(key.to_string());
            }
        }
    }
    assert!(keys.contains("kube.podInformer.mode"), "{keys:?}");
    keys
}

/// Dotted paths of the leaves (scalars, lists, nulls) of a YAML mapping.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// Drops nulls and empty mappings: kepler reads both as "not written", and Helm leaves null
/// values out of what it renders.
fn prune(v: &mut Value) {
    if let Value::Object(m) = v {
        for x in m.values_mut() {
            prune(x);
        }
        m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(|o| o.is_empty())));
    }
}

fn load(name: &str, text: &str) -> Config {
    let config = Config::build(
        &Flags::default(),
        Some((name, text)),
        Some("node-1".into()),
        || "host".into(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    assert!(
        config.warnings.is_empty(),
        "{name}: warnings {:?}",
        config.warnings
    );
    config
}

#[test]
fn deploy_configs_load_cleanly_and_agree_issue_15() {
    let values = yaml("deploy/helm/kepler/values.yaml");
    let chart = values["config"].clone();
    let mut named = BTreeSet::new();
    leaves(&chart, "", &mut named);
    assert_eq!(
        named,
        readme_keys(),
        "the chart's config: values must name every key of kepler's config"
    );
    // JSON is YAML: the values tree, nulls included, as kepler reads it.
    let from_chart = load("values.yaml config", &chart.to_string());

    let cm = yaml("deploy/kubernetes/30-configmap.yaml");
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    let from_plain = load("30-configmap.yaml", text);
    let defaults = Config::build(&Flags::default(), None, Some("node-1".into()), || {
        "host".into()
    })
    .unwrap();
    for c in [&from_chart, &from_plain] {
        assert_eq!(c.preferred_meters, defaults.preferred_meters);
        assert!(c.preferred_meters.iter().any(|m| m == "hwmon"));
        assert_eq!(c.sysfs, PathBuf::from("/host/sys"));
        assert_eq!(c.procfs, PathBuf::from("/host/proc"));
        assert_eq!(c.listen, vec![":28282"]);
    }
    let mut plain: Value = serde_saphyr::from_str(text).unwrap();
    let mut chart = chart;
    prune(&mut plain);
    prune(&mut chart);
    assert_eq!(
        plain, chart,
        "30-configmap.yaml and the chart's config: differ"
    );
}
