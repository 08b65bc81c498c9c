//! `kepler-operator`: flags, logging, kubeconfig, leader election; the work is in the library.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kepler_operator::leader::{Elected, LeaseConfig, LeaseLock};
use kepler_operator::{parse_duration, run_controller, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "kepler-operator",
    version,
    about = "Deploys and manages kepler from one PowerMonitor resource."
)]
struct Flags {
    /// Kepler's image for the DaemonSet.
    #[arg(
        long = "kepler.image",
        env = "RELATED_IMAGE_KEPLER",
        default_value = "ghcr.io/kepler-rs/kepler:0.1.0"
    )]
    kepler_image: String,
    /// Namespace of kepler's DaemonSet, ConfigMaps, Service and ServiceAccount.
    #[arg(long = "deployment-namespace", default_value = "power-monitor")]
    deployment_namespace: String,
    /// Hold a Lease before reconciling, so several replicas are safe.
    #[arg(long = "leader-elect")]
    leader_elect: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the deployment namespace).
    #[arg(long = "leader-election-namespace", env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long = "leader-election-id", default_value = "kepler-operator-lock")]
    leader_election_id: String,
    /// Lease validity without renewal (Go duration).
    #[arg(long = "lease-duration", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews and standbys retry (Go duration).
    #[arg(long = "lease-retry-period", default_value = "5s", value_parser = parse_duration)]
    lease_retry_period: Duration,
    /// Reconcile again after this long when nothing changed (Go duration).
    #[arg(long = "resync-interval", default_value = "5m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Retry a failed reconcile after this long (Go duration).
    #[arg(long = "retry-interval", default_value = "5s", value_parser = parse_duration)]
    retry_interval: Duration,
    /// Print the PowerMonitor CRD (YAML) and exit.
    #[arg(long = "print-crd")]
    print_crd: bool,
    /// Log filter (tracing EnvFilter syntax, e.g. info or kepler_operator=debug).
    #[arg(long = "log.level", env = "RUST_LOG", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    if flags.print_crd {
        print!("{}", kepler_operator::crd_yaml());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&flags.log_level)
                .with_context(|| format!("--log.level {:?}", flags.log_level))?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Issue 16: a `fips` build whose crypto module is not in FIPS mode does not start.
    kepler_crypto::check_fips_mode()?;
    if kepler_crypto::FIPS_BUILD {
        tracing::info!("FIPS mode: TLS to the API server on the aws-lc FIPS module");
    }
    // kube's rustls client takes the process default provider: kepler-crypto's.
    kepler_crypto::install_process_default();
    // KUBECONFIG, ~/.kube/config, else the in-cluster service account, as kube-rs infers.
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (KUBECONFIG or in-cluster)")?;
    let settings = Settings {
        kepler_image: flags.kepler_image.clone(),
        namespace: flags.deployment_namespace.clone(),
        resync: flags.resync_interval,
        retry: flags.retry_interval,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let signal = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    if !flags.leader_elect {
        let controller = tokio::spawn(run_controller(client, settings, shutdown));
        signal.await;
        let _ = stop_tx.send(true);
        controller.await?;
        return Ok(());
    }
    let identity = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "kepler-operator".into());
    let lease = LeaseConfig {
        namespace: flags
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| flags.deployment_namespace.clone()),
        name: flags.leader_election_id.clone(),
        identity: format!("{identity}_{}", std::process::id()),
        lease_duration: flags.lease_duration,
        retry_period: flags.lease_retry_period,
    };
    let elected = tokio::select! {
        e = LeaseLock::new(client.clone(), lease.clone()).acquire() => e,
        _ = signal => return Ok(()),
    };
    let controller = tokio::spawn(run_controller(client.clone(), settings, shutdown));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = elected.lost() => {
            anyhow::bail!("lost the leader lease {}/{}; exiting so a single leader reconciles", lease.namespace, lease.name);
        }
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    let _ = stop_tx.send(true);
    controller.await?;
    Elected::release(&lease, client)
        .await
        .context("releasing the lease")?;
    Ok(())
}
