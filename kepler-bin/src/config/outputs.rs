//! Config of what kepler writes (issue 17): the Prometheus endpoint and its extras (the
//! `process` collector, the `guide` compatibility series), the stdout table and JSON lines,
//! and the Go Kepler switches that have no Rust counterpart (`go` collector, pprof), which
//! are accepted with a warning.

use std::path::PathBuf;

use kepler_export::FoldConfig;

use super::keys::*;
use super::{ConfigError, RawConfig};

/// The validated output settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// `exporter.prometheus.enabled`: serve HTTP (`/metrics`, `/healthz`, `/readyz`).
    pub prometheus: bool,
    /// `exporter.prometheus.debugCollectors` has `process`.
    pub process_metrics: bool,
    /// `exporter.prometheus.compat` has `guide`.
    pub compat_guide: bool,
    /// `exporter.prometheus.process.topN` and `.minJoules` (issue 21).
    pub process_fold: FoldConfig,
    /// `exporter.stdout.enabled`
    pub stdout: bool,
    /// `exporter.json.path`; `-` is stdout.
    pub json: Option<PathBuf>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            prometheus: true,
            process_metrics: false,
            compat_guide: false,
            process_fold: FoldConfig::default(),
            stdout: false,
            json: None,
        }
    }
}

/// The output keys; warnings for the Go-only switches are added to `warnings`.
pub fn outputs(raw: &RawConfig, warnings: &mut Vec<String>) -> Result<Outputs, ConfigError> {
    let collectors: Vec<String> = raw.get(&DEBUG_COLLECTORS)?.unwrap_or_default();
    if collectors.iter().any(|c| c == "go") {
        warnings.push(
            "exporter.prometheus.debugCollectors: \"go\" has no effect in kepler-rs (there is \
             no Go runtime); \"process\" gives kepler's own process_* metrics"
                .into(),
        );
    }
    if raw.value::<bool>(&DEBUG_PPROF)? {
        warnings.push(
            "debug.pprof.enabled has no effect in kepler-rs: there is no pprof endpoint; \
             profile with `perf record -g -p $(pidof kepler)`"
                .into(),
        );
    }
    let compat: Vec<String> = raw.get(&COMPAT)?.unwrap_or_default();
    let json = raw
        .get::<String>(&JSON_PATH)?
        .filter(|p| !p.trim().is_empty())
        .map(PathBuf::from);
    Ok(Outputs {
        prometheus: raw.value(&PROMETHEUS_ENABLED)?,
        process_metrics: collectors.iter().any(|c| c == "process"),
        compat_guide: compat.iter().any(|c| c == "guide"),
        process_fold: FoldConfig {
            top_n: raw.value::<i64>(&PROCESS_TOP_N)?.max(0) as usize,
            // Joules to integer µJ; the check bounds it to 1e9 J.
            min_uj: (raw.value::<f64>(&PROCESS_MIN_JOULES)? * 1e6).round() as u64,
        },
        stdout: raw.value(&STDOUT_ENABLED)?,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::build;
    use super::*;

    #[test]
    fn upstream_flags_and_keys_issue_17() {
        let c = build(&[], None).unwrap();
        assert_eq!(c.outputs, Outputs::default());
        let c = build(
            &[
                "--exporter.stdout",
                "--exporter.prometheus=false",
                "--exporter.prometheus.debug-collectors=go,process",
                "--exporter.json",
                "--debug.pprof",
            ],
            None,
        )
        .unwrap();
        assert!(c.outputs.stdout && !c.outputs.prometheus && c.outputs.process_metrics);
        assert_eq!(c.outputs.json, Some(PathBuf::from("-")));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("\"go\"") && c.warnings[1].contains("pprof"));
        let c = build(&["--exporter.json=/tmp/k.jsonl"], None).unwrap();
        assert_eq!(c.outputs.json, Some(PathBuf::from("/tmp/k.jsonl")));
        let c = build(
            &[],
            Some("exporter:\n  prometheus:\n    compat: [guide]\n    debugCollectors: [process]\n"),
        )
        .unwrap();
        assert!(c.outputs.compat_guide && c.outputs.process_metrics);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let e = build(&["--exporter.prometheus.compat=grafana"], None).unwrap_err();
        assert_eq!(e.key, "exporter.prometheus.compat");
        let e = build(&["--exporter.prometheus.debug-collectors=jvm"], None).unwrap_err();
        assert_eq!(e.key, "exporter.prometheus.debugCollectors");
    }

    #[test]
    fn process_fold_keys_issue_21() {
        assert!(!build(&[], None).unwrap().outputs.process_fold.is_enabled());
        let c = build(
            &[
                "--exporter.prometheus.process.top-n=20",
                "--exporter.prometheus.process.min-joules=0.25",
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            c.outputs.process_fold,
            FoldConfig {
                top_n: 20,
                min_uj: 250_000
            }
        );
        let c = build(
            &[],
            Some("exporter:\n  prometheus:\n    process:\n      topN: 5\n      minJoules: 2\n"),
        )
        .unwrap();
        assert_eq!(
            c.outputs.process_fold,
            FoldConfig {
                top_n: 5,
                min_uj: 2_000_000
            }
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let e = build(&["--exporter.prometheus.process.top-n=-1"], None).unwrap_err();
        assert_eq!(e.key, "exporter.prometheus.process.topN");
        assert!(e.message.contains("-1"), "{}", e.message);
        let e = build(&["--exporter.prometheus.process.min-joules=-0.5"], None).unwrap_err();
        assert_eq!(e.key, "exporter.prometheus.process.minJoules");
        let e = build(
            &[],
            Some("exporter:\n  prometheus:\n    process:\n      topN: many\n"),
        )
        .unwrap_err();
        assert_eq!(e.key, "exporter.prometheus.process.topN");
    }
}
