//! `kepler`: parse the configuration, run, map errors to exit codes (2: bad configuration).
//! `kepler top ...` is the live view (issue 18, `kepler_bin::top`).

use std::process::ExitCode;

use clap::Parser;
use kepler_bin::config::{Config, Flags, LogFormat};
use kepler_bin::run::{run, RunError};

fn main() -> ExitCode {
    // Issue 16: a `fips` build whose crypto module is not in FIPS mode does nothing at all.
    if let Err(e) = kepler_crypto::check_fips_mode() {
        eprintln!("kepler: {e}");
        return ExitCode::FAILURE;
    }
    // Subcommands by their first argument; anything else is the exporter, exactly as before.
    let mut args = std::env::args_os().skip(1);
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("run") => kepler_bin::measure::main(args.collect()),
        Some(kepler_bin::measure::EXEC_CHILD) => kepler_bin::measure::exec_child(args.collect()),
        Some("top") => kepler_bin::top::main(args),
        _ => exporter(),
    }
}

fn exporter() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kepler: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    if kepler_crypto::FIPS_BUILD {
        tracing::info!("FIPS mode: TLS, hashes and random bytes from the aws-lc FIPS module");
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Config(e)) => {
            tracing::error!("{e}");
            eprintln!("kepler: {e}");
            ExitCode::from(2)
        }
        Err(RunError::Other(e)) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEPLER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
