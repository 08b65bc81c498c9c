//! `kepler`: parse the configuration, run, map errors to exit codes (2: bad configuration).
//! `kepler top ...` is the live view (issue 18, `kepler_bin::top`).

use std::process::ExitCode;

use clap::Parser;
use kepler_bin::config::{Config, Flags, LogFormat};
use kepler_bin::run::{run, RunError};

fn main() -> ExitCode {
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
    // `KEPLER_<PATH>` variables sit between the file and the flags (README: Configuration).
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("KEPLER_"))
        .collect();
    let config_file = flags.config_file.clone().or_else(|| {
        env.iter()
            .find(|(k, _)| k == "KEPLER_CONFIG_FILE")
            .map(|(_, v)| v.clone())
    });
    let file_text = match &config_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path.clone(), text)),
            Err(e) => {
                eprintln!("kepler: invalid configuration: config.file: cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let config = match Config::build_with_env(
        &flags,
        file_text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        &env,
        std::env::var("NODE_NAME").ok(),
        hostname,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kepler: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
