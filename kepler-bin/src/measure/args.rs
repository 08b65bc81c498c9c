//! `kepler run`'s command line: every exporter flag (the same key table, so the command is
//! measured exactly as the exporter would measure it), `--idle` and `--interval` as short
//! names of `--attribution.idle` and `--monitor.interval`, and the options of a run.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::config::Flags;

const ABOUT: &str = "kepler run: runs CMD and reports the energy it used, measured with the \
exporter's meters, activity source and attribution rules.\n\n\
CMD runs in a cgroup of its own when one can be created (cgroup v2, the hybrid `unified` \
mount, or v1 cpuacct), else it is followed as a process tree. Signals sent to kepler reach \
CMD; kepler waits for CMD and every process it started, then exits with CMD's exit code \
(128+N when CMD was killed by signal N). The report goes to stderr, so CMD's stdout stays \
untouched.";

/// Where `--json` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonTarget {
    /// `--json`: standard error, next to where the text report would go.
    Stderr,
    /// `--json=-`.
    Stdout,
    /// `--json=PATH`.
    File(PathBuf),
}

/// What `kepler run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The exporter's flags (config file, roots, meters, idle policy...).
    pub flags: Flags,
    /// Whether `--monitor.interval` (`--interval`) was given on the command line.
    pub interval_given: bool,
    /// Whether `--log.level` was given; without it `kepler run` logs warnings only.
    pub log_level_given: bool,
    /// A JSON document instead of the text report.
    pub json: Option<JsonTarget>,
    /// Grams of CO2-equivalent per kWh, for the carbon line.
    pub carbon_intensity: Option<f64>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// The clap command: the exporter's flags plus the run's own.
pub fn command() -> Command {
    Flags::command()
        .name("kepler run")
        .bin_name("kepler run")
        .about(ABOUT)
        .override_usage("kepler run [OPTIONS] -- CMD [ARGS...]")
        .mut_arg("log.level", |a| {
            a.help("Log level: debug, info, warn, error. [default for `kepler run`: warn]")
        })
        .mut_arg("attribution.idle", |a| a.visible_alias("idle"))
        .mut_arg("monitor.interval", |a| {
            a.visible_alias("interval").help(
                "How often to read the meters and processes while CMD runs (Go duration). \
                 Default for `kepler run`: the configured monitor.interval, at most 1s. A \
                 command shorter than one interval is still measured: the meters are read \
                 when it starts and when it ends.",
            )
        })
        .arg(
            Arg::new("run.json")
                .long("json")
                .value_name("PATH")
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("")
                .value_parser(value_parser!(OsString))
                .help(
                    "Write one JSON document (schema kepler-run/v1, see the README) instead of \
                     the text report: to stderr without PATH, to stdout with `-`, else to PATH.",
                ),
        )
        .arg(
            Arg::new("run.carbonIntensity")
                .long("carbon-intensity")
                .value_name("G_PER_KWH")
                .value_parser(value_parser!(f64))
                .help("Grid carbon intensity in gCO2e/kWh; adds the carbon the energy cost."),
        )
        .arg(
            Arg::new("run.command")
                .value_name("CMD")
                .num_args(1..)
                .required(true)
                .trailing_var_arg(true)
                .value_parser(value_parser!(OsString))
                .action(ArgAction::Append)
                .help("The command to run and measure, with its arguments."),
        )
}

/// Parses the arguments after `kepler run`.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<RunArgs, clap::Error> {
    let m = command()
        .try_get_matches_from(std::iter::once(OsString::from("kepler run")).chain(args))?;
    from_matches(&m)
}

fn from_matches(m: &ArgMatches) -> Result<RunArgs, clap::Error> {
    let flags = Flags::from_arg_matches(m)?;
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let json = m.get_one::<OsString>("run.json").map(|p| {
        if p.is_empty() {
            JsonTarget::Stderr
        } else if p == "-" {
            JsonTarget::Stdout
        } else {
            JsonTarget::File(PathBuf::from(p))
        }
    });
    Ok(RunArgs {
        interval_given: given("monitor.interval"),
        log_level_given: given("log.level"),
        flags,
        json,
        carbon_intensity: m.get_one::<f64>("run.carbonIntensity").copied(),
        command: m
            .get_many::<OsString>("run.command")
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<RunArgs, clap::Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn the_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn exporter_flags_short_names_and_command() {
        let a = parse_strs(&[
            "--host.sysfs=/x",
            "--idle",
            "cpu-share",
            "--interval=200ms",
            "--json",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        assert_eq!(a.command, ["sh", "-c", "exit 3"]);
        assert_eq!(a.json, Some(JsonTarget::Stderr));
        assert!(a.interval_given && !a.log_level_given);
        let typed: Vec<&str> = a.flags.values().map(|(k, _)| k.path).collect();
        assert!(typed.contains(&"host.sysfs"), "{typed:?}");
        assert!(typed.contains(&"attribution.idle"), "{typed:?}");
        assert!(typed.contains(&"monitor.interval"), "{typed:?}");
    }

    #[test]
    fn json_targets_and_a_command_with_its_own_flags() {
        let a = parse_strs(&["--json=-", "ls", "-l", "--color"]).unwrap();
        assert_eq!(a.json, Some(JsonTarget::Stdout));
        assert_eq!(a.command, ["ls", "-l", "--color"]);
        let a = parse_strs(&["--json=/tmp/r.json", "--", "true"]).unwrap();
        assert_eq!(a.json, Some(JsonTarget::File("/tmp/r.json".into())));
        assert!(!a.interval_given);
        assert!(parse_strs(&["--json"]).is_err(), "CMD is required");
        assert!(parse_strs(&["--no-such-flag", "--", "true"]).is_err());
    }
}
