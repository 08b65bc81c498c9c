//! What one configuration key is: the unit that [`super::keys`] declares once per key and
//! from which the flag parser, `--help`, YAML reading, unknown-key warnings and the README
//! tables are all made (issue 14: `Config::build` had the merge of each key written out by
//! hand, so a key's flag, file key, default and docs could disagree).
//!
//! A key says how its value is *read* (its [`Ty`]: the YAML type, the flag's parser), its
//! default, and how one value is *checked* (a function of the value alone, with the message
//! users see after `key: `). Rules that involve two keys (`model.maxWatts` above
//! `model.idleWatts`, `monitor.terminatedTTL` defaulting to two intervals) stay in the
//! validated stage, [`super::Config::from_raw`], which reads each key through its
//! declaration.

use std::time::Duration;

/// How a key's value is written, in YAML and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `true` / `false`; a bare flag means `true`.
    Bool,
    /// A whole number (may be negative).
    Int,
    /// A number.
    Float,
    /// A string (a YAML number or boolean is taken as its text).
    Str,
    /// A Go duration string (`5s`, `1m30s`).
    Duration,
    /// A YAML list of strings; a flag is repeated (and comma-separated where the flag says).
    Strs,
    /// A YAML list of numbers.
    Floats,
    /// Any value: a Go Kepler key that kepler-rs accepts and ignores with a warning.
    Any,
}

/// One value as the user wrote it (or a declared default), then as its check normalised it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// [`Ty::Bool`]
    Bool(bool),
    /// [`Ty::Int`]
    Int(i64),
    /// [`Ty::Float`]
    Float(f64),
    /// [`Ty::Str`], and [`Ty::Duration`] before it is parsed.
    Str(String),
    /// [`Ty::Duration`] once parsed.
    Duration(Duration),
    /// [`Ty::Strs`]
    Strs(Vec<String>),
    /// [`Ty::Floats`]
    Floats(Vec<f64>),
}

/// The command-line side of a key.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long name without `--` (Go Kepler's: `monitor.max-terminated`).
    pub long: &'static str,
    /// The placeholder `--help` shows (`DURATION`).
    pub value_name: &'static str,
    /// A second accepted spelling shown in `--help` and the README.
    pub alias: Option<&'static str>,
    /// A list flag whose values may also be comma-separated (`--metrics=node,pod`).
    pub comma: bool,
    /// The value of the flag given without one (`--exporter.json` means `-`, stdout).
    pub bare: Option<&'static str>,
}

/// A key's default.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// A value, written as in YAML (`5s`, `[rapl, hwmon, model]`), parsed as the key's type
    /// and checked like a user's value.
    Value(&'static str),
    /// No value: the key is off, optional, or derived from other keys in the validated stage;
    /// the text says what happens (README markdown).
    Text(&'static str),
}

/// Which README table documents a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The table of the Configuration section.
    Main,
    /// The table of the Redfish section.
    Redfish,
    /// The table of the IPMI section.
    Ipmi,
    /// The table of the Carbon section.
    Carbon,
    /// The Go Kepler keys kepler-rs accepts without effect.
    Inert,
}

/// The check of one value: the normalised value, or what is wrong with it.
pub type Check = fn(Value) -> Result<Value, String>;

/// One configuration key: everything about it but the code that uses its value.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The dotted YAML path (`monitor.maxTerminated`); also the key errors name.
    pub path: &'static str,
    /// How the value is written.
    pub ty: Ty,
    /// Read from the YAML file (all keys but `config.file`).
    pub in_yaml: bool,
    /// The flag, if there is one.
    pub flag: Option<Flag>,
    /// The default.
    pub default: DefaultValue,
    /// The check of a value, run when the validated stage reads the key (so a key of a
    /// disabled feature is not checked, as before).
    pub check: Option<Check>,
    /// Why setting it does nothing in kepler-rs: a warning names the key when it is set.
    pub inert: Option<&'static str>,
    /// The key is used only when another key has a value (`attribution.learnedIdle.*` only
    /// with `attribution.idlePower: learned`); set otherwise, a warning says so.
    pub only_when: Option<(&'static Key, &'static str)>,
    /// The `--help` line of its flag.
    pub help: &'static str,
    /// What it means, for the README table (markdown).
    pub doc: &'static str,
    /// The README table it appears in.
    pub table: Table,
}

impl Key {
    /// A YAML key (and, with [`Key::flag`], a flag).
    pub const fn yaml(path: &'static str, ty: Ty) -> Key {
        Key {
            path,
            ty,
            in_yaml: true,
            flag: None,
            default: DefaultValue::Text("none"),
            check: None,
            inert: None,
            only_when: None,
            help: "",
            doc: "",
            table: Table::Main,
        }
    }

    /// A flag with no YAML key (`--config.file`).
    pub const fn flag_only(path: &'static str, ty: Ty, value_name: &'static str) -> Key {
        Key {
            in_yaml: false,
            ..Key::yaml(path, ty).flag(path, value_name)
        }
    }

    /// A Go Kepler key that does nothing here: accepted (any value) with a warning saying
    /// `why`, listed in the README's table of such keys.
    pub const fn inert(path: &'static str, why: &'static str) -> Key {
        Key {
            inert: Some(why),
            doc: why,
            default: DefaultValue::Text(""),
            table: Table::Inert,
            ..Key::yaml(path, Ty::Any)
        }
    }

    /// Adds the flag `--long`.
    pub const fn flag(self, long: &'static str, value_name: &'static str) -> Key {
        Key {
            flag: Some(Flag {
                long,
                value_name,
                alias: None,
                comma: false,
                bare: None,
            }),
            ..self
        }
    }

    /// A second spelling of the flag.
    pub const fn alias(self, alias: &'static str) -> Key {
        match self.flag {
            Some(f) => Key {
                flag: Some(Flag {
                    alias: Some(alias),
                    ..f
                }),
                ..self
            },
            None => self,
        }
    }

    /// The list flag also splits its values on commas.
    pub const fn comma(self) -> Key {
        match self.flag {
            Some(f) => Key {
                flag: Some(Flag { comma: true, ..f }),
                ..self
            },
            None => self,
        }
    }

    /// The flag may be given without a value, meaning `bare`.
    pub const fn bare(self, bare: &'static str) -> Key {
        match self.flag {
            Some(f) => Key {
                flag: Some(Flag {
                    bare: Some(bare),
                    ..f
                }),
                ..self
            },
            None => self,
        }
    }

    /// The default value, written as in YAML.
    pub const fn default(self, value: &'static str) -> Key {
        Key {
            default: DefaultValue::Value(value),
            ..self
        }
    }

    /// No default value; `text` says what happens instead.
    pub const fn default_text(self, text: &'static str) -> Key {
        Key {
            default: DefaultValue::Text(text),
            ..self
        }
    }

    /// The check of a value.
    pub const fn check(self, check: Check) -> Key {
        Key {
            check: Some(check),
            ..self
        }
    }

    /// Accepted (and checked) but without effect: a warning says `why` when it is set.
    pub const fn no_effect(self, why: &'static str) -> Key {
        Key {
            inert: Some(why),
            ..self
        }
    }

    /// Used only while `other` has the value `value`.
    pub const fn only_when(self, other: &'static Key, value: &'static str) -> Key {
        Key {
            only_when: Some((other, value)),
            ..self
        }
    }

    /// The `--help` line.
    pub const fn help(self, help: &'static str) -> Key {
        Key { help, ..self }
    }

    /// The README meaning.
    pub const fn doc(self, doc: &'static str) -> Key {
        Key { doc, ..self }
    }

    /// The README table.
    pub const fn table(self, table: Table) -> Key {
        Key { table, ..self }
    }

    /// The declared default as a value of the key's type; `None` for [`DefaultValue::Text`].
    pub fn default_value(&self) -> Option<Value> {
        let DefaultValue::Value(text) = self.default else {
            return None;
        };
        let list = || -> Vec<&str> {
            let t = text.trim();
            let t = t
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(t);
            t.split(',')
                .map(|s| s.trim().trim_matches('"'))
                .filter(|s| !s.is_empty())
                .collect()
        };
        match self.ty {
            Ty::Bool => text.parse().ok().map(Value::Bool),
            Ty::Int => text.parse().ok().map(Value::Int),
            Ty::Float => text.parse().ok().map(Value::Float),
            Ty::Str | Ty::Duration => Some(Value::Str(text.into())),
            Ty::Strs => Some(Value::Strs(list().into_iter().map(String::from).collect())),
            Ty::Floats => list()
                .into_iter()
                .map(|s| s.parse().ok())
                .collect::<Option<Vec<f64>>>()
                .map(Value::Floats),
            Ty::Any => None,
        }
    }
}

/// A value of the type a getter asks for.
pub trait FromValue: Sized {
    /// `None` when the value is of another type (a declaration that disagrees with its use).
    fn from_value(v: Value) -> Option<Self>;
}

macro_rules! from_value {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl FromValue for $t {
            fn from_value(v: Value) -> Option<Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
        }
    )*};
}

from_value! {
    bool => Bool,
    i64 => Int,
    f64 => Float,
    String => Str,
    Duration => Duration,
    Vec<String> => Strs,
    Vec<f64> => Floats,
}

// Checks shared by several keys. Messages follow `key: ` and say what would be accepted.

/// A string (or each string of a list) that must be one of `accepted`, case-insensitive;
/// normalised to lower case.
pub fn one_of(v: Value, accepted: &[&str]) -> Result<Value, String> {
    let one = |s: &str| {
        let low = s.trim().to_ascii_lowercase();
        if accepted.contains(&low.as_str()) {
            Ok(low)
        } else {
            Err(format!("{s:?} is not one of {}", accepted.join(", ")))
        }
    };
    match v {
        Value::Str(s) => one(&s).map(Value::Str),
        Value::Strs(list) => list
            .iter()
            .map(|s| one(s))
            .collect::<Result<_, _>>()
            .map(Value::Strs),
        other => Ok(other),
    }
}

/// A duration between `min` and `max`.
pub fn within(v: Value, min: Duration, max: Duration) -> Result<Value, String> {
    match v {
        Value::Duration(d) if d < min || d > max => Err(format!(
            "{d:?} is out of range: accepted {} to {}",
            go_duration(min),
            go_duration(max)
        )),
        other => Ok(other),
    }
}

/// A string that is not blank.
pub fn not_empty(v: Value) -> Result<Value, String> {
    match v {
        Value::Str(s) if s.trim().is_empty() => Err("must not be empty".into()),
        other => Ok(other),
    }
}

/// `1h`, `5m`, `100ms`: how the range messages write their bounds.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_as_their_type() {
        let k = Key::yaml("a", Ty::Strs).default("[rapl, hwmon, model]");
        assert_eq!(
            k.default_value(),
            Some(Value::Strs(vec![
                "rapl".into(),
                "hwmon".into(),
                "model".into()
            ]))
        );
        let k = Key::yaml("a", Ty::Strs).default("\":28282\"");
        assert_eq!(k.default_value(), Some(Value::Strs(vec![":28282".into()])));
        assert_eq!(
            Key::yaml("a", Ty::Int).default("-1").default_value(),
            Some(Value::Int(-1))
        );
        assert_eq!(Key::yaml("a", Ty::Int).default_value(), None);
    }

    #[test]
    fn shared_checks() {
        assert_eq!(
            one_of(Value::Str(" INFO".into()), &["info"]),
            Ok(Value::Str("info".into()))
        );
        let e = one_of(Value::Strs(vec!["x".into()]), &["a", "b"]).unwrap_err();
        assert_eq!(e, "\"x\" is not one of a, b");
        let e = within(
            Value::Duration(Duration::from_millis(10)),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )
        .unwrap_err();
        assert_eq!(e, "10ms is out of range: accepted 100ms to 1h");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m");
        assert!(not_empty(Value::Str(" ".into())).is_err());
    }
}
