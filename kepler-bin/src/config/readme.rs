//! The README's configuration tables, rendered from the key table. The `config_doc` test
//! fails when README.md differs from them; [`README_UPDATE_COMMAND`] rewrites it.

use super::key::{DefaultValue, Key, Table};
use super::keys::KEYS;

/// Rewrites README.md's tables from the declarations.
pub const README_UPDATE_COMMAND: &str =
    "KEPLER_UPDATE_README=1 cargo test -p kepler-bin --test config_doc";

/// The tables, each between `<!-- config-keys:NAME -->` and `<!-- /config-keys:NAME -->`.
const TABLES: [(&str, Table); 5] = [
    ("main", Table::Main),
    ("redfish", Table::Redfish),
    ("ipmi", Table::Ipmi),
    ("carbon", Table::Carbon),
    ("inert", Table::Inert),
];

fn code(s: &str) -> String {
    format!("`{s}`")
}

fn row(key: &Key) -> String {
    if key.table == Table::Inert {
        return cells(&[&code(key.path), key.doc]);
    }
    let yaml = if key.in_yaml {
        code(key.path)
    } else {
        String::new()
    };
    let flag = match key.flag {
        None => String::new(),
        Some(f) => match f.alias {
            None => code(&format!("--{}", f.long)),
            Some(a) => format!(
                "{} (or {})",
                code(&format!("--{}", f.long)),
                code(&format!("--{a}"))
            ),
        },
    };
    let default = match key.default {
        DefaultValue::Value(v) => code(v),
        DefaultValue::Text(t) => t.to_string(),
    };
    cells(&[&yaml, &flag, &default, key.doc])
}

/// `| a | b |` with an empty cell as `| |`.
fn cells(cells: &[&str]) -> String {
    let mut out = String::from("|");
    for c in cells {
        out.push_str(if c.is_empty() { " |" } else { " " });
        if !c.is_empty() {
            out.push_str(c);
            out.push_str(" |");
        }
    }
    out.push('\n');
    out
}

/// One table, header included.
fn table(which: Table) -> String {
    let mut out = match which {
        Table::Inert => "| Go Kepler key | why it has no effect in kepler-rs |\n|---|---|\n",
        _ => "| YAML key | flag | default | meaning |\n|---|---|---|---|\n",
    }
    .to_string();
    for key in KEYS.iter().filter(|k| k.table == which) {
        out.push_str(&row(key));
    }
    out
}

/// `readme` with every marked table replaced by its rendering; an error names a missing
/// marker.
pub fn readme_with_tables(readme: &str) -> Result<String, String> {
    let mut out = readme.to_string();
    for (name, which) in TABLES {
        let open = format!("<!-- config-keys:{name} -->\n");
        let close = format!("<!-- /config-keys:{name} -->");
        let start = out
            .find(&open)
            .ok_or_else(|| format!("README has no {open:?} marker"))?
            + open.len();
        let end = out[start..]
            .find(&close)
            .ok_or_else(|| format!("README has no {close:?} marker"))?
            + start;
        out.replace_range(start..end, &table(which));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_flag_alias_and_default() {
        let t = table(Table::Redfish);
        assert!(t.contains("| `experimental.platform.redfish.configFile` | `--experimental.platform.redfish.config` (or `--experimental.platform.redfish.config-file`) | none, required | the BMC file |"), "{t}");
        let t = table(Table::Main);
        assert!(
            t.contains("| `log.level` | `--log.level` | `info` | debug, info, warn, error |"),
            "{t}"
        );
        assert!(t.contains("| | `--config.file` | none |"), "{t}");
        assert!(readme_with_tables("no markers").is_err());
    }
}
