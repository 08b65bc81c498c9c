//! `kepler run [OPTIONS] -- CMD [ARGS...]`: runs one command and reports the energy it used.
//!
//! It is the exporter's measurement on a command's scale: the same configuration (flags, file,
//! defaults), the same [`kepler_runtime::Monitor`] with the same sources, engine and idle
//! policy, ticked at `--interval` from just before the command starts to just after its last
//! process exits. The command's energy is what the engine attributed to it: to its cgroup,
//! which the activity source sees as a container (see the `confine` module), or to the
//! processes of its tree.
//!
//! ```text
//!  build Monitor ─► make cgroup ─► spawn trampoline (joins cgroup, stops)
//!    ─► tick (baseline) ─► SIGCONT: exec CMD ─► tick every interval ... CMD and its
//!    descendants exit (kept as zombies) ─► last tick ─► reap ─► report ─► exit(CMD's code)
//! ```

mod args;
mod child;
mod confine;
mod progress;
mod summary;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kepler_runtime::{BuildError, Monitor};

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::run::runtime_options;

pub use args::{command, JsonTarget, RunArgs};
pub use child::{exec_child, EXEC_CHILD};
pub use summary::{Summary, SCHEMA};

use child::{Child, Ended};
use confine::Method;
use progress::Progress;
use summary::{Exit, Ledger, RunFacts};

/// Exit code when kepler itself fails before the command runs (bad flags or configuration,
/// no meter): 125, as `env` and container runtimes use, so it is told apart from the
/// command's own codes.
const KEPLER_FAILED: u8 = 125;

/// The longest default sampling period of a run.
const MAX_DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How often the wait checks on the command's processes besides SIGCHLD: two SIGCHLDs that
/// come together are delivered as one, and a re-parented orphan's own children do not signal
/// kepler when they exit.
const CHILD_POLL: Duration = Duration::from_millis(100);

/// `kepler run ARGS`: parses, measures, reports, and returns the command's exit code.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(KEPLER_FAILED)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kepler run: {e}");
            return ExitCode::from(KEPLER_FAILED);
        }
    };
    init_logging(&config, args.log_level_given);
    match run(&args, &config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kepler run: {e:#}");
            ExitCode::from(KEPLER_FAILED)
        }
    }
}

fn load_config(args: &RunArgs) -> Result<Config, ConfigError> {
    Config::load(&args.flags)
}

/// Logs go to stderr with the report: warnings only unless `--log.level` or `KEPLER_LOG`
/// asks for more.
fn init_logging(config: &Config, level_given: bool) {
    let level = if level_given {
        config.log_level.as_str()
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEPLER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The sampling period: `--interval` when given, else the configured one, at most 1 s.
fn interval(args: &RunArgs, config: &Config) -> Duration {
    if args.interval_given {
        config.interval
    } else {
        config.interval.min(MAX_DEFAULT_INTERVAL)
    }
}

/// Runs and measures the command; the command's exit code, or an error before it ran.
fn run(args: &RunArgs, config: &Config) -> anyhow::Result<u8> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let (events_tx, events) = mpsc::channel();
    let forward_to =
        child::watch_signals(events_tx, &config.procfs).context("cannot watch signals")?;
    let mut monitor = Monitor::builder(runtime_options(config))
        .build()
        .map_err(|e| match e {
            BuildError::Setting { key, message } => anyhow::anyhow!(ConfigError {
                key: key.into(),
                message
            }),
            e => anyhow::Error::new(e),
        })?;
    let meter = monitor
        .power_sources()
        .first()
        .map_or_else(String::new, |s| s.name.clone());
    let estimated_reason = why_not_preferred(config, &meter);
    let confinement = confine::confine(&config.sysfs, &config.procfs);
    let method = confinement.method();
    let cgroup = confinement.cgroup.as_ref();
    let interval = interval(args, config);
    let clock = Clock::start();

    let mut child = Child::spawn(
        &args.command,
        cgroup.map(|c| c.procs_file()).as_deref(),
        &config.procfs,
    )
    .with_context(|| format!("cannot start {}", args.command[0].to_string_lossy()))?;
    if let Some(ended) = child.ended() {
        // The trampoline failed (its message is on stderr): nothing ran to measure.
        return Ok(ended.exit_code());
    }
    let mut ledger = Ledger::new(cgroup.map(|c| c.id.clone()));
    let tree = || -> Vec<(u32, u64)> {
        if method == Method::ProcessTree {
            child::descendants(&config.procfs, std::process::id())
        } else {
            Vec::new()
        }
    };
    // The baseline: the stopped trampoline is already in its cgroup, so the activity source
    // finds the cgroup now, and every CPU-second the command spends is after this reading.
    let first = monitor.tick(clock.now());
    ledger.observe(&first.snapshot, first.gpu.as_deref(), &tree());
    let cpu_baseline = cgroup.and_then(|c| c.cpu_time_ns().ok()).unwrap_or(0);
    let started = Instant::now();
    child.resume(&forward_to);

    let mut progress = Progress::new();
    let mut next = started + interval;
    // Until the command and every process it started have exited: kepler's children (the
    // command and re-parented orphans) and, with a cgroup, anything left in it.
    while child.tree_running() || cgroup.is_some_and(|c| c.populated()) {
        let now = Instant::now();
        if now >= next {
            let tick = monitor.tick(clock.now());
            ledger.observe(&tick.snapshot, tick.gpu.as_deref(), &tree());
            progress.update(started.elapsed(), joules(&ledger));
            next += interval;
            if next <= now {
                // Fell behind (a slow scan): keep the cadence from now.
                next = now + interval;
            }
            continue;
        }
        let _ = events.recv_timeout((next - now).min(CHILD_POLL));
    }
    let duration = started.elapsed();
    // The last reading, with every exited process still a zombie: its final CPU time counts.
    let last = monitor.tick(clock.now());
    ledger.observe(&last.snapshot, last.gpu.as_deref(), &tree());
    let cgroup_cpu = cgroup.map(|c| c.cpu_time_ns());
    progress.clear();
    let ended = child.ended().unwrap_or(Ended::Code(0));
    child.reap_all();
    let cpu_ns = match cgroup_cpu {
        Some(Ok(ns)) => ns.saturating_sub(cpu_baseline),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the cgroup's CPU time; using the reaped children's");
            children_cpu_ns()
        }
        None => children_cpu_ns(),
    };
    let summary = summary::summarize(
        RunFacts {
            command: args
                .command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            exit: Exit {
                code: match ended {
                    Ended::Code(c) => Some(c),
                    Ended::Signal(_) => None,
                },
                signal: match ended {
                    Ended::Signal(s) => Some(s),
                    Ended::Code(_) => None,
                },
                status: ended.exit_code(),
            },
            duration_seconds: duration.as_secs_f64(),
            cpu_seconds: cpu_ns as f64 / 1e9,
            method,
            accounting_note: (method == Method::ProcessTree).then(|| confinement.tried.join("; ")),
            meter,
            estimated_reason,
            interval_seconds: interval.as_secs_f64(),
            carbon_intensity: args.carbon_intensity,
        },
        &last.snapshot,
        last.gpu.as_deref(),
        &ledger,
    );
    drop(confinement);
    if let Err(e) = report(&summary, args.json.as_ref()) {
        eprintln!("kepler run: cannot write the report: {e:#}");
    }
    Ok(ended.exit_code())
}

/// The command's energy so far for the progress line: the same total as the report's.
fn joules(ledger: &Ledger) -> f64 {
    let e = ledger.energy();
    let of = |k: kepler_core::ZoneKind| e.get(k).0 as f64 / 1e6;
    let package = of(kepler_core::ZoneKind::Package);
    if package > 0.0 {
        package + of(kepler_core::ZoneKind::Dram)
    } else {
        of(kepler_core::ZoneKind::Psys).max(of(kepler_core::ZoneKind::Platform))
    }
}

/// CPU time of every reaped child and their reaped descendants (`RUSAGE_CHILDREN`), ns.
fn children_cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0, |u| {
        let ns = |t: nix::sys::time::TimeVal| {
            (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_usec() as u64 * 1000
        };
        ns(u.user_time()) + ns(u.system_time())
    })
}

/// Why the CPU meter is not RAPL when RAPL was preferred: its counters are readable by root
/// only (CVE-2020-8694), or absent (most VMs).
fn why_not_preferred(config: &Config, meter: &str) -> Option<String> {
    let position = |name: &str| config.preferred_meters.iter().position(|m| m == name);
    match (position("rapl"), position(meter)) {
        (Some(rapl), Some(chosen)) if rapl < chosen => {}
        (Some(_), None) => {}
        _ => return None,
    }
    let probe = config.sysfs.join("class/powercap/intel-rapl:0/energy_uj");
    Some(match std::fs::File::open(&probe) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
            "RAPL's energy_uj is readable by root only since CVE-2020-8694: run as root, or \
             let this user read {}",
            Path::new(&probe).display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "no RAPL counters on this machine (a VM?)".into()
        }
        _ => "RAPL was not usable; --log.level=info says why".into(),
    })
}

/// Writes the text report to stderr, or the JSON document where `--json` says.
fn report(summary: &Summary, json: Option<&JsonTarget>) -> anyhow::Result<()> {
    use std::io::Write;
    match json {
        None => {
            let _ = std::io::stderr().write_all(summary.text().as_bytes());
        }
        Some(JsonTarget::Stderr) => {
            let _ = writeln!(std::io::stderr(), "{}", summary.json());
        }
        Some(JsonTarget::Stdout) => {
            let _ = writeln!(std::io::stdout(), "{}", summary.json());
        }
        Some(JsonTarget::File(path)) => std::fs::write(path, summary.json() + "\n")
            .with_context(|| format!("--json={}", path.display()))?,
    }
    Ok(())
}
