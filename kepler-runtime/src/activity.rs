//! The activity source table (issue 5): eBPF when this build has it (cargo feature `bpf`) and
//! the kernel and privileges allow it, else procfs.

use kepler_core::ActivitySource;
use kepler_export::BpfStats;
use kepler_sources::{ProcfsActivity, ProcfsOptions};

use crate::error::BuildError;
use crate::options::{ActivityChoice, Options};

/// Reads the eBPF source's counters at each tick; `None` when they cannot be read.
pub(crate) type BpfStatsReader = Box<dyn Fn() -> Option<BpfStats> + Send>;

/// A started activity source.
pub struct SelectedActivity {
    /// The source.
    pub source: Box<dyn ActivitySource>,
    /// Its counters (eBPF: programs attached, slots, drops, read duration).
    pub(crate) bpf_stats: Option<BpfStatsReader>,
}

/// One row of the activity source table.
pub struct ActivityEntry {
    /// The name users write in `activity.source`, and the `source` label.
    pub name: &'static str,
    /// The name in log lines.
    pub title: &'static str,
    /// Starts the source; the error says what is missing (capability, kernel feature).
    pub build: fn(&Options) -> Result<SelectedActivity, String>,
}

/// Every activity source, in the order `auto` tries them.
pub static ACTIVITY_SOURCES: &[ActivityEntry] = &[
    ActivityEntry {
        name: "bpf",
        title: "eBPF",
        build: bpf,
    },
    ActivityEntry {
        name: "procfs",
        title: "procfs",
        build: procfs,
    },
];

fn entry(name: &str) -> &'static ActivityEntry {
    ACTIVITY_SOURCES
        .iter()
        .find(|e| e.name == name)
        .expect("the activity table names every choice")
}

/// Starts the chosen source; `Auto` walks the table and logs why each skipped one could not
/// start. An explicit choice fails instead of falling back.
pub(crate) fn select(options: &Options) -> Result<SelectedActivity, BuildError> {
    let name = match options.activity {
        ActivityChoice::Bpf => "bpf",
        ActivityChoice::Procfs => "procfs",
        ActivityChoice::Auto => {
            let mut last = String::new();
            for (i, e) in ACTIVITY_SOURCES.iter().enumerate() {
                match (e.build)(options) {
                    Ok(found) => return Ok(found),
                    Err(why) => {
                        if let Some(next) = ACTIVITY_SOURCES.get(i + 1) {
                            tracing::info!(reason = %why, "{} activity source unavailable; using {}", e.title, next.name);
                        }
                        last = why;
                    }
                }
            }
            return Err(BuildError::Activity(last));
        }
    };
    (entry(name).build)(options)
        .map_err(|e| BuildError::Activity(format!("activity.source={name}: {e}")))
}

fn procfs(options: &Options) -> Result<SelectedActivity, String> {
    let procfs = &options.meters.procfs;
    let activity = ProcfsActivity::new(ProcfsOptions {
        // Cgroup CPU accounting charges short-lived processes to their containers (issue 4).
        cgroup_root: Some(options.meters.sysfs.join("fs/cgroup")),
        // The socket of each CPU comes from the (host's) sysfs topology.
        sysfs_root: Some(options.meters.sysfs.clone()),
        ..ProcfsOptions::new(procfs)
    })
    .map_err(|e| format!("cannot read processes under {}: {e}", procfs.display()))?;
    Ok(SelectedActivity {
        source: Box::new(activity),
        bpf_stats: None,
    })
}

#[cfg(feature = "bpf")]
fn bpf(options: &Options) -> Result<SelectedActivity, String> {
    let opts = kepler_bpf::BpfOptions {
        procfs: options.meters.procfs.clone(),
        // Topology and `<sysfs>/fs/cgroup` of the host, as under procfs.
        sysfs: Some(options.meters.sysfs.clone()),
        ..kepler_bpf::BpfOptions::default()
    };
    let source = kepler_bpf::BpfActivity::new(opts).map_err(|e| e.to_string())?;
    let shared = source.shared_stats();
    let stats: BpfStatsReader = Box::new(move || {
        let s = shared.lock().ok().map(|s| *s)?;
        Some(BpfStats {
            programs_attached: s.programs_attached,
            map_entries: s.map_entries,
            map_capacity: s.map_capacity,
            events_dropped: s.events_dropped,
            entries_deleted: s.entries_deleted,
            slices_unseen: s.slices_unseen,
            held_back: s.held_back,
            read_duration: s.read_duration,
        })
    });
    Ok(SelectedActivity {
        source: Box::new(source),
        bpf_stats: Some(stats),
    })
}

#[cfg(not(feature = "bpf"))]
fn bpf(_options: &Options) -> Result<SelectedActivity, String> {
    Err("this binary was built without the `bpf` feature".into())
}
