//! The first stage: what the user wrote, key by key, with a flag over the file's value, and
//! the warnings about keys that are unknown or without effect. Values are read out typed,
//! defaulted and checked through their declaration ([`RawConfig::get`]).

use std::collections::BTreeMap;

use super::key::{FromValue, Key, Ty, Value};
use super::keys::KEYS;
use super::{err, parse_duration, yaml, ConfigError, Flags};

/// What the user wrote: the file's values under the flags'.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    /// Given values by dotted path; a flag replaced the file's value.
    given: BTreeMap<&'static str, Value>,
    /// Unknown keys and keys without effect, in file then flag order.
    pub warnings: Vec<String>,
}

impl RawConfig {
    /// Reads the file text (`(path, text)`, `None` when there is no file) and lays the flags
    /// over it. A file that does not parse is an error naming the file; a value of the wrong
    /// type one naming its key.
    pub fn new(flags: &Flags, file_text: Option<(&str, &str)>) -> Result<RawConfig, ConfigError> {
        RawConfig::with_env(flags, file_text, &[])
    }

    /// [`RawConfig::new`] with the environment `env` (`KEPLER_<PATH>` variables, see
    /// [`super::env`]) between the file and the flags.
    pub fn with_env(
        flags: &Flags,
        file_text: Option<(&str, &str)>,
        env: &[(String, String)],
    ) -> Result<RawConfig, ConfigError> {
        let mut raw = RawConfig::default();
        if let Some((path, text)) = file_text {
            let file = yaml::read(text).map_err(|e| match e.key {
                Some(key) => err(&key, format!("{} (in {path})", e.message)),
                None => err(path, e.message),
            })?;
            raw.warnings = file.warnings;
            for (key, value) in file.values {
                raw.given.insert(key.path, value);
            }
        }
        for (key, value, var) in super::env::read(env).map_err(|(k, m)| err(&k, m))? {
            if let Some(why) = key.inert {
                raw.warnings.push(format!(
                    "{} (from ${var})",
                    yaml::inert_warning(key.path, why)
                ));
                continue;
            }
            raw.given.insert(key.path, value);
        }
        for (key, value) in flags.values() {
            if let Some(why) = key.inert {
                if !raw.given.contains_key(key.path) {
                    raw.warnings.push(yaml::inert_warning(key.path, why));
                }
            }
            raw.given.insert(key.path, value.clone());
        }
        Ok(raw)
    }

    /// Whether the user gave the key, in the file or as a flag.
    pub(crate) fn is_set(&self, key: &Key) -> bool {
        self.given.contains_key(key.path)
    }

    /// Warnings for keys set where another key makes them unused (`only_when`). Empty
    /// strings count as unset, as the validated stage reads them.
    pub(crate) fn unused_warnings(&self) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for key in KEYS {
            let Some((other, wanted)) = key.only_when else {
                continue;
            };
            let set = match self.given.get(key.path) {
                Some(Value::Str(s)) => !s.trim().is_empty(),
                Some(_) => true,
                None => false,
            };
            let actual = match other.ty {
                Ty::Bool => self.value::<bool>(other)?.to_string(),
                _ => self.value::<String>(other)?,
            };
            if set && actual != wanted {
                out.push(format!(
                    "config key {:?} has no effect unless {} is {wanted} (it is {actual})",
                    key.path, other.path
                ));
            }
        }
        Ok(out)
    }

    /// The key's value: given, else its declared default, checked; `None` when neither.
    pub(crate) fn get<T: FromValue>(&self, key: &Key) -> Result<Option<T>, ConfigError> {
        let value = match self.given.get(key.path) {
            Some(v) => v.clone(),
            None => match key.default_value() {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let value = match (key.ty, value) {
            (Ty::Duration, Value::Str(s)) => {
                Value::Duration(parse_duration(&s).map_err(|e| err(key.path, e))?)
            }
            (_, v) => v,
        };
        let value = match key.check {
            Some(check) => check(value).map_err(|m| err(key.path, m))?,
            None => value,
        };
        T::from_value(value).map(Some).ok_or_else(|| {
            err(
                key.path,
                format!("declared as {:?} but read as another type", key.ty),
            )
        })
    }

    /// The value of a key that has a default.
    pub(crate) fn value<T: FromValue>(&self, key: &Key) -> Result<T, ConfigError> {
        self.get(key)?
            .ok_or_else(|| err(key.path, "has no value and no default"))
    }
}
