//! Picks the activity source: `activity.source` = auto | bpf | procfs (issue 5).
//!
//! `auto` tries eBPF when this binary has it (cargo feature `bpf`) and falls back to procfs
//! with one log line naming the missing capability or kernel feature. `bpf` fails at start
//! instead of falling back.

use anyhow::Context;
use kepler_core::ActivitySource;
use kepler_sources::{ProcfsActivity, ProcfsOptions};

use crate::config::{ActivitySourceKind, Config};
use crate::monitor::ExtraStats;

/// The chosen activity source.
pub struct Selected {
    /// The source.
    pub source: Box<dyn ActivitySource>,
    /// Its name for logs.
    pub name: &'static str,
    /// Its self-metrics (eBPF: programs attached, map entries, drops, read duration).
    pub stats: Option<ExtraStats>,
}

/// The activity source to use.
pub fn select(config: &Config) -> anyhow::Result<Selected> {
    match config.activity_source {
        ActivitySourceKind::Procfs => procfs(config),
        ActivitySourceKind::Bpf => {
            bpf(config).map_err(|e| anyhow::anyhow!("activity.source=bpf: {e}"))
        }
        ActivitySourceKind::Auto => match bpf(config) {
            Ok(found) => Ok(found),
            Err(why) => {
                tracing::info!(reason = %why, "eBPF activity source unavailable; using procfs");
                procfs(config)
            }
        },
    }
}

/// Both collectors' metrics, or whichever exists.
pub fn combine(a: Option<ExtraStats>, b: Option<ExtraStats>) -> Option<ExtraStats> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::new(move || {
            let mut v = a();
            v.extend(b());
            v
        })),
        (a, b) => a.or(b),
    }
}

fn procfs(config: &Config) -> anyhow::Result<Selected> {
    let activity = ProcfsActivity::new(ProcfsOptions {
        // Cgroup CPU accounting charges short-lived processes to their containers (issue 4).
        cgroup_root: Some(config.sysfs.join("fs/cgroup")),
        ..ProcfsOptions::new(&config.procfs)
    })
    .with_context(|| format!("cannot read processes under {}", config.procfs.display()))?;
    Ok(Selected {
        source: Box::new(activity),
        name: "procfs",
        stats: None,
    })
}

#[cfg(feature = "bpf")]
fn bpf(config: &Config) -> Result<Selected, String> {
    use kepler_export::ExtraMetric;
    let opts = kepler_bpf::BpfOptions {
        procfs: config.procfs.clone(),
        ..kepler_bpf::BpfOptions::default()
    };
    let source = kepler_bpf::BpfActivity::new(opts).map_err(|e| e.to_string())?;
    let shared = source.shared_stats();
    let stats: ExtraStats = Box::new(move || {
        let Ok(s) = shared.lock().map(|s| *s) else {
            return Vec::new();
        };
        let metric = |name, help, counter, value: f64| ExtraMetric {
            name,
            help,
            counter,
            labels: Vec::new(),
            value,
        };
        vec![
            metric(
                "kepler_exporter_bpf_programs_attached",
                "eBPF programs of the activity source attached.",
                false,
                f64::from(s.programs_attached),
            ),
            metric(
                "kepler_exporter_bpf_map_entries",
                "Processes holding a slot of the eBPF source at the latest read.",
                false,
                s.map_entries as f64,
            ),
            metric(
                "kepler_exporter_bpf_map_capacity",
                "Slots of the eBPF source: how many processes it can account at once.",
                false,
                s.map_capacity as f64,
            ),
            metric(
                "kepler_exporter_bpf_events_dropped_total",
                "CPU-time charges lost because every slot of the eBPF source was taken.",
                true,
                s.events_dropped as f64,
            ),
            metric(
                "kepler_exporter_bpf_entries_deleted_total",
                "Slots of exited processes freed after they were reported.",
                true,
                s.entries_deleted as f64,
            ),
            metric(
                "kepler_exporter_bpf_slices_unseen_total",
                "Context switches out of a thread whose switch in the eBPF program did not see: \
                 that slice of CPU time is lost.",
                true,
                s.slices_unseen as f64,
            ),
            metric(
                "kepler_exporter_bpf_reports_held_back_total",
                "Reads that found a process's CPU time below its previous report (a race \
                 between the caches read) and reported the previous value.",
                true,
                s.held_back as f64,
            ),
            metric(
                "kepler_exporter_bpf_read_duration_seconds",
                "Time the latest read of the eBPF slots and frame build took.",
                false,
                s.read_duration.as_secs_f64(),
            ),
        ]
    });
    Ok(Selected {
        source: Box::new(source),
        name: "bpf",
        stats: Some(stats),
    })
}

#[cfg(not(feature = "bpf"))]
fn bpf(_config: &Config) -> Result<Selected, String> {
    Err("this binary was built without the `bpf` feature".into())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::build;
    use crate::config::ActivitySourceKind;

    #[test]
    fn activity_source_from_flag_and_file_defaults_to_auto() {
        assert_eq!(
            build(&[], None).unwrap().activity_source,
            ActivitySourceKind::Auto
        );
        let c = build(&[], Some("activity:\n  source: procfs\n")).unwrap();
        assert_eq!(c.activity_source, ActivitySourceKind::Procfs);
        let c = build(
            &["--activity.source=auto"],
            Some("activity:\n  source: procfs\n"),
        )
        .unwrap();
        assert_eq!(c.activity_source, ActivitySourceKind::Auto);
        let e = build(&["--activity.source=magic"], None).unwrap_err();
        assert_eq!(e.key, "activity.source");
        let bpf = build(&["--activity.source=bpf"], None);
        if cfg!(feature = "bpf") {
            assert_eq!(bpf.unwrap().activity_source, ActivitySourceKind::Bpf);
        } else {
            let e = bpf.unwrap_err();
            assert_eq!(e.key, "activity.source");
            assert!(e.message.contains("--features bpf"), "{}", e.message);
        }
    }
}
