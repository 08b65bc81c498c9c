//! The YAML config file as the user wrote it, read against the key table.
//!
//! The file is parsed into a plain tree, then walked: a path that [`KEYS`] declares is read as
//! that key's type; a path that is a prefix of declared keys is a section and is walked; any
//! other path is unknown. Unknown keys are collected (not rejected) so that a config written
//! for Go Kepler still loads; each is reported as a warning naming its full dotted path.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::key::{Key, Ty, Value};
use super::keys::KEYS;

/// A YAML value, as generic as the file.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What kind of value it is, for messages.
    fn kind(&self) -> String {
        match self {
            Node::Null => "nothing".into(),
            Node::Bool(b) => format!("the boolean {b}"),
            Node::Int(i) => format!("the number {i}"),
            Node::Float(f) => format!("the number {f}"),
            Node::Str(s) => format!("the string {s:?}"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a map".into(),
        }
    }

    /// A scalar as text: YAML `5` where a string is expected is `"5"`, as serde reads it.
    fn text(&self) -> Option<String> {
        match self {
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Node::Int(i) => Some(*i as f64),
            Node::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element()? {
            out.push(n);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out: Vec<(String, Node)> = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let Some(k) = k.text() else {
                return Err(de::Error::custom(format!(
                    "a key is {}; keys must be names",
                    k.kind()
                )));
            };
            let v = map.next_value()?;
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            out.push((k, v));
        }
        Ok(Node::Map(out))
    }
}

/// What a file said, key by key.
#[derive(Debug, Default)]
pub struct FileValues {
    /// Values of declared keys, in file order.
    pub values: Vec<(&'static Key, Value)>,
    /// Warnings, in file order: unknown keys, Go Kepler keys without effect here.
    pub warnings: Vec<String>,
}

/// A file that cannot be used: the YAML does not parse (`key` is `None`: the file is named),
/// or a declared key holds a value of the wrong type.
#[derive(Debug)]
pub struct FileError {
    /// The dotted key, when the file parses.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Reads the text of a config file. An empty document is the empty config.
pub fn read(text: &str) -> Result<FileValues, FileError> {
    let mut out = FileValues::default();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let root: Node = serde_saphyr::from_str(text).map_err(|e| FileError {
        key: None,
        message: e.to_string(),
    })?;
    section("", root, &mut out)?;
    Ok(out)
}

/// The warning for a key this build does not know.
pub fn unknown_warning(path: &str) -> String {
    format!("unknown config key {path:?} ignored")
}

/// The warning for a key that is accepted without effect.
pub fn inert_warning(path: &str, why: &str) -> String {
    format!("config key {path:?} has no effect in kepler-rs: {why}")
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

/// Declared YAML keys under `prefix.`
fn under(prefix: &str) -> impl Iterator<Item = &'static Key> + '_ {
    KEYS.iter().copied().filter(move |k| {
        k.in_yaml
            && (prefix.is_empty()
                || k.path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.')))
    })
}

fn section(prefix: &str, node: Node, out: &mut FileValues) -> Result<(), FileError> {
    let entries = match node {
        Node::Map(entries) => entries,
        Node::Null => return Ok(()),
        // A section of Go keys without effect, written as one value (`stdout: false`).
        other if !prefix.is_empty() && under(prefix).all(|k| k.inert.is_some()) => {
            let why = under(prefix).next().and_then(|k| k.inert).unwrap_or("");
            let _ = other;
            out.warnings.push(inert_warning(prefix, why));
            return Ok(());
        }
        other => {
            return Err(FileError {
                key: Some(if prefix.is_empty() {
                    "config file".into()
                } else {
                    prefix.into()
                }),
                message: format!("expected a map of keys, got {}", other.kind()),
            })
        }
    };
    for (k, v) in entries {
        let path = join(prefix, &k);
        if let Some(key) = under(prefix).find(|key| key.path == path) {
            if let Some(why) = key.inert {
                out.warnings.push(inert_warning(&path, why));
            }
            if let Some(value) = leaf(key, v).map_err(|message| FileError {
                key: Some(path.clone()),
                message,
            })? {
                out.values.push((key, value));
            }
        } else if under(&path).next().is_some() {
            section(&path, v, out)?;
        } else {
            out.warnings.push(unknown_warning(&path));
        }
    }
    Ok(())
}

/// One value of a declared key; `None` for YAML null (as if it were not written).
fn leaf(key: &Key, node: Node) -> Result<Option<Value>, String> {
    if node == Node::Null || key.ty == Ty::Any {
        return Ok(None);
    }
    let wrong = |want: &str, node: &Node| format!("expected {want}, got {}", node.kind());
    let value = match key.ty {
        Ty::Bool => match node {
            Node::Bool(b) => Value::Bool(b),
            n => return Err(wrong("true or false", &n)),
        },
        Ty::Int => match node {
            Node::Int(i) => Value::Int(
                i64::try_from(i).map_err(|_| format!("{i} is out of range of a 64-bit number"))?,
            ),
            n => return Err(wrong("a whole number", &n)),
        },
        Ty::Float => match node.number() {
            Some(f) => Value::Float(f),
            None => return Err(wrong("a number", &node)),
        },
        Ty::Str | Ty::Duration => match node.text() {
            Some(s) => Value::Str(s),
            None => return Err(wrong("a string", &node)),
        },
        Ty::Strs => match node {
            Node::Seq(items) => Value::Strs(
                items
                    .iter()
                    .map(|n| n.text().ok_or_else(|| wrong("a list of strings", n)))
                    .collect::<Result<_, _>>()?,
            ),
            n => return Err(wrong("a list of strings", &n)),
        },
        Ty::Floats => match node {
            Node::Seq(items) => Value::Floats(
                items
                    .iter()
                    .map(|n| n.number().ok_or_else(|| wrong("a list of numbers", n)))
                    .collect::<Result<_, _>>()?,
            ),
            n => return Err(wrong("a list of numbers", &n)),
        },
        Ty::Any => return Ok(None),
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(f: &FileValues) -> Vec<&str> {
        f.values.iter().map(|(k, _)| k.path).collect()
    }

    #[test]
    fn reads_kepler_keys_and_reports_unknown_ones() {
        let f = read(
            "log:\n  level: debug\nmonitor:\n  interval: 3s\n  maxTerminated: 10\n  bogus: 1\n\
             web:\n  listenAddresses: [':9999']\nfoo: bar\nexporter:\n  prometheus:\n    metricsLevel: [node]\n    colour: red\n",
        )
        .unwrap();
        assert_eq!(
            paths(&f),
            [
                "log.level",
                "monitor.interval",
                "monitor.maxTerminated",
                "web.listenAddresses",
                "exporter.prometheus.metricsLevel"
            ]
        );
        assert_eq!(f.values[2].1, Value::Int(10));
        assert_eq!(f.values[3].1, Value::Strs(vec![":9999".into()]));
        assert_eq!(
            f.warnings,
            [
                unknown_warning("monitor.bogus"),
                unknown_warning("foo"),
                unknown_warning("exporter.prometheus.colour")
            ]
        );
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let e = read("monitor:\n  maxTerminated: lots\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("monitor.maxTerminated"));
        assert!(e.message.contains("lots"), "{}", e.message);
        let e = read("log: [1]\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("log"));
        let e = read("monitor: [1, 2").unwrap_err();
        assert_eq!(e.key, None);
    }

    #[test]
    fn empty_file_is_default() {
        let f = read("\n# nothing\n").unwrap();
        assert!(f.values.is_empty() && f.warnings.is_empty());
        assert!(read("log:\n").unwrap().values.is_empty());
    }

    #[test]
    fn scalars_are_read_as_text_where_a_string_is_expected() {
        let f = read("host:\n  sysfs: 5\nmodel:\n  idleWatts: 7\n").unwrap();
        assert_eq!(f.values[0].1, Value::Str("5".into()));
        assert_eq!(f.values[1].1, Value::Float(7.0));
    }

    /// Issue 14 (item 7), issue 17: Go Kepler's keys are read (no longer swallowed);
    /// `chipRules`, which has no counterpart here, warns and names itself.
    #[test]
    fn go_keys_are_read_or_warn_issue_17() {
        let f = read(
            "exporter:\n  stdout:\n    enabled: false\n  prometheus:\n    debugCollectors: [go]\n\
             debug:\n  pprof:\n    enabled: true\ndev:\n  fake-cpu-meter:\n    enabled: true\n    zones: [package]\n\
             monitor:\n  minTerminatedEnergyThreshold: 10\nexperimental:\n  hwmon:\n    chipRules: []\n",
        )
        .unwrap();
        assert_eq!(
            paths(&f),
            [
                "exporter.stdout.enabled",
                "exporter.prometheus.debugCollectors",
                "debug.pprof.enabled",
                "dev.fake-cpu-meter.enabled",
                "dev.fake-cpu-meter.zones",
                "monitor.minTerminatedEnergyThreshold"
            ]
        );
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(f.warnings[0].contains("\"experimental.hwmon.chipRules\" has no effect"));
        let f = read("dev:\n  fake-cpu-meter:\n    colour: 1\n").unwrap();
        assert_eq!(f.warnings, [unknown_warning("dev.fake-cpu-meter.colour")]);
    }
}
