//! Wiring: config in, sources and server built, loop run until a signal.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use kepler_core::{Attributor, AttributorConfig, MicroWatts, Nanos};
use kepler_export::{BuildInfo, ExportContext, MetricsHandle, ServerConfig, WebConfig};
use kepler_sources::MeterContext;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::monitor::{Monitor, NamedSource};

/// Why the program stopped with an error.
#[derive(Debug)]
pub enum RunError {
    /// Bad configuration found before anything started (exit code 2).
    Config(ConfigError),
    /// Anything else (exit code 1).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(e: anyhow::Error) -> Self {
        RunError::Other(e)
    }
}

/// Picks the CPU meter: the first of `cpu.preferredMeters` that builds. Returns it and the
/// reasons the earlier ones were skipped.
pub fn select_meter(config: &Config) -> (Option<NamedSource>, Vec<(String, String)>) {
    let ctx = meter_context(config);
    let mut skipped = Vec::new();
    for name in &config.preferred_meters {
        let Some(entry) = kepler_sources::meter(name) else {
            skipped.push((name.clone(), "not built into this binary".into()));
            continue;
        };
        match (entry.build)(&ctx) {
            Ok(source) => {
                return (
                    Some(NamedSource {
                        name: name.clone(),
                        source,
                    }),
                    skipped,
                )
            }
            Err(e) => skipped.push((name.clone(), e.to_string())),
        }
    }
    (None, skipped)
}

/// What the meter constructors get from the config.
pub fn meter_context(config: &Config) -> MeterContext {
    MeterContext {
        rapl_zones: config.rapl_zones.clone(),
        model: config.model,
        hwmon_enabled: config.meters.hwmon_enabled,
        hwmon_rules: config.meters.hwmon_rules.clone(),
        hwmon_zones: config.meters.hwmon_zones.clone(),
        ..MeterContext::new(&config.sysfs, &config.procfs)
    }
}

fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        revision: option_env!("KEPLER_GIT_REVISION")
            .unwrap_or("unknown")
            .into(),
        branch: option_env!("KEPLER_GIT_BRANCH").unwrap_or("unknown").into(),
        rust_version: option_env!("KEPLER_RUSTC_VERSION")
            .unwrap_or("unknown")
            .into(),
        arch: std::env::consts::ARCH.into(),
    }
}

/// Runs the exporter until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), RunError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // Everything that can be wrong with the configuration is checked before starting.
    let web = match &config.web_config_file {
        Some(path) => Some(WebConfig::from_file(path).map_err(|e| {
            RunError::Config(ConfigError {
                key: "web.configFile".into(),
                message: e.to_string(),
            })
        })?),
        None => None,
    };
    // The Redfish BMC file is configuration too: a bad one stops here with exit code 2.
    let redfish = crate::redfish::source(&config).map_err(RunError::Config)?;

    raise_open_files_limit();
    let clock = Clock::start();
    let (meter, skipped) = select_meter(&config);
    for (name, why) in &skipped {
        tracing::info!(meter = %name, reason = %why, "meter skipped");
    }
    let Some(meter) = meter else {
        return Err(RunError::Other(anyhow::anyhow!(
            "no CPU meter could be used (tried {}); add \"model\" to cpu.preferredMeters for an estimate",
            config.preferred_meters.join(", ")
        )));
    };
    let selected = crate::activity::select(&config)?;
    let (activity, activity_name) = (selected.source, selected.name);
    let zones: Vec<String> = meter
        .source
        .zones()
        .iter()
        .map(|z| format!("{}-{}", z.kind.label(), z.index))
        .collect();
    tracing::info!(
        meter = %meter.name,
        zones = %zones.join(","),
        estimated = meter.source.zones().iter().any(|z| z.estimated),
        activity = activity_name,
        node_name = %config.node_name,
        "sources selected"
    );
    let cpu_info = kepler_sources::read_cpuinfo(&config.procfs).unwrap_or_else(|e| {
        tracing::info!(error = %e, "no CPU info; kepler_node_cpu_info will be empty");
        Vec::new()
    });

    let engine = Attributor::new(
        AttributorConfig::builder()
            .terminated_ttl(Nanos(config.terminated_ttl.as_nanos() as u64))
            .max_terminated(config.max_terminated)
            .default_max_power(MicroWatts::from_watts(10_000.0))
            .idle(config.idle)
            .idle_power(config.idle_power)
            .build(),
    );
    let handle = MetricsHandle::new();
    let context = ExportContext {
        node_name: config.node_name.clone(),
        level: config.metrics,
        build: build_info(),
        cpu_info,
        wall_offset_secs: clock.wall_origin_secs(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Pod metadata (issue 8): filled in the background, read by the activity source after
    // each read; the monitor never waits on the kubelet or the API server.
    let (activity, informer) = crate::kube::attach(&config, &runtime, activity)?;
    let mut monitor = Monitor::new(
        // Platform power from BMCs sits next to the CPU meter; it reads only its cache.
        // ACPI and hwmon platform meters too (issue 7), exported as platform zones.
        std::iter::once(meter)
            .chain(redfish)
            .chain(crate::meters::platform_sources(&meter_context(&config)))
            .collect(),
        activity,
        engine,
        context,
        handle.clone(),
        clock,
    );
    monitor.gpu = crate::meters::GpuMonitor::from_config(&config);
    if let (Some(i), Some(cfg)) = (&informer, &config.kube_informer) {
        monitor.extra_stats = Some(crate::kube::self_metrics(i.cache().clone(), cfg.mode));
    }
    monitor.extra_stats = crate::activity::combine(selected.stats, monitor.extra_stats.take());

    // The monitor runs on its own thread: sources do blocking file I/O.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let interval = config.interval;
    let loop_handle = handle.clone();
    let monitor_thread = thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            let mut next = Instant::now();
            loop {
                monitor.tick();
                loop_handle.set_ready(true);
                next += interval;
                let now = Instant::now();
                if next < now {
                    // Fell behind (suspend, slow source): skip missed ticks, keep the cadence.
                    next = now + interval;
                }
                match stop_rx.recv_timeout(next - now) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
        })
        .context("cannot start the monitor thread")?;

    let server = ServerConfig {
        listen: config.listen.clone(),
        web,
    };
    let result = runtime.block_on(async move {
        let shutdown = async {
            wait_for_signal().await;
            tracing::info!("shutting down");
        };
        kepler_export::serve(server, handle, shutdown).await
    });
    let _ = stop_tx.send(());
    let _ = monitor_thread.join();
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.context("HTTP server failed")?;
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go programs (and so Go Kepler) do
/// at start. The procfs source keeps a descriptor per process within half the soft limit
/// (issue 3): under a typical soft limit of 1,024 it would keep almost none on a large node
/// and reopen every file on every tick.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files soft limit"),
        Err(e) => tracing::debug!(error = %e, "cannot raise the open files soft limit"),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
