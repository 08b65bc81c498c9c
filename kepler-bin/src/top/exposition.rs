//! Remote mode's parser: a kepler `/metrics` body (Prometheus text format 0.0.4; OpenMetrics
//! text parses too) into a [`Frame`]. Only kepler's own families are read; everything else
//! is skipped. A body that is not an exposition is an error naming the line.

use std::borrow::Cow;
use std::collections::HashMap;

use kepler_core::ZoneKind;

use super::model::{Frame, Level, Workload, ZoneLine};

/// One sample: its family name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Labels in the order written.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value.
    pub value: f64,
}

impl Sample<'_> {
    /// A label's value, `""` when absent (as Prometheus treats a missing label).
    pub fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v.as_ref())
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses every sample of a text exposition.
pub fn parse_samples(body: &str) -> Result<Vec<Sample<'_>>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|message| ParseError {
            line: i + 1,
            message,
        })?);
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_line(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("expected a metric name: {}", snippet(line)));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let key_end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            let key = &rest[..key_end];
            let Some(after) = rest[key_end..].trim_start().strip_prefix('=') else {
                return Err(format!("expected `=` after label {key:?} of {name}"));
            };
            let Some(after) = after.trim_start().strip_prefix('"') else {
                return Err(format!(
                    "expected a quoted value for label {key:?} of {name}"
                ));
            };
            let (value, after) = quoted(after)
                .ok_or_else(|| format!("unterminated value of label {key:?} of {name}"))?;
            if key.is_empty() {
                return Err(format!("empty label name in {name}"));
            }
            labels.push((key, value));
            rest = after;
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("no value for {name}"))?;
    let value =
        parse_value(value_text).ok_or_else(|| format!("bad value {value_text:?} for {name}"))?;
    // An optional timestamp may follow; nothing after it.
    if fields.nth(1).is_some() {
        return Err(format!("unexpected text after the value of {name}"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`), and the rest.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&s[..i]),
                };
                return Some((value, &s[i + 1..]));
            }
            b'\\' => {
                let o = owned.get_or_insert_with(|| s[..i].to_string());
                match bytes.get(i + 1)? {
                    b'n' => o.push('\n'),
                    b'\\' => o.push('\\'),
                    b'"' => o.push('"'),
                    // Unknown escapes are kept as written.
                    _ => {
                        o.push('\\');
                        i += 1;
                        continue;
                    }
                }
                i += 2;
            }
            _ => {
                let ch = s[i..].chars().next()?;
                if let Some(o) = owned.as_mut() {
                    o.push(ch);
                }
                i += ch.len_utf8();
            }
        }
    }
    None
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

fn snippet(line: &str) -> String {
    let s: String = line.chars().take(60).collect();
    format!("{s:?}")
}

/// Why a body is not a kepler exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not text format.
    Parse(ParseError),
    /// Text format, but no `kepler_` family: the URL points at another exporter.
    NotKepler,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Parse(e) => write!(f, "not a Prometheus text exposition: {e}"),
            FrameError::NotKepler => f.write_str("no kepler_ metrics in the response"),
        }
    }
}

/// Reads a kepler exposition into a frame. Its time is the exporter's tick (the latest
/// `kepler_exporter_last_read_timestamp_seconds`), so CPU rates cover the exporter's own
/// interval whatever the refresh; `at_secs` (the caller's clock) stands in when the
/// exposition has no reading time.
pub fn frame_from_exposition(body: &str, at_secs: f64) -> Result<Frame, FrameError> {
    let samples = parse_samples(body).map_err(FrameError::Parse)?;
    if !samples.iter().any(|s| s.name.starts_with("kepler_")) {
        return Err(FrameError::NotKepler);
    }
    let mut b = Builder::default();
    for s in &samples {
        b.sample(s);
    }
    Ok(b.finish(at_secs))
}

/// Accumulates samples family by family.
#[derive(Default)]
struct Builder {
    node: String,
    usage_ratio: Option<f64>,
    zones: Vec<ZoneLine>,
    zone_index: HashMap<(ZoneKind, String), usize>,
    kinds: Vec<ZoneKind>,
    levels: [Vec<Workload>; 4],
    index: [HashMap<String, usize>; 4],
    container_pod: HashMap<String, String>,
    gpu_present: bool,
    tick_time: Option<f64>,
}

impl Builder {
    fn zone(&mut self, kind: ZoneKind, path: &str) -> &mut ZoneLine {
        let key = (kind, path.to_string());
        let i = *self.zone_index.entry(key).or_insert_with(|| {
            self.zones.push(ZoneLine {
                kind,
                path: path.to_string(),
                source: String::new(),
                estimated: false,
                watts: None,
                joules: 0.0,
            });
            self.zones.len() - 1
        });
        &mut self.zones[i]
    }

    fn workload(&mut self, level: Level, s: &Sample<'_>) -> &mut Workload {
        let (id_label, name) = match level {
            Level::Process => ("pid", s.label("comm").to_string()),
            Level::Container => {
                let name = s.label("container_name");
                let id = s.label("container_id");
                (
                    "container_id",
                    if name.is_empty() { id } else { name }.to_string(),
                )
            }
            Level::Pod => (
                "pod_id",
                format!("{}/{}", s.label("pod_namespace"), s.label("pod_name")),
            ),
            Level::Vm => ("vm_id", s.label("vm_name").to_string()),
        };
        let id = s.label(id_label);
        let rows = &mut self.levels[level.index()];
        let i = *self.index[level.index()]
            .entry(id.to_string())
            .or_insert_with(|| {
                rows.push(Workload {
                    id: id.to_string(),
                    name,
                    state: s.label("state").to_string(),
                    ..Workload::default()
                });
                rows.len() - 1
            });
        let w = &mut rows[i];
        if level == Level::Process {
            let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
            w.parents.container = some(s.label("container_id"));
            w.parents.vm = some(s.label("vm_id"));
        }
        if w.state.is_empty() {
            w.state = s.label("state").to_string();
        }
        w
    }

    fn sample(&mut self, s: &Sample<'_>) {
        if self.node.is_empty() {
            self.node = s.label("node_name").to_string();
        }
        let zone = || ZoneKind::from_name(s.label("zone"));
        match s.name {
            "kepler_node_cpu_watts" | "kepler_node_cpu_joules_total" => {
                if let Some(k) = zone() {
                    let z = self.zone(k, s.label("path"));
                    set_zone_value(z, s);
                }
            }
            "kepler_platform_watts" | "kepler_platform_joules_total" => {
                let kind = zone().unwrap_or(ZoneKind::Platform);
                let path = platform_path(s);
                let z = self.zone(kind, &path);
                z.source = s.label("source").to_string();
                set_zone_value(z, s);
            }
            "kepler_node_gpu_watts" | "kepler_node_gpu_joules_total" => {
                self.gpu_present = true;
                let z = self.zone(ZoneKind::Gpu, s.label("gpu_uuid"));
                set_zone_value(z, s);
            }
            "kepler_node_power_source_info" => {
                if let Some(k) = zone() {
                    let z = self.zone(k, s.label("path"));
                    z.source = s.label("source").to_string();
                    z.estimated = s.label("estimated") == "true";
                }
            }
            "kepler_node_cpu_usage_ratio" => self.usage_ratio = Some(s.value),
            "kepler_exporter_last_read_timestamp_seconds" if s.value.is_finite() => {
                self.tick_time = Some(self.tick_time.map_or(s.value, |t| t.max(s.value)));
            }
            // Emitted once per zone kind workloads are charged for, in the exporter's order.
            "kepler_node_cpu_unattributed_joules_total" => {
                if let Some(k) = zone() {
                    if !self.kinds.contains(&k) {
                        self.kinds.push(k);
                    }
                }
            }
            "kepler_process_cpu_seconds_total" => {
                self.workload(Level::Process, s).cpu_seconds = Some(s.value);
            }
            name => {
                let Some((level, rest)) = workload_family(name) else {
                    return;
                };
                if level == Level::Container {
                    let pod = s.label("pod_id");
                    if !pod.is_empty() {
                        self.container_pod
                            .insert(s.label("container_id").to_string(), pod.to_string());
                    }
                }
                let kind = match rest {
                    "cpu_watts" | "cpu_joules_total" => zone(),
                    "gpu_watts" | "gpu_joules_total" => Some(ZoneKind::Gpu),
                    _ => None,
                };
                let Some(kind) = kind else { return };
                if kind == ZoneKind::Gpu {
                    self.gpu_present = true;
                }
                let w = self.workload(level, s);
                // GPU families are per device: a workload's GPU columns add them up.
                let slot = if rest.ends_with("watts") {
                    &mut w.watts[kind.index()]
                } else {
                    &mut w.joules[kind.index()]
                };
                if kind == ZoneKind::Gpu {
                    *slot += s.value;
                } else {
                    *slot = s.value;
                }
            }
        }
    }

    fn finish(mut self, at_secs: f64) -> Frame {
        for p in &mut self.levels[Level::Process.index()] {
            if let Some(c) = &p.parents.container {
                p.parents.pod = self.container_pod.get(c).cloned();
            }
        }
        if self.kinds.is_empty() {
            // An exporter with no unattributed family (older versions): kinds seen on
            // workloads, in export order.
            let mut seen = [false; super::model::KINDS];
            for w in self.levels.iter().flatten() {
                for k in ZoneKind::ALL {
                    if k != ZoneKind::Gpu
                        && (w.watts[k.index()] != 0.0 || w.joules[k.index()] != 0.0)
                    {
                        seen[k.index()] = true;
                    }
                }
            }
            self.kinds = ZoneKind::ALL
                .into_iter()
                .filter(|k| seen[k.index()])
                .collect();
        }
        if self.gpu_present && !self.kinds.contains(&ZoneKind::Gpu) {
            self.kinds.push(ZoneKind::Gpu);
        }
        // A BMC report labels its platform sample with its own labels, not the zone's path:
        // the zone's info line then stands alone, without values. Its source still shows.
        let measured: Vec<String> = self
            .zones
            .iter()
            .filter(|z| z.kind == ZoneKind::Platform && z.watts.is_some())
            .map(|z| z.source.clone())
            .collect();
        self.zones.retain(|z| {
            !(z.kind == ZoneKind::Platform && z.watts.is_none() && measured.contains(&z.source))
        });
        // CPU zones first, then platform and GPU, as the local view orders them.
        self.zones.sort_by_key(|z| !z.kind.is_cpu());
        Frame {
            at_secs: self.tick_time.unwrap_or(at_secs),
            node: self.node,
            zones: self.zones,
            usage_ratio: self.usage_ratio,
            kinds: self.kinds,
            levels: self.levels,
        }
    }
}

fn set_zone_value(z: &mut ZoneLine, s: &Sample<'_>) {
    if s.name.ends_with("_watts") {
        z.watts = Some(s.value);
    } else {
        z.joules = s.value;
    }
}

/// `kepler_<level>_<rest>` for the four workload levels.
fn workload_family(name: &str) -> Option<(Level, &str)> {
    let rest = name.strip_prefix("kepler_")?;
    [
        ("process_", Level::Process),
        ("container_", Level::Container),
        ("pod_", Level::Pod),
        ("vm_", Level::Vm),
    ]
    .into_iter()
    .find_map(|(prefix, level)| rest.strip_prefix(prefix).map(|r| (level, r)))
}

/// A platform zone's path: its `path` label, or (a BMC report's labels) the other labels.
fn platform_path(s: &Sample<'_>) -> String {
    let path = s.label("path");
    if !path.is_empty() {
        return path.to_string();
    }
    s.labels
        .iter()
        .filter(|(k, _)| !matches!(*k, "node_name" | "source" | "zone"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escapes_timestamps_and_special_values() {
        let body =
            "# HELP x y\n# TYPE x gauge\nx 1\ny{a=\"q\\\"uo\\\\te\\n\",b=\"\"} -2.5 1700000000\n\
                    z{a=\"é\",} +Inf\nw NaN\r\n# EOF\n";
        let s = parse_samples(body).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].name, s[0].value), ("x", 1.0));
        assert_eq!(s[1].label("a"), "q\"uo\\te\n");
        assert_eq!(
            (s[1].label("b"), s[1].label("missing"), s[1].value),
            ("", "", -2.5)
        );
        assert_eq!((s[2].label("a"), s[2].value), ("é", f64::INFINITY));
        assert!(s[3].value.is_nan());
    }

    #[test]
    fn bad_input_names_the_line() {
        for (body, line, what) in [
            ("ok 1\n<html>\n", 2, "metric name"),
            ("x{a=\"1} 2\n", 1, "unterminated"),
            ("x{a=1} 2\n", 1, "quoted"),
            ("x 1\n\ny two\n", 3, "bad value"),
            ("x\n", 1, "no value"),
            ("x 1 2 3\n", 1, "unexpected"),
        ] {
            let e = parse_samples(body).unwrap_err();
            assert_eq!(e.line, line, "{body:?}: {e}");
            assert!(e.message.contains(what), "{body:?}: {e}");
        }
        assert_eq!(
            frame_from_exposition("node_load1 0.5\n", 0.0).unwrap_err(),
            FrameError::NotKepler
        );
    }

    /// Containers, pods, VMs and GPUs as the exporter labels them (a hand-written body:
    /// the end-to-end test reads a real one, which on this machine has no pods or GPUs).
    #[test]
    fn groups_gpus_and_parents() {
        let body = r#"
kepler_node_cpu_watts{node_name="n1",zone="package",path="/p0"} 30
kepler_node_cpu_joules_total{node_name="n1",zone="package",path="/p0"} 300
kepler_node_power_source_info{node_name="n1",zone="package",path="/p0",source="model",estimated="true"} 1
kepler_node_gpu_watts{node_name="n1",gpu="0",gpu_uuid="GPU-1",gpu_name="H100",vendor="nvidia"} 70
kepler_node_cpu_unattributed_joules_total{node_name="n1",zone="package"} 1
kepler_process_cpu_watts{node_name="n1",pid="7",comm="py",exe="/py",type="container",container_id="c1",vm_id="",state="running",zone="package"} 2.5
kepler_process_cpu_seconds_total{node_name="n1",pid="7",comm="py",exe="/py",type="container",container_id="c1",vm_id="",state="running"} 12
kepler_process_gpu_watts{node_name="n1",gpu="0",gpu_uuid="GPU-1",gpu_name="H100",vendor="nvidia",pid="7",comm="py",exe="/py",type="container",container_id="c1",vm_id="",state="running"} 40
kepler_process_gpu_watts{node_name="n1",gpu="1",gpu_uuid="GPU-2",gpu_name="H100",vendor="nvidia",pid="7",comm="py",exe="/py",type="container",container_id="c1",vm_id="",state="running"} 5
kepler_container_cpu_joules_total{node_name="n1",container_id="c1",container_name="trainer",runtime="containerd",pod_id="p1",state="running",zone="package"} 20
kepler_pod_cpu_watts{node_name="n1",pod_id="p1",pod_name="train-0",pod_namespace="ml",state="running",zone="package"} 2.5
kepler_vm_cpu_watts{node_name="n1",vm_id="v1",vm_name="guest",hypervisor="kvm",state="terminated",zone="package"} 0
kepler_exporter_last_read_timestamp_seconds{node_name="n1",source="model",zone="package",path="/p0"} 1700000001.5
"#;
        let f = frame_from_exposition(body, 9.0).unwrap();
        assert_eq!(f.node, "n1");
        assert_eq!(f.at_secs, 1_700_000_001.5);
        assert_eq!(f.kinds, [ZoneKind::Package, ZoneKind::Gpu]);
        assert_eq!(f.sources(), ["model"]);
        assert!(f.estimated());
        assert_eq!(f.zones[1].kind, ZoneKind::Gpu);
        assert_eq!(f.zones[1].watts, Some(70.0));
        let p = &f.workloads(Level::Process)[0];
        assert_eq!(p.watts[ZoneKind::Gpu.index()], 45.0);
        assert_eq!(p.watts[ZoneKind::Package.index()], 2.5);
        assert_eq!(p.cpu_seconds, Some(12.0));
        assert_eq!(
            (
                p.parents.container.as_deref(),
                p.parents.pod.as_deref(),
                p.parents.vm.as_deref()
            ),
            (Some("c1"), Some("p1"), None)
        );
        let c = &f.workloads(Level::Container)[0];
        assert_eq!((c.name.as_str(), c.joules[0]), ("trainer", 20.0));
        assert_eq!(f.workloads(Level::Pod)[0].name, "ml/train-0");
        let vm = &f.workloads(Level::Vm)[0];
        assert_eq!(
            (vm.name.as_str(), vm.state.as_str()),
            ("guest", "terminated")
        );
    }
}
