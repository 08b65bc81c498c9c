//! Wiring: config in, runtime options out, the monitor and server started, the loop run on
//! its own thread until a signal.

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use kepler_core::{AttributorConfig, GpuConfig, MicroJoules, MicroWatts, Nanos};
use kepler_export::{
    BearerAuth, BearerVerdict, BuildInfo, ExportContext, Exposition, MetricsHandle, ProcessFold,
    Server, ServerConfig, WebConfig,
};
use kepler_runtime::{BuildError, IpmiSetup, ModelExport, Monitor, Options, RedfishSetup};
use kepler_sources::passthrough::{PassthroughOptions, PassthroughWriterOptions};
use kepler_sources::trained::TrainedOptions;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};

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

/// The runtime's options from the validated configuration.
pub fn runtime_options(config: &Config) -> Options {
    let mut o = Options::new(&config.sysfs, &config.procfs);
    o.meters.rapl_zones = config.rapl_zones.clone();
    o.meters.model = config.model;
    o.meters.hwmon_enabled = config.meters.hwmon_enabled;
    o.meters.hwmon_rules = config.meters.hwmon_rules.clone();
    o.meters.hwmon_zones = config.meters.hwmon_zones.clone();
    o.meters.fake_zones = config.meters.fake_zones.clone();
    o.meters.passthrough = PassthroughOptions {
        path: config.meters.passthrough_path.clone(),
        stale_after: config.meters.passthrough_stale_after,
    };
    o.vm_passthrough =
        config
            .meters
            .vm_passthrough_dir
            .as_ref()
            .map(|dir| PassthroughWriterOptions {
                max_energy_range: MicroJoules(config.meters.vm_passthrough_max_range_uj),
                ..PassthroughWriterOptions::new(dir)
            });
    o.meters.trained = TrainedOptions {
        file: config.meters.model_file.clone(),
        accept_mismatch: config.meters.model_accept_mismatch,
    };
    o.model_export = config.meters.model_export.as_ref().map(|path| ModelExport {
        path: path.clone(),
        interval: config.meters.model_export_interval,
    });
    o.preferred_meters = config.preferred_meters.clone();
    o.redfish = config.redfish.as_ref().map(|rf| RedfishSetup {
        node_name: rf.node_name.clone(),
        config_file: rf.config_file.clone(),
        options: rf.options.clone(),
    });
    o.ipmi = config.ipmi.as_ref().map(|ip| IpmiSetup {
        node_name: ip.node_name.clone(),
        config_file: ip.config_file.clone(),
        options: ip.options.clone(),
    });
    let ttl = Nanos(config.terminated_ttl.as_nanos() as u64);
    o.gpu = config.meters.gpu_enabled.then(|| {
        GpuConfig::builder()
            .idle_power(config.meters.gpu_idle_watts.map(MicroWatts::from_watts))
            .terminated_ttl(ttl)
            .build()
    });
    o.carbon = config.carbon.clone();
    o.activity = config.activity_source;
    o.kube = config.kube_informer.clone();
    o.engine = AttributorConfig::builder()
        .terminated_ttl(ttl)
        .max_terminated(config.max_terminated)
        .min_terminated_energy(MicroJoules(
            config.min_terminated_joules.saturating_mul(1_000_000),
        ))
        .default_max_power(MicroWatts::from_watts(10_000.0))
        .idle(config.idle)
        .idle_power(config.idle_power)
        .build();
    o
}

/// `kepler_build_info`. Stays in this crate: `option_env!` reads the variables that
/// `build.rs` sets for the crate being compiled.
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
        fips: kepler_crypto::FIPS_BUILD,
        bpf: cfg!(feature = "bpf"),
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
    raise_open_files_limit();
    let clock = Clock::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // web.auth.kubernetes: the API client is built now, so a bad kubeconfig stops the start.
    let bearer = match &config.kube_auth {
        Some(allowed) => {
            let path = config.kube_config.as_deref().map(std::path::Path::new);
            let reviewer = runtime
                .block_on(kepler_k8s::TokenReviewer::connect(
                    path,
                    allowed,
                    TOKEN_CACHE_TTL,
                ))
                .map_err(|e| {
                    RunError::Config(ConfigError {
                        key: "web.auth.kubernetes.enabled".into(),
                        message: e.to_string(),
                    })
                })?;
            Some(std::sync::Arc::new(KubeBearer(reviewer)) as std::sync::Arc<dyn BearerAuth>)
        }
        None => None,
    };
    // Sources are selected and started here; the pod informer runs on the server's runtime.
    // A bad Redfish BMC file or Kubernetes setting is a configuration error (exit code 2).
    let mut monitor = Monitor::builder(runtime_options(&config))
        .tokio(runtime.handle().clone())
        .build()
        .map_err(|e| match e {
            BuildError::Setting { key, message } => RunError::Config(ConfigError {
                key: key.into(),
                message,
            }),
            e => RunError::Other(anyhow::Error::new(e)),
        })?;
    let handle = MetricsHandle::new();
    let context = ExportContext {
        node_name: config.node_name.clone(),
        level: config.metrics,
        build: build_info(),
        cpu_info: monitor.cpu_info().to_vec(),
        wall_offset_secs: clock.wall_origin_secs(),
        guide_aliases: config.outputs.compat_guide,
    };

    // The monitor runs on its own thread: sources do blocking file I/O. Each tick is
    // rendered once, then published for every scrape until the next one. With
    // `monitor.interval: 0` there is no schedule: a scrape asks for a tick, which is made
    // unless the latest is younger than `monitor.staleness` (Go Kepler's read on scrape).
    let (msg_tx, msg_rx) = mpsc::channel::<LoopMsg>();
    let interval = config.interval;
    let staleness = config.staleness;
    if interval.is_zero() {
        let requests = msg_tx.clone();
        handle.set_refresher(Arc::new(move || {
            let (done_tx, done_rx) = mpsc::sync_channel(1);
            if requests.send(LoopMsg::Refresh(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(30));
            }
        }));
    }
    let mut writers = crate::output::Writers::open(&config.outputs).map_err(|e| {
        RunError::Config(ConfigError {
            key: "exporter.json.path".into(),
            message: e.to_string(),
        })
    })?;
    let prometheus = config.outputs.prometheus;
    let process_metrics = config.outputs.process_metrics;
    // Issue 21: the process fold keeps state across ticks, so it lives with the loop.
    let mut fold =
        (prometheus && config.metrics.process && config.outputs.process_fold.is_enabled())
            .then(|| ProcessFold::new(config.outputs.process_fold));
    let loop_handle = handle.clone();
    let monitor_thread = thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            let mut tick_once = |monitor: &mut Monitor| {
                let mut tick = monitor.tick(clock.now());
                if process_metrics {
                    tick.stats.process = kepler_runtime::read_own_process();
                }
                let gpu = tick.gpu.as_deref();
                if prometheus {
                    let folded = fold.as_mut().map(|f| f.step(&tick.snapshot));
                    loop_handle.publish(Exposition::render_folded(
                        &tick.snapshot,
                        gpu,
                        folded,
                        &context,
                        &tick.stats,
                    ));
                }
                writers.write(&tick, &context);
                loop_handle.set_ready(true);
            };
            tick_once(&mut monitor);
            let mut last = Instant::now();
            let mut next = Instant::now();
            loop {
                if interval.is_zero() {
                    match msg_rx.recv() {
                        Ok(LoopMsg::Refresh(done)) => {
                            if last.elapsed() >= staleness {
                                tick_once(&mut monitor);
                                last = Instant::now();
                            }
                            let _ = done.try_send(());
                        }
                        _ => break,
                    }
                    continue;
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    // Fell behind (suspend, slow source): skip missed ticks, keep the cadence.
                    next = now + interval;
                }
                match msg_rx.recv_timeout(next - now) {
                    Err(mpsc::RecvTimeoutError::Timeout) => tick_once(&mut monitor),
                    Ok(LoopMsg::Refresh(done)) => {
                        let _ = done.try_send(());
                    }
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
        if !prometheus {
            tracing::info!("exporter.prometheus.enabled=false: no HTTP server");
            shutdown.await;
            return Ok(());
        }
        let mut server = Server::bind(server).await?;
        if let Some(b) = bearer {
            server = server.with_bearer_auth(b);
        }
        server.run(handle, shutdown).await
    });
    let _ = msg_tx.send(LoopMsg::Stop);
    let _ = monitor_thread.join();
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.context("HTTP server failed")?;
    Ok(())
}

/// What the monitor thread is asked.
enum LoopMsg {
    /// A scrape wants data no older than `monitor.staleness` (read on scrape); answered
    /// once it is published.
    Refresh(mpsc::SyncSender<()>),
    /// Shut down.
    Stop,
}

/// How long a token's verdict is reused (a scraper every 15-30 s costs a review per TTL).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

/// kepler-k8s's token reviewer as the server's bearer check (the two crates do not know
/// each other).
#[derive(Debug)]
struct KubeBearer(kepler_k8s::TokenReviewer);

impl BearerAuth for KubeBearer {
    fn check<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = BearerVerdict> + Send + 'a>> {
        Box::pin(async move {
            match self.0.review(token).await {
                kepler_k8s::TokenVerdict::Allowed => BearerVerdict::Allowed,
                kepler_k8s::TokenVerdict::Forbidden => BearerVerdict::Forbidden,
                kepler_k8s::TokenVerdict::Unauthenticated => BearerVerdict::Unauthenticated,
                kepler_k8s::TokenVerdict::Unavailable => BearerVerdict::Unavailable,
            }
        })
    }
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

#[cfg(test)]
mod tests {
    use crate::config::tests::build;
    use crate::config::ActivitySourceKind;
    use kepler_runtime::ActivityChoice;

    #[test]
    fn config_maps_to_runtime_options() {
        let o = super::runtime_options(&build(&[], None).unwrap());
        assert_eq!(o.activity, ActivityChoice::Auto);
        assert!(o.gpu.is_some() && o.redfish.is_none() && o.kube.is_none());
        assert_eq!(o.preferred_meters, ["rapl", "hwmon", "trained", "model"]);
        let file = "activity:\n  source: procfs\nexperimental:\n  gpu:\n    enabled: false\n";
        let o =
            super::runtime_options(&build(&["--cpu.preferred-meters=model"], Some(file)).unwrap());
        assert_eq!(o.activity, ActivityChoice::Procfs);
        assert!(o.gpu.is_none());
        assert_eq!(o.preferred_meters, ["model"]);
    }

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
