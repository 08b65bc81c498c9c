//! Command-line flags, named as Go Kepler names them, made from the key table: one `Arg` per
//! key that has a flag, its `--help` line from the declaration. Only the flags a user typed
//! are kept, so that they, and only they, override the file.

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use super::key::{DefaultValue, Key, Ty, Value};
use super::keys::{CONFIG_FILE, KEYS};

const ABOUT: &str = "kepler: measures the machine's energy and splits it among processes, \
containers, VMs and pods, served as Prometheus metrics.\n\n\
Settings come from built-in defaults, then the YAML file of --config.file, then these flags; \
a flag given here always wins.";

/// The flags a user typed.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--config.file`: the YAML config file.
    pub config_file: Option<String>,
    /// Every other flag given, with its key.
    values: Vec<(&'static Key, Value)>,
}

impl Flags {
    /// The values given on the command line, with their keys.
    pub(crate) fn values(&self) -> impl Iterator<Item = (&'static Key, &Value)> {
        self.values.iter().map(|(k, v)| (*k, v))
    }
}

fn arg(key: &Key) -> Option<Arg> {
    let flag = key.flag?;
    let mut help = key.help.to_string();
    if let DefaultValue::Value(d) = key.default {
        help = format!("{help} [default: {d}]");
    }
    let mut arg = Arg::new(key.path)
        .long(flag.long)
        .value_name(flag.value_name)
        .help(help);
    if let Some(alias) = flag.alias {
        arg = arg.visible_alias(alias);
    }
    arg = match key.ty {
        Ty::Bool => arg
            .value_parser(value_parser!(bool))
            .num_args(0..=1)
            .default_missing_value("true"),
        Ty::Int => arg
            .value_parser(value_parser!(i64))
            .allow_negative_numbers(true),
        Ty::Float => arg.value_parser(value_parser!(f64)),
        Ty::Str | Ty::Duration | Ty::Any => match flag.bare {
            Some(bare) => arg
                .value_parser(value_parser!(String))
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value(bare),
            None => arg.value_parser(value_parser!(String)),
        },
        Ty::Strs => {
            let arg = arg
                .value_parser(value_parser!(String))
                .action(ArgAction::Append);
            if flag.comma {
                arg.value_delimiter(',')
            } else {
                arg
            }
        }
        Ty::Floats => arg
            .value_parser(value_parser!(f64))
            .action(ArgAction::Append)
            .value_delimiter(','),
    };
    Some(arg)
}

/// The value of one key's flag, when given.
fn given(m: &ArgMatches, key: &Key) -> Option<Value> {
    let id = key.path;
    match key.ty {
        Ty::Bool => m.get_one::<bool>(id).copied().map(Value::Bool),
        Ty::Int => m.get_one::<i64>(id).copied().map(Value::Int),
        Ty::Float => m.get_one::<f64>(id).copied().map(Value::Float),
        Ty::Str | Ty::Duration | Ty::Any => m.get_one::<String>(id).cloned().map(Value::Str),
        Ty::Strs => m
            .get_many::<String>(id)
            .map(|v| Value::Strs(v.cloned().collect())),
        Ty::Floats => m
            .get_many::<f64>(id)
            .map(|v| Value::Floats(v.copied().collect())),
    }
}

impl clap::CommandFactory for Flags {
    fn command() -> Command {
        KEYS.iter().filter_map(|k| arg(k)).fold(
            Command::new("kepler")
                .version(env!("CARGO_PKG_VERSION"))
                .about(ABOUT)
                .max_term_width(100),
            Command::arg,
        )
    }

    fn command_for_update() -> Command {
        Self::command()
    }
}

impl clap::FromArgMatches for Flags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags::default();
        flags.update_from_arg_matches(m)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for key in KEYS.iter().copied().filter(|k| k.flag.is_some()) {
            let Some(value) = given(m, key) else {
                continue;
            };
            if key.path == CONFIG_FILE.path {
                if let Value::Str(path) = value {
                    self.config_file = Some(path);
                }
                continue;
            }
            self.values.retain(|(k, _)| k.path != key.path);
            self.values.push((key, value));
        }
        Ok(())
    }
}

impl clap::Parser for Flags {}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_command_is_consistent() {
        Flags::command().debug_assert();
    }

    /// Every key with a flag is in `--help` with its declared line, and nothing else is.
    #[test]
    fn help_lists_every_declared_flag() {
        let help = Flags::command().render_long_help().to_string();
        let declared: Vec<&Key> = KEYS.iter().copied().filter(|k| k.flag.is_some()).collect();
        for key in &declared {
            let flag = key.flag.unwrap();
            assert!(
                help.contains(&format!("--{} <", flag.long))
                    || help.contains(&format!("--{} [", flag.long))
                    || help.contains(&format!("--{}[=", flag.long)),
                "--{}",
                flag.long
            );
            assert!(help.contains(key.help), "{}", key.help);
        }
        let args = Flags::command().get_arguments().count();
        assert_eq!(
            args,
            declared.len(),
            "clap's own --help/--version are not arguments here"
        );
    }

    #[test]
    fn only_typed_flags_are_kept() {
        let f = Flags::try_parse_from([
            "kepler",
            "--config.file=/c.yaml",
            "--rapl.zones=package,dram",
            "--rapl.zones",
            "core",
            "--web.listen-address=a:1,b",
            "--kube.enable",
            "--monitor.max-terminated",
            "-1",
        ])
        .unwrap();
        assert_eq!(f.config_file.as_deref(), Some("/c.yaml"));
        let got: Vec<(&str, &Value)> = f.values().map(|(k, v)| (k.path, v)).collect();
        assert_eq!(
            got,
            [
                ("monitor.maxTerminated", &Value::Int(-1)),
                (
                    "rapl.zones",
                    &Value::Strs(vec!["package".into(), "dram".into(), "core".into()])
                ),
                ("web.listenAddresses", &Value::Strs(vec!["a:1,b".into()])),
                ("kube.enabled", &Value::Bool(true)),
            ]
        );
        assert!(Flags::try_parse_from(["kepler", "--kube.enable=maybe"]).is_err());
        assert!(Flags::try_parse_from(["kepler", "--no-such-flag"]).is_err());
    }
}
