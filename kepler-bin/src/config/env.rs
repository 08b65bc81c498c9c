//! Environment variables: every YAML key is also `KEPLER_<PATH>`, the dotted path in upper
//! snake case (`monitor.maxTerminated` -> `KEPLER_MONITOR_MAX_TERMINATED`,
//! `dev.fake-cpu-meter.zones` -> `KEPLER_DEV_FAKE_CPU_METER_ZONES`). They sit between the
//! file and the flags (defaults < file < environment < flags), so a DaemonSet can set one
//! key without a config map. Values are written as on the command line: lists
//! comma-separated, booleans `true`/`false`.
//!
//! Unknown `KEPLER_*` variables are not warned about: Kubernetes injects
//! `KEPLER_EXPORTER_SERVICE_HOST` and the like for a Service named `kepler-exporter`.

use super::key::{Key, Ty, Value};
use super::keys::{KEYS, MONITOR_INTERVAL};

/// Other spellings of a key's variable: the setup guide sets `KEPLER_METRICS_INTERVAL`.
pub const ENV_ALIASES: &[(&str, &Key)] = &[("KEPLER_METRICS_INTERVAL", &MONITOR_INTERVAL)];

/// The variable of a key: `KEPLER_` and the path in upper snake case.
pub fn env_name(path: &str) -> String {
    let mut out = String::from("KEPLER_");
    let mut prev_lower = false;
    for c in path.chars() {
        if c == '.' || c == '-' {
            out.push('_');
            prev_lower = false;
        } else if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c);
            prev_lower = false;
        } else {
            out.push(c.to_ascii_uppercase());
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// A variable's value as the key's type; the error says what was expected.
fn parse(key: &Key, text: &str) -> Result<Option<Value>, String> {
    let list = || -> Vec<String> {
        text.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    Ok(Some(match key.ty {
        Ty::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(format!("{text:?} is not true or false")),
        },
        Ty::Int => Value::Int(
            text.trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a whole number"))?,
        ),
        Ty::Float => Value::Float(
            text.trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a number"))?,
        ),
        Ty::Str | Ty::Duration => Value::Str(text.to_string()),
        Ty::Strs => Value::Strs(list()),
        Ty::Floats => Value::Floats(
            list()
                .iter()
                .map(|s| s.parse().map_err(|_| format!("{s:?} is not a number")))
                .collect::<Result<_, _>>()?,
        ),
        Ty::Any => return Ok(None),
    }))
}

/// A key set by a variable: the key, its value, the variable's name.
pub type EnvValue = (&'static Key, Value, String);

/// The keys set in `env`, with their values; an unparsable value is an error (key,
/// message) naming the variable. An alias loses to the key's own variable.
pub fn read(env: &[(String, String)]) -> Result<Vec<EnvValue>, (String, String)> {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut out = Vec::new();
    for key in KEYS.iter().copied().filter(|k| k.in_yaml) {
        let name = env_name(key.path);
        let found = lookup(&name).map(|v| (name.clone(), v)).or_else(|| {
            ENV_ALIASES
                .iter()
                .find(|(_, k)| k.path == key.path)
                .and_then(|(alias, _)| lookup(alias).map(|v| (alias.to_string(), v)))
        });
        let Some((var, text)) = found else {
            continue;
        };
        if key.inert.is_some() {
            out.push((key, Value::Str(text.into()), var));
            continue;
        }
        match parse(key, text) {
            Ok(Some(v)) => out.push((key, v, var)),
            Ok(None) => {}
            Err(m) => return Err((key.path.to_string(), format!("{m} (from ${var})"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upper_snake_case() {
        assert_eq!(env_name("monitor.interval"), "KEPLER_MONITOR_INTERVAL");
        assert_eq!(
            env_name("monitor.maxTerminated"),
            "KEPLER_MONITOR_MAX_TERMINATED"
        );
        assert_eq!(
            env_name("dev.fake-cpu-meter.zones"),
            "KEPLER_DEV_FAKE_CPU_METER_ZONES"
        );
        assert_eq!(
            env_name("kube.podInformer.kubeletURL"),
            "KEPLER_KUBE_POD_INFORMER_KUBELET_URL"
        );
        assert_eq!(
            env_name("kube.podInformer.kubeletInsecureTLS"),
            "KEPLER_KUBE_POD_INFORMER_KUBELET_INSECURE_TLS"
        );
    }

    /// Every key has its own variable: no two keys share one.
    #[test]
    fn names_are_unique() {
        let mut names: Vec<String> = KEYS.iter().map(|k| env_name(k.path)).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
