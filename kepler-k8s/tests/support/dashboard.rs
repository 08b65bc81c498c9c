//! The Grafana dashboard's queries as Prometheus would run them, and a check that none adds
//! up CPU zones that overlap (issue 15). Self-contained (std and serde_json only) so another
//! test can take it with `#[path = ".../support/dashboard.rs"] mod dashboard;`.
//!
//! Grafana fills template variables before it sends a query; [`substitute`] does the same
//! with fixed values: `$node` -> `.*` (it only appears in `node_name=~"$node"`), `$zone` ->
//! `package` (the zone every CPU meter has: RAPL, hwmon and the model), `$__range` -> `1h`,
//! `$__rate_interval` and `$__interval` -> `1m`. Any other `$` is an error.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The dashboard file, from the repository root.
pub const DASHBOARD: &str = "deploy/grafana/kepler-dashboard.json";

/// The value each template variable gets in [`substitute`], longest names first.
pub const SUBSTITUTIONS: [(&str, &str); 5] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("$node", ".*"),
    ("$zone", "package"),
];

/// One query of the dashboard, ready for Prometheus.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The panel's title (`variable <name>` for a template variable's query).
    pub panel: String,
    /// The target's refId (the variable's name for a template variable).
    pub ref_id: String,
    /// PromQL with the template variables substituted.
    pub expr: String,
    /// Grafana asks for one instant (the end of the range) instead of a range.
    pub instant: bool,
    /// Labels the legend shows (`{{label}}`): each result series should carry them.
    pub legend_labels: Vec<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The dashboard as JSON.
pub fn dashboard() -> Value {
    let path = repo().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fills Grafana's template variables with the values of [`SUBSTITUTIONS`].
pub fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (var, value) in SUBSTITUTIONS {
        out = out.replace(var, value);
    }
    assert!(
        !out.contains('$'),
        "unknown template variable left in {out:?} (from {expr:?})"
    );
    out
}

fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(label, _)| label.trim().to_string())
        .collect()
}

/// Every panel target, then every query variable (`label_values(SELECTOR, LABEL)` becomes
/// `count by (LABEL) (SELECTOR)`, which has data exactly when the variable has values).
pub fn dashboard_queries() -> Vec<PanelQuery> {
    let dash = dashboard();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().expect("targets") {
            out.push(PanelQuery {
                panel: title.clone(),
                ref_id: t["refId"].as_str().unwrap_or_default().to_string(),
                expr: substitute(t["expr"].as_str().expect("expr")),
                instant: t["instant"] == true,
                legend_labels: legend_labels(t["legendFormat"].as_str().unwrap_or_default()),
            });
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        let Some(def) = v["definition"].as_str() else {
            continue;
        };
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {def}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {name}: {def}"));
        let label = label.trim().to_string();
        out.push(PanelQuery {
            panel: format!("variable {name}"),
            ref_id: name,
            expr: substitute(&format!("count by ({label}) ({})", selector.trim())),
            instant: true,
            legend_labels: vec![label],
        });
    }
    out
}

/// CPU zones that contain another: package holds core and uncore; RAPL psys covers the
/// whole SoC (package, core, uncore, dram).
const CONTAINS: [(&str, &str); 6] = [
    ("package", "core"),
    ("package", "uncore"),
    ("psys", "package"),
    ("psys", "core"),
    ("psys", "uncore"),
    ("psys", "dram"),
];

fn overlap(a: &str, b: &str) -> bool {
    a == b || CONTAINS.contains(&(a, b)) || CONTAINS.contains(&(b, a))
}

/// Metrics with one series per CPU zone.
fn per_zone(metric: &str) -> bool {
    ["node", "pod", "container", "process", "vm"]
        .iter()
        .any(|level| metric.starts_with(&format!("kepler_{level}_cpu_")))
        && ![
            "kepler_node_cpu_usage_ratio",
            "kepler_node_cpu_info",
            "kepler_process_cpu_seconds_total",
        ]
        .contains(&metric)
}

/// Platform series that must never be added up (Redfish PowerControl entries nest).
fn never_summed(metric: &str) -> bool {
    metric.starts_with("kepler_platform_watts") || metric.starts_with("kepler_platform_joules")
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Index just past the bracket that closes the one at `open`, skipping quoted strings.
fn closing(s: &[u8], open: usize) -> Option<usize> {
    let (o, c) = (s[open], if s[open] == b'(' { b')' } else { b'}' });
    let mut depth = 0;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'"' | b'\'' | b'`' => {
                let q = s[i];
                i += 1;
                while i < s.len() && s[i] != q {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            x if x == o => depth += 1,
            x if x == c => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Identifiers of `expr` with their byte ranges, outside quoted strings.
fn idents(expr: &str) -> Vec<(Range<usize>, &str)> {
    let s = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if matches!(s[i], b'"' | b'\'' | b'`') {
            let q = s[i];
            i += 1;
            while i < s.len() && s[i] != q {
                if s[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if ident_char(s[i]) && !s[i].is_ascii_digit() {
            let start = i;
            while i < s.len() && ident_char(s[i]) {
                i += 1;
            }
            out.push((start..i, &expr[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

/// An aggregation such as `sum by (a, b) (...)` or `topk(10, ...)`.
#[derive(Debug)]
pub struct Aggregation {
    pub op: String,
    /// `Some((true, labels))` for `by`, `Some((false, labels))` for `without`.
    pub grouping: Option<(bool, Vec<String>)>,
    /// The argument list, brackets included.
    pub span: Range<usize>,
}

const AGGREGATIONS: [&str; 12] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

fn label_list(expr: &str, open: usize) -> Option<(Vec<String>, usize)> {
    let end = closing(expr.as_bytes(), open)?;
    let labels = expr[open + 1..end - 1]
        .split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    Some((labels, end))
}

/// A `by (...)` or `without (...)` clause at `i`, if there is one.
fn grouping_at(expr: &str, i: usize) -> Option<((bool, Vec<String>), usize)> {
    let s = expr.as_bytes();
    let i = skip_space(s, i);
    for (word, by) in [("by", true), ("without", false)] {
        if expr[i..].starts_with(word) && !s.get(i + word.len()).is_some_and(|&c| ident_char(c)) {
            let open = skip_space(s, i + word.len());
            if s.get(open) == Some(&b'(') {
                let (labels, end) = label_list(expr, open)?;
                return Some(((by, labels), end));
            }
        }
    }
    None
}

/// Every aggregation of `expr`.
pub fn aggregations(expr: &str) -> Vec<Aggregation> {
    let s = expr.as_bytes();
    let mut out = Vec::new();
    for (range, word) in idents(expr) {
        if !AGGREGATIONS.contains(&word) {
            continue;
        }
        let mut i = range.end;
        let mut grouping = None;
        if let Some((g, end)) = grouping_at(expr, i) {
            grouping = Some(g);
            i = end;
        }
        let open = skip_space(s, i);
        if s.get(open) != Some(&b'(') {
            continue;
        }
        let Some(end) = closing(s, open) else {
            continue;
        };
        if grouping.is_none() {
            grouping = grouping_at(expr, end).map(|(g, _)| g);
        }
        out.push(Aggregation {
            op: word.to_string(),
            grouping,
            span: open..end,
        });
    }
    out
}

/// A metric selector: the name, where it is, and its `{...}` matchers as (label, op, value).
#[derive(Debug)]
pub struct Selector {
    pub metric: String,
    pub at: usize,
    pub matchers: Vec<(String, String, String)>,
}

/// Every `kepler_*` selector of `expr`.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let s = expr.as_bytes();
    let mut out = Vec::new();
    for (range, word) in idents(expr) {
        if !word.starts_with("kepler_") {
            continue;
        }
        let mut matchers = Vec::new();
        let open = skip_space(s, range.end);
        if s.get(open) == Some(&b'{') {
            if let Some(end) = closing(s, open) {
                let mut rest = &expr[open + 1..end - 1];
                while let Some(q) = rest.find('"') {
                    let head = rest[..q].trim().trim_start_matches(',').trim();
                    let op_at = head.find(['=', '!']).unwrap_or(head.len());
                    let (label, op) = head.split_at(op_at);
                    let tail = &rest[q + 1..];
                    let close = tail.find('"').unwrap_or(tail.len());
                    matchers.push((
                        label.trim().to_string(),
                        op.trim().to_string(),
                        tail[..close].to_string(),
                    ));
                    rest = tail.get(close + 1..).unwrap_or("");
                }
            }
        }
        out.push(Selector {
            metric: word.to_string(),
            at: range.start,
            matchers,
        });
    }
    out
}

/// Why `expr` adds up energy twice, one line per problem; empty when it does not. A per-zone
/// CPU metric must either pin its zones to a set that does not overlap (`zone="package"`,
/// `zone=~"package|dram"`), or every aggregation around it must keep `zone` (`by (zone)`).
/// A platform metric is never inside a `sum`.
pub fn zone_problems(expr: &str) -> Vec<String> {
    let aggs = aggregations(expr);
    let mut problems = Vec::new();
    for sel in selectors(expr) {
        let around: Vec<&Aggregation> = aggs.iter().filter(|a| a.span.contains(&sel.at)).collect();
        if never_summed(&sel.metric) {
            if around.iter().any(|a| a.op == "sum") {
                problems.push(format!(
                    "{} is summed: its series nest and must be shown one by one",
                    sel.metric
                ));
            }
            continue;
        }
        if !per_zone(&sel.metric) {
            continue;
        }
        let zone: Vec<_> = sel.matchers.iter().filter(|m| m.0 == "zone").collect();
        if let Some((_, op, value)) = zone.first() {
            let zones: Vec<&str> = match op.as_str() {
                "=" => vec![value.as_str()],
                "=~" => value.split('|').collect(),
                _ => {
                    problems.push(format!(
                        "{}: zone{op}\"{value}\" leaves an open set of zones",
                        sel.metric
                    ));
                    continue;
                }
            };
            for (i, a) in zones.iter().enumerate() {
                if !a.chars().all(|c| c.is_ascii_lowercase()) {
                    problems.push(format!(
                        "{}: zone pattern {a:?} is not a zone name",
                        sel.metric
                    ));
                }
                for b in &zones[i + 1..] {
                    if overlap(a, b) {
                        problems.push(format!("{}: zones {a} and {b} overlap", sel.metric));
                    }
                }
            }
            continue;
        }
        // Counting series adds no energy.
        for a in around
            .into_iter()
            .filter(|a| !["count", "group", "count_values"].contains(&a.op.as_str()))
        {
            let keeps_zone = match &a.grouping {
                Some((true, labels)) => labels.iter().any(|l| l == "zone"),
                Some((false, labels)) => !labels.iter().any(|l| l == "zone"),
                None => false,
            };
            if !keeps_zone {
                problems.push(format!(
                    "{} without a zone matcher is aggregated by {} across zones that overlap",
                    sel.metric, a.op
                ));
            }
        }
    }
    problems
}
