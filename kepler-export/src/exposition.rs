//! Snapshot -> Prometheus text exposition, rendered once per snapshot.
//!
//! # Why hand-written
//!
//! The body is written by hand into one pre-sized `Vec<u8>` with `itoa` and `ryu`, not with a
//! client library:
//!
//! - `prometheus-client` emits only OpenMetrics, and Debian's `promtool check metrics` parses
//!   only the text format 0.0.4 (it rejects OpenMetrics with "no help text"). Kepler users
//!   lint and scrape the 0.0.4 format, so that is the primary format here, and the
//!   OpenMetrics body is derived from it on demand.
//! - Hand-written rendering measured about twice as fast (40k series in 5-6 ms against
//!   9-11 ms, see `ECOSYSTEM.md`), and a 10,000-process node has about 100k series.
//! - A snapshot is immutable, so there is no registry to keep in sync: the text is a pure
//!   function of (snapshot, context, self-stats).
//!
//! Per-workload label sets are escaped once into an arena and then copied for each zone and
//! family; nothing is allocated per line. Energy counters are integer microjoules and are
//! written as exact decimals (`12.000345`), with no float rounding.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use kepler_core::{
    CarbonSnapshot, CpuInfo, GpuSnapshot, NodeZone, PerKind, ProcessEntry, ReadError, Snapshot,
    SourceKind, SourceReport, State, Timestamp, ZoneKind,
};

use crate::fold::{FoldedProcesses, OtherSeries};
use crate::level::MetricsLevel;

mod carbon;
mod components;
mod gpu;
mod guide;
mod platform;
mod process;

pub use carbon::CarbonStats;
pub use components::{BpfStats, KubeMode, KubeRequestStats, KubeStats};
pub use process::ProcessStats;

/// The content type of the text format 0.0.4 body.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the OpenMetrics 1.0.0 body.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// What the binary was built from, for `kepler_build_info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// Crate version, e.g. `0.1.0`.
    pub version: String,
    /// VCS revision (commit hash).
    pub revision: String,
    /// VCS branch.
    pub branch: String,
    /// The Rust compiler version.
    pub rust_version: String,
    /// Target architecture, e.g. `x86_64`.
    pub arch: String,
    /// Built with the `fips` feature (TLS on the aws-lc FIPS module; issue 16).
    pub fips: bool,
    /// Built with the `bpf` feature: the eBPF activity source is compiled in (issue 21).
    /// Whether it is in use is `kepler_exporter_activity_errors_total{source}`.
    pub bpf: bool,
}

/// What the exporter knows besides the snapshot: constant labels, levels, CPU inventory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportContext {
    /// The `node_name` label on every series.
    pub node_name: String,
    /// Which levels to export.
    pub level: MetricsLevel,
    /// Build information for `kepler_build_info`.
    pub build: BuildInfo,
    /// Logical CPUs for `kepler_node_cpu_info`.
    pub cpu_info: Vec<CpuInfo>,
    /// Unix time (seconds) at `kepler_core::Timestamp(0)`, to turn the monotonic read times
    /// of the snapshot into Unix timestamps.
    pub wall_offset_secs: f64,
    /// Adds the setup guide's series (`exporter.prometheus.compat: [guide]`).
    pub guide_aliases: bool,
}

impl ExportContext {
    /// The Unix time, in seconds, of the monotonic instant `at`.
    fn unix_secs(&self, at: Timestamp) -> f64 {
        at.0 as f64 / 1e9 + self.wall_offset_secs
    }
}

/// Self-metrics of the monitor loop that the snapshot does not carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelfStats {
    /// How long the latest tick took (read sources, step the engine), seconds.
    pub tick_duration_secs: f64,
    /// The activity source's name (`procfs`, `bpf`, ...).
    pub activity_source: &'static str,
    /// Failed activity reads since start.
    pub activity_errors: u64,
    /// Per power source timings.
    pub sources: Vec<SourceSelf>,
    /// The eBPF activity source's counters; `None` under another activity source.
    pub bpf: Option<BpfStats>,
    /// The pod informer's counters; `None` without Kubernetes.
    pub kube: Option<KubeStats>,
    /// kepler's own process (`exporter.prometheus.debugCollectors: [process]`); `None`
    /// when off.
    pub process: Option<ProcessStats>,
    /// The tick's carbon (`carbon.*`, issue 20); `None` when off.
    pub carbon: Option<CarbonStats>,
    /// The online power model fitted to each metered CPU zone (issue 20); empty where the
    /// CPU meter is itself an estimate.
    pub model_fit: Vec<ModelFit>,
}

/// How well the online power model fits one metered zone (`kepler_model_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFit {
    /// The zone it models.
    pub zone: ZoneKind,
    /// The zone's `path` label.
    pub path: String,
    /// Samples fitted.
    pub samples: u64,
    /// Mean absolute error of each prediction before its sample was added, watts; `None`
    /// during the warm-up.
    pub mean_absolute_error_watts: Option<f64>,
    /// In-sample R²; `None` while the zone's power has not varied.
    pub r_squared: Option<f64>,
}

/// Self-metrics of one power source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceSelf {
    /// The `source` label (`rapl`, `hwmon`, ...).
    pub source: String,
    /// How long its latest read took, seconds.
    pub read_duration_secs: f64,
    /// Zone labels and endpoint health it reported (Redfish: BMC ids, chassis ids, BMC up).
    pub report: SourceReport,
}

/// One rendered snapshot: the Prometheus text 0.0.4 body, rendered once. The gzip and
/// OpenMetrics variants are made lazily, at most once each, on the first request that asks
/// for them; every later scrape of this exposition gets the cached bytes. Which variants were
/// asked for is remembered, so that the next exposition can have them made before it is
/// published ([`prepare_like`](Self::prepare_like)) and no scrape waits for a compression.
#[derive(Debug)]
pub struct Exposition {
    text: Bytes,
    /// Offsets in `text` of the `_total` suffix of counter names in `# HELP`/`# TYPE` lines:
    /// OpenMetrics names the counter family without it.
    om_cuts: Vec<usize>,
    text_gzip: OnceLock<Bytes>,
    openmetrics: OnceLock<Bytes>,
    openmetrics_gzip: OnceLock<Bytes>,
    /// Which of text+gzip, OpenMetrics, OpenMetrics+gzip a request asked for.
    asked: [AtomicBool; 3],
    at: Timestamp,
    samples: usize,
    render_duration: Duration,
}

impl Exposition {
    /// Renders a tick as Prometheus text 0.0.4: the CPU snapshot `snap`, the GPU snapshot of
    /// the same tick (`None` without GPU metering), and the self-metrics of the loop.
    #[must_use]
    pub fn render(
        snap: &Snapshot,
        gpu: Option<&GpuSnapshot>,
        ctx: &ExportContext,
        stats: &SelfStats,
    ) -> Exposition {
        Exposition::render_folded(snap, gpu, None, ctx, stats)
    }

    /// As [`render`](Self::render), with the process series folded by `fold`: the
    /// [`ProcessFold`](crate::ProcessFold)'s result for this same `snap`. Only the shown
    /// processes get series of their own, plus one `type="other"` series per container, VM
    /// and for host processes (issue 21). `None`, or a result made from another snapshot,
    /// renders every process.
    #[must_use]
    pub fn render_folded(
        snap: &Snapshot,
        gpu: Option<&GpuSnapshot>,
        fold: Option<&FoldedProcesses>,
        ctx: &ExportContext,
        stats: &SelfStats,
    ) -> Exposition {
        let started = Instant::now();
        let mut r = Renderer::new(snap, ctx);
        let carbon = stats.carbon.as_ref().map(|c| &*c.carbon);
        r.node(snap, gpu, ctx, stats);
        if let Some(c) = &stats.carbon {
            carbon::render(&mut r.out, c);
        }
        platform::render(&mut r.out, snap, ctx, stats);
        if let Some(g) = gpu {
            gpu::render(&mut r.out, g, ctx);
        }
        r.workloads(snap, fold, ctx.level, carbon);
        r.build_info(&ctx.build);
        r.self_metrics(snap, ctx, stats);
        if let Some(p) = &stats.process {
            process::render(&mut r.out, p);
        }
        if ctx.guide_aliases {
            guide::render(&mut r.out, snap, gpu, ctx);
        }
        let render_duration = started.elapsed();
        r.out.header(
            "kepler_exporter_render_duration_seconds",
            Kind::Gauge,
            "Time taken to render this exposition, up to this family.",
        );
        r.out.open("kepler_exporter_render_duration_seconds");
        r.out.close_f64(render_duration.as_secs_f64());
        Exposition {
            text: Bytes::from(r.out.buf),
            om_cuts: r.out.cuts,
            text_gzip: OnceLock::new(),
            openmetrics: OnceLock::new(),
            openmetrics_gzip: OnceLock::new(),
            asked: Default::default(),
            at: snap.at,
            samples: r.out.samples,
            render_duration,
        }
    }

    /// The Prometheus text 0.0.4 body.
    pub fn text(&self) -> &Bytes {
        &self.text
    }

    /// The text body, gzip-compressed (made on first call, then cached).
    pub fn text_gzip(&self) -> &Bytes {
        self.text_gzip.get_or_init(|| gzip(&self.text))
    }

    /// The OpenMetrics 1.0.0 body (made on first call, then cached): counter families are
    /// named without `_total` in `# HELP`/`# TYPE`, and the body ends with `# EOF`.
    pub fn openmetrics(&self) -> &Bytes {
        self.openmetrics
            .get_or_init(|| to_openmetrics(&self.text, &self.om_cuts))
    }

    /// The OpenMetrics body, gzip-compressed (made on first call, then cached).
    pub fn openmetrics_gzip(&self) -> &Bytes {
        self.openmetrics_gzip
            .get_or_init(|| gzip(self.openmetrics()))
    }

    /// The body in `format`, gzip-compressed when `gzip` is true.
    pub fn body(&self, format: Format, gzip: bool) -> &Bytes {
        match (format, gzip) {
            (Format::Text, false) => self.text(),
            (Format::Text, true) => self.text_gzip(),
            (Format::OpenMetrics, false) => self.openmetrics(),
            (Format::OpenMetrics, true) => self.openmetrics_gzip(),
        }
    }

    /// The body if it is already made, without making it. Counts as asking for it.
    pub(crate) fn cached_body(&self, format: Format, gzip: bool) -> Option<&Bytes> {
        let variant = match (format, gzip) {
            (Format::Text, false) => None,
            (Format::Text, true) => Some(0),
            (Format::OpenMetrics, false) => Some(1),
            (Format::OpenMetrics, true) => Some(2),
        };
        if let Some(flag) = variant.and_then(|i| self.asked.get(i)) {
            flag.store(true, Ordering::Relaxed);
        }
        match (format, gzip) {
            (Format::Text, false) => Some(&self.text),
            (Format::Text, true) => self.text_gzip.get(),
            (Format::OpenMetrics, false) => self.openmetrics.get(),
            (Format::OpenMetrics, true) => self.openmetrics_gzip.get(),
        }
    }

    /// Whether the body in `format` (gzip-compressed when `gzip`) is already made.
    pub fn is_made(&self, format: Format, gzip: bool) -> bool {
        match (format, gzip) {
            (Format::Text, false) => true,
            (Format::Text, true) => self.text_gzip.get().is_some(),
            (Format::OpenMetrics, false) => self.openmetrics.get().is_some(),
            (Format::OpenMetrics, true) => self.openmetrics_gzip.get().is_some(),
        }
    }

    /// Makes the variants that requests asked of `previous` (an interval's worth of scrapes
    /// of the exposition this one replaces), so that scrapes of this one find them ready.
    /// Run by the publisher, off the request path; a variant nobody asked for during one
    /// interval is no longer made ahead.
    pub fn prepare_like(&self, previous: &Exposition) {
        let asked = |i: usize| {
            previous
                .asked
                .get(i)
                .is_some_and(|f| f.load(Ordering::Relaxed))
        };
        if asked(0) {
            self.text_gzip();
        }
        if asked(1) {
            self.openmetrics();
        }
        if asked(2) {
            self.openmetrics_gzip();
        }
    }

    /// The snapshot's tick time.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// Number of samples (series) in the body.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// How long rendering the text took.
    pub fn render_duration(&self) -> Duration {
        self.render_duration
    }
}

fn gzip(data: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 6 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    enc.write_all(data).expect("gzip into memory");
    Bytes::from(enc.finish().expect("gzip into memory"))
}

fn to_openmetrics(text: &[u8], cuts: &[usize]) -> Bytes {
    const SUFFIX: usize = "_total".len();
    let mut out = Vec::with_capacity(text.len() + 8);
    let mut pos = 0;
    for &cut in cuts {
        out.extend_from_slice(&text[pos..cut]);
        pos = cut + SUFFIX;
    }
    out.extend_from_slice(&text[pos..]);
    out.extend_from_slice(b"# EOF\n");
    Bytes::from(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// The output buffer and its line writers. A sample is written as `open`, `label`s, `close_*`.
struct Out {
    buf: Vec<u8>,
    cuts: Vec<usize>,
    /// `node_name="<escaped>"`, written first in every label set.
    node: Vec<u8>,
    samples: usize,
}

impl Out {
    /// Writes `# HELP` and `# TYPE` for a family. Counter names end in `_total`.
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(
            !help.contains(['\\', '"', '\n']),
            "help text must need no escaping in either format"
        );
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"));
        for (prefix, tail) in [("# HELP ", help), ("# TYPE ", kind.as_str())] {
            self.buf.extend_from_slice(prefix.as_bytes());
            self.buf.extend_from_slice(name.as_bytes());
            if kind == Kind::Counter {
                self.cuts.push(self.buf.len() - "_total".len());
            }
            self.buf.push(b' ');
            self.buf.extend_from_slice(tail.as_bytes());
            self.buf.push(b'\n');
        }
    }

    /// Starts a sample: `name{node_name="..."`.
    #[inline]
    fn open(&mut self, name: &str) {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(b'{');
        self.buf.extend_from_slice(&self.node);
    }

    /// Appends `,key="value"`, escaping the value.
    #[inline]
    fn label(&mut self, key: &str, value: &str) {
        push_label(&mut self.buf, key, value);
    }

    /// Appends `,key="value"` for a value that needs no escaping.
    #[inline]
    fn label_raw(&mut self, key: &str, value: &str) {
        self.buf.push(b',');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"=\"");
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(b'"');
    }

    /// Appends already-written labels.
    #[inline]
    fn labels(&mut self, pre: &[u8]) {
        self.buf.extend_from_slice(pre);
    }

    #[inline]
    fn close_uj(&mut self, uj: u64) {
        self.buf.extend_from_slice(b"} ");
        push_micro(&mut self.buf, uj);
        self.end();
    }

    #[inline]
    fn close_f64(&mut self, v: f64) {
        self.buf.extend_from_slice(b"} ");
        push_f64(&mut self.buf, v);
        self.end();
    }

    #[inline]
    fn close_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(b"} ");
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.end();
    }

    #[inline]
    fn end(&mut self) {
        self.buf.push(b'\n');
        self.samples += 1;
    }
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Appends `,key="value"` with the value escaped per the text format.
#[inline]
fn push_label(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.push(b',');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"=\"");
    push_escaped(buf, value.as_bytes());
    buf.push(b'"');
}

/// Appends a label value, escaping backslash, double quote and newline (the only escapes the
/// text format and OpenMetrics define for label values).
#[inline]
fn push_escaped(buf: &mut Vec<u8>, v: &[u8]) {
    if !v.iter().any(|&b| matches!(b, b'\\' | b'"' | b'\n')) {
        buf.extend_from_slice(v);
        return;
    }
    for &b in v {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\n' => buf.extend_from_slice(b"\\n"),
            _ => buf.push(b),
        }
    }
}

/// Appends integer microunits as an exact decimal of units: 12000345 -> `12.000345`,
/// 5000000 -> `5`.
#[inline]
fn push_micro(buf: &mut Vec<u8>, micro: u64) {
    push_decimal::<6>(buf, micro);
}

/// Appends `v / 10^SCALE` as an exact decimal, trailing zeros trimmed.
#[inline]
fn push_decimal<const SCALE: usize>(buf: &mut Vec<u8>, v: u64) {
    let div = 10u64.pow(SCALE as u32);
    buf.extend_from_slice(itoa::Buffer::new().format(v / div).as_bytes());
    let mut frac = v % div;
    if frac == 0 {
        return;
    }
    let mut digits = [b'0'; SCALE];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    let len = SCALE - digits.iter().rev().take_while(|&&d| d == b'0').count();
    buf.push(b'.');
    buf.extend_from_slice(&digits[..len]);
}

/// Appends a float as the text format spells it: `NaN`, `+Inf`, `-Inf`, else shortest
/// round-trip decimal.
#[inline]
fn push_f64(buf: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        buf.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        buf.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// Escaped label sets of a list of workloads, in one buffer.
struct Arena {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Arena {
    fn build<T>(items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) -> Arena {
        let mut buf = Vec::with_capacity(items.len() * 160);
        let mut ends = Vec::with_capacity(items.len());
        for it in items {
            write(&mut buf, it);
            ends.push(buf.len());
        }
        Arena { buf, ends }
    }

    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

struct Renderer {
    out: Out,
}

/// Bytes per sample beyond its labels (name, node_name, state, zone, value), for sizing.
const LINE_OVERHEAD: usize = 110;

impl Renderer {
    fn new(snap: &Snapshot, ctx: &ExportContext) -> Renderer {
        let mut node = Vec::with_capacity(ctx.node_name.len() + 16);
        node.extend_from_slice(b"node_name=\"");
        push_escaped(&mut node, ctx.node_name.as_bytes());
        node.push(b'"');
        // Sizing: samples per workload times the typical line. Over-estimating a little
        // costs address space only; re-growing a 20 MB buffer costs a copy.
        let kinds = snap.kinds.len();
        let lines = snap.processes.len() * (2 * kinds + 1)
            + (snap.containers.len() + snap.pods.len() + snap.vms.len()) * 2 * kinds
            + snap.zones.len() * 16
            + ctx.cpu_info.len();
        let cap = 16 * 1024 + lines * (LINE_OVERHEAD + 2 * node.len() + 100);
        Renderer {
            out: Out {
                buf: Vec::with_capacity(cap),
                cuts: Vec::with_capacity(64),
                node,
                samples: 0,
            },
        }
    }

    fn node(
        &mut self,
        snap: &Snapshot,
        gpu: Option<&GpuSnapshot>,
        ctx: &ExportContext,
        stats: &SelfStats,
    ) {
        if !ctx.level.node {
            return;
        }
        let o = &mut self.out;
        // A zone whose source says its latest value is stale (a passthrough tree its host no
        // longer writes) is left out rather than exported flat.
        let exported: Vec<usize> = (0..snap.zones.len())
            .filter(|&i| {
                let z = &snap.zones[i];
                z.info.kind.is_cpu()
                    && z.has_reading
                    && !matches!(z.last_error, Some(ReadError::Stale { .. }))
            })
            .collect();
        let read: Vec<&NodeZone> = exported.iter().map(|&i| &snap.zones[i]).collect();
        let zone_labels = Arena::build(&read, |b, z| {
            push_label(b, "zone", z.info.kind.label());
            push_label(b, "path", &z.info.path);
        });
        type Value = fn(&NodeZone) -> Val;
        let families: [(&str, Kind, &str, Value); 6] = [
            (
                "kepler_node_cpu_joules_total",
                Kind::Counter,
                "Energy consumed by the CPU zone since the exporter started, in joules.",
                |z| Val::Micro(z.total.0),
            ),
            (
                "kepler_node_cpu_watts",
                Kind::Gauge,
                "Power drawn by the CPU zone over the latest interval, in watts.",
                |z| Val::F(z.power),
            ),
            (
                "kepler_node_cpu_active_joules_total",
                Kind::Counter,
                "Active part (CPU busy share) of the zone energy, in joules.",
                |z| Val::Micro(z.active.0),
            ),
            (
                "kepler_node_cpu_active_watts",
                Kind::Gauge,
                "Active part (CPU busy share) of the zone power, in watts.",
                |z| Val::F(z.active_power),
            ),
            (
                "kepler_node_cpu_idle_joules_total",
                Kind::Counter,
                "Idle part of the zone energy, in joules.",
                |z| Val::Micro(z.idle.0),
            ),
            (
                "kepler_node_cpu_idle_watts",
                Kind::Gauge,
                "Idle part of the zone power, in watts.",
                |z| Val::F(z.idle_power),
            ),
        ];
        if !read.is_empty() {
            for (name, kind, help, value) in families {
                o.header(name, kind, help);
                for (i, z) in read.iter().enumerate() {
                    o.open(name);
                    o.labels(zone_labels.get(i));
                    value(z).close(o);
                }
            }
            // Issue 20: the carbon of the same zones, with the same labels.
            if let Some(c) = stats.carbon.as_ref().map(|c| &c.carbon) {
                let name = "kepler_node_co2e_grams_total";
                o.header(
                    name,
                    Kind::Counter,
                    "Carbon of the CPU zone's energy since the exporter started, each tick's energy at that tick's grid intensity, in grams of CO2e.",
                );
                for (i, &zi) in exported.iter().enumerate() {
                    o.open(name);
                    o.labels(zone_labels.get(i));
                    o.close_f64(c.zones.get(zi).copied().unwrap_or(0.0));
                }
            }
        }

        o.header(
            "kepler_node_cpu_usage_ratio",
            Kind::Gauge,
            "Fraction of CPU time the node spent busy over the latest interval.",
        );
        o.open("kepler_node_cpu_usage_ratio");
        o.close_f64(snap.usage_ratio);

        if !ctx.cpu_info.is_empty() {
            let name = "kepler_node_cpu_info";
            o.header(
                name,
                Kind::Gauge,
                "Logical CPUs of the node; the value is always 1.",
            );
            for c in &ctx.cpu_info {
                o.open(name);
                o.label_raw("processor", itoa::Buffer::new().format(c.processor));
                o.label("vendor_id", &c.vendor_id);
                o.label("model_name", &c.model_name);
                o.label_raw("physical_id", itoa::Buffer::new().format(c.physical_id));
                o.label_raw("core_id", itoa::Buffer::new().format(c.core_id));
                o.close_u64(1);
            }
        }

        // Every zone: CPU, platform (ACPI, hwmon, Redfish) and GPU (issue 7).
        let gpus = gpu.map_or(&[][..], |g| &g.devices[..]);
        if !snap.zones.is_empty() || !gpus.is_empty() {
            let name = "kepler_node_power_source_info";
            o.header(
                name,
                Kind::Gauge,
                "Where each zone's numbers come from; estimated=true (e.g. source=model) means an estimate, not a measurement. Always 1.",
            );
            for z in &snap.zones {
                o.open(name);
                o.label_raw("zone", z.info.kind.label());
                o.label("path", &z.info.path);
                o.label_raw("source", z.info.source.label());
                o.label_raw("estimated", if z.info.estimated { "true" } else { "false" });
                // A passthrough zone records its host's idle policy (issue 22); a trained
                // model's zone its model id (issue 20).
                if matches!(z.info.source, SourceKind::Passthrough | SourceKind::Model) {
                    let reported = stats.sources.iter().find_map(|s| s.report.zone(&z.info.id));
                    for (k, v) in reported.iter().flat_map(|r| r.labels.iter()) {
                        o.label(k, v);
                    }
                }
                o.close_u64(1);
            }
            for g in gpus {
                o.open(name);
                o.label_raw("zone", ZoneKind::Gpu.label());
                o.label("path", &g.device.uuid);
                o.label_raw("source", g.device.source.label());
                o.label_raw("estimated", "false");
                o.close_u64(1);
            }
        }

        if !snap.kinds.is_empty() {
            let name = "kepler_node_cpu_unattributed_joules_total";
            o.header(
                name,
                Kind::Counter,
                "Active CPU energy that no exported workload explains (exited kernel threads, unaccounted time), in joules.",
            );
            for &k in &snap.kinds {
                o.open(name);
                o.label_raw("zone", k.label());
                o.close_uj(snap.unattributed.total.get(k).0);
            }
            let name = "kepler_node_cpu_unattributed_watts";
            o.header(
                name,
                Kind::Gauge,
                "Active CPU power that no exported workload explains, over the latest interval, in watts.",
            );
            for &k in &snap.kinds {
                o.open(name);
                o.label_raw("zone", k.label());
                o.close_f64(snap.watts(snap.unattributed.last.get(k)));
            }
        }
    }

    fn workloads(
        &mut self,
        snap: &Snapshot,
        fold: Option<&FoldedProcesses>,
        level: MetricsLevel,
        carbon: Option<&CarbonSnapshot>,
    ) {
        let o = &mut self.out;
        let kinds = &snap.kinds;
        let fold = fold.filter(|f| f.fits(snap.processes.len()));
        if level.process
            && (!snap.processes.is_empty() || fold.is_some_and(|f| !f.others().is_empty()))
        {
            processes(o, snap, fold);
        }
        if level.container && !snap.containers.is_empty() {
            let pre = Arena::build(&snap.containers, |b, c| {
                push_label(b, "container_id", &c.info.id);
                push_label(b, "container_name", &c.info.name);
                push_label(b, "runtime", c.info.runtime.label());
                push_label(b, "pod_id", c.info.pod.as_ref().map_or("", |p| &p.id));
            });
            let states: Vec<State> = snap.containers.iter().map(|c| c.state).collect();
            grouped(
                o,
                "kepler_container_cpu_joules_total",
                Kind::Counter,
                "Energy attributed to the container (sum of its processes), per zone, in joules.",
                &pre,
                &states,
                kinds,
                |i, k| Val::Micro(snap.containers[i].energy.total.get(k).0),
            );
            grouped(
                o,
                "kepler_container_cpu_watts",
                Kind::Gauge,
                "Power attributed to the container over the latest interval, per zone, in watts.",
                &pre,
                &states,
                kinds,
                |i, k| Val::F(snap.watts(snap.containers[i].energy.last.get(k))),
            );
            if let Some(c) = carbon {
                grouped(
                    o,
                    "kepler_container_co2e_grams_total",
                    Kind::Counter,
                    "Carbon of the container's energy, each tick's energy at that tick's grid intensity, per zone, in grams of CO2e.",
                    &pre,
                    &states,
                    kinds,
                    |i, k| Val::F(c.containers.get(i).map_or(0.0, |g| g.get(k))),
                );
            }
            let name = "kepler_container_cpu_seconds_total";
            o.header(
                name,
                Kind::Counter,
                "CPU time used by the container's processes while kepler saw them, in seconds.",
            );
            for (i, c) in snap.containers.iter().enumerate() {
                o.open(name);
                o.labels(pre.get(i));
                o.label_raw("state", c.state.label());
                push_seconds_close(o, c.cpu_time.0);
            }
        }
        if level.vm && !snap.vms.is_empty() {
            let pre = Arena::build(&snap.vms, |b, v| {
                push_label(b, "vm_id", &v.info.id);
                push_label(b, "vm_name", &v.info.name);
                push_label(b, "hypervisor", &v.info.hypervisor);
            });
            let states: Vec<State> = snap.vms.iter().map(|v| v.state).collect();
            grouped(
                o,
                "kepler_vm_cpu_joules_total",
                Kind::Counter,
                "Energy attributed to the virtual machine (its hypervisor process), per zone, in joules.",
                &pre,
                &states,
                kinds,
                |i, k| Val::Micro(snap.vms[i].energy.total.get(k).0),
            );
            grouped(
                o,
                "kepler_vm_cpu_watts",
                Kind::Gauge,
                "Power attributed to the virtual machine over the latest interval, per zone, in watts.",
                &pre,
                &states,
                kinds,
                |i, k| Val::F(snap.watts(snap.vms[i].energy.last.get(k))),
            );
        }
        if level.pod && !snap.pods.is_empty() {
            let pre = Arena::build(&snap.pods, |b, p| {
                push_label(b, "pod_id", &p.info.id);
                push_label(b, "pod_name", &p.info.name);
                push_label(b, "pod_namespace", &p.info.namespace);
            });
            let states: Vec<State> = snap.pods.iter().map(|p| p.state).collect();
            grouped(
                o,
                "kepler_pod_cpu_joules_total",
                Kind::Counter,
                "Energy attributed to the pod (sum of its containers), per zone, in joules.",
                &pre,
                &states,
                kinds,
                |i, k| Val::Micro(snap.pods[i].energy.total.get(k).0),
            );
            grouped(
                o,
                "kepler_pod_cpu_watts",
                Kind::Gauge,
                "Power attributed to the pod over the latest interval, per zone, in watts.",
                &pre,
                &states,
                kinds,
                |i, k| Val::F(snap.watts(snap.pods[i].energy.last.get(k))),
            );
            if let Some(c) = carbon {
                grouped(
                    o,
                    "kepler_pod_co2e_grams_total",
                    Kind::Counter,
                    "Carbon of the pod's energy, each tick's energy at that tick's grid intensity, per zone, in grams of CO2e.",
                    &pre,
                    &states,
                    kinds,
                    |i, k| Val::F(c.pods.get(i).map_or(0.0, |g| g.get(k))),
                );
            }
        }
    }

    fn build_info(&mut self, b: &BuildInfo) {
        let o = &mut self.out;
        let name = "kepler_build_info";
        o.header(
            name,
            Kind::Gauge,
            "Build information of the exporter; the value is always 1.",
        );
        o.open(name);
        o.label("arch", &b.arch);
        o.label("branch", &b.branch);
        o.label("revision", &b.revision);
        o.label("version", &b.version);
        o.label("rustversion", &b.rust_version);
        o.label("fips", if b.fips { "true" } else { "false" });
        o.label("bpf", if b.bpf { "true" } else { "false" });
        o.close_u64(1);
    }

    fn self_metrics(&mut self, snap: &Snapshot, ctx: &ExportContext, stats: &SelfStats) {
        let o = &mut self.out;
        let name = "kepler_exporter_tick_duration_seconds";
        o.header(
            name,
            Kind::Gauge,
            "Time the latest monitor tick took to read the sources and step the engine.",
        );
        o.open(name);
        o.close_f64(stats.tick_duration_secs);

        let name = "kepler_exporter_ticks_total";
        o.header(name, Kind::Counter, "Monitor ticks since start.");
        o.open(name);
        o.close_u64(snap.stats.ticks);

        let name = "kepler_exporter_missing_activity_ticks_total";
        o.header(
            name,
            Kind::Counter,
            "Ticks without an activity frame; their active energy went to unattributed.",
        );
        o.open(name);
        o.close_u64(snap.stats.missing_activity);

        let name = "kepler_exporter_processes";
        o.header(
            name,
            Kind::Gauge,
            "Processes tracked: running, and terminated ones kept for their final energy.",
        );
        o.open(name);
        o.label_raw("state", "running");
        o.close_u64(snap.stats.live_processes);
        o.open(name);
        o.label_raw("state", "terminated");
        o.close_u64(snap.stats.terminated_processes);

        let zones = &snap.zones;
        let zl = Arena::build(zones, |b, z| {
            push_label(b, "zone", z.info.kind.label());
            push_label(b, "path", &z.info.path);
        });
        if !zones.is_empty() {
            let name = "kepler_exporter_read_errors_total";
            o.header(name, Kind::Counter, "Failed reads of the zone since start.");
            for (i, z) in zones.iter().enumerate() {
                o.open(name);
                o.label_raw("source", z.info.source.label());
                o.labels(zl.get(i));
                o.close_u64(z.read_errors);
            }
            let name = "kepler_exporter_zone_up";
            o.header(
                name,
                Kind::Gauge,
                "1 when the zone's latest read succeeded, 0 when it failed or never succeeded.",
            );
            for (i, z) in zones.iter().enumerate() {
                o.open(name);
                o.label_raw("source", z.info.source.label());
                o.labels(zl.get(i));
                o.close_u64(u64::from(z.has_reading && z.last_error.is_none()));
            }
            let name = "kepler_exporter_dropped_deltas_total";
            o.header(
                name,
                Kind::Counter,
                "Energy deltas of the zone dropped as implausible (counter resets, bad reads).",
            );
            for (i, z) in zones.iter().enumerate() {
                o.open(name);
                o.labels(zl.get(i));
                o.close_u64(z.dropped_deltas);
            }
            // Not `counter_wraps`: `promtool check metrics` rejects a metric name that
            // contains a type name ("should not include type 'counter'").
            let name = "kepler_exporter_energy_wraps_total";
            o.header(
                name,
                Kind::Counter,
                "Wraps of the zone's energy register that were unwrapped (resets are counted as dropped deltas).",
            );
            for (i, z) in zones.iter().enumerate() {
                o.open(name);
                o.labels(zl.get(i));
                o.close_u64(z.wraps);
            }
        }
        if zones.iter().any(|z| z.last_read.is_some()) {
            let name = "kepler_exporter_last_read_timestamp_seconds";
            o.header(
                name,
                Kind::Gauge,
                "Unix time of the zone's latest good reading, in seconds.",
            );
            for (i, z) in zones.iter().enumerate() {
                if let Some(at) = z.last_read {
                    o.open(name);
                    o.label_raw("source", z.info.source.label());
                    o.labels(zl.get(i));
                    o.close_f64(ctx.unix_secs(at));
                }
            }
        }

        let name = "kepler_exporter_activity_errors_total";
        o.header(
            name,
            Kind::Counter,
            "Failed reads of the activity source since start.",
        );
        o.open(name);
        o.label("source", stats.activity_source);
        o.close_u64(stats.activity_errors);

        if !stats.sources.is_empty() {
            let name = "kepler_exporter_source_read_duration_seconds";
            o.header(
                name,
                Kind::Gauge,
                "Time the power source's latest read took, in seconds.",
            );
            for s in &stats.sources {
                o.open(name);
                o.label("source", &s.source);
                o.close_f64(s.read_duration_secs);
            }
        }

        let name = "kepler_exporter_evicted_workloads_total";
        o.header(
            name,
            Kind::Counter,
            "Terminated workloads dropped before their TTL by the max-terminated cap.",
        );
        o.open(name);
        o.close_u64(snap.stats.evicted);

        if !stats.model_fit.is_empty() {
            model_fit(o, &stats.model_fit);
        }
        if let Some(b) = &stats.bpf {
            components::bpf(o, b);
        }
        if let Some(k) = &stats.kube {
            components::kube(o, k);
        }
    }
}

/// One process series' source: a process of the snapshot, or a fold's `other`.
enum ProcRow<'a> {
    Process(&'a ProcessEntry),
    Other(&'a OtherSeries),
}

/// The three `kepler_process_*` families: every process, or with `fold` the shown ones (with
/// their fold counters) and the `other` series.
fn processes(o: &mut Out, snap: &Snapshot, fold: Option<&FoldedProcesses>) {
    let kinds = &snap.kinds;
    // (row, energy counter, energy of the latest tick, state)
    let rows: Vec<(ProcRow<'_>, &PerKind, &PerKind, State)> = match fold {
        None => snap
            .processes
            .iter()
            .map(|p| {
                (
                    ProcRow::Process(p),
                    &p.energy.total,
                    &p.energy.last,
                    p.state,
                )
            })
            .collect(),
        Some(f) => f
            .shown()
            .iter()
            .filter_map(|(i, total)| {
                let p = snap.processes.get(*i)?;
                Some((ProcRow::Process(p), total, &p.energy.last, p.state))
            })
            .chain(
                f.others()
                    .iter()
                    .map(|x| (ProcRow::Other(x), &x.total, &x.last, x.state)),
            )
            .collect(),
    };
    // Labels shared by all three process families; `state` and `zone` follow.
    let pre = Arena::build(&rows, |b, (row, ..)| match row {
        ProcRow::Process(p) => {
            b.push(b',');
            b.extend_from_slice(b"pid=\"");
            b.extend_from_slice(itoa::Buffer::new().format(p.pid).as_bytes());
            b.push(b'"');
            push_label(b, "comm", &p.info.comm);
            push_label(b, "exe", &p.info.exe);
            push_label(b, "type", p.info.type_label());
            push_label(
                b,
                "container_id",
                p.info.container.as_ref().map_or("", |c| &c.id),
            );
            push_label(b, "vm_id", p.info.vm.as_ref().map_or("", |v| &v.id));
        }
        ProcRow::Other(x) => {
            b.extend_from_slice(b",pid=\"\",comm=\"\",exe=\"\",type=\"other\"");
            push_label(b, "container_id", x.group.container_id());
            push_label(b, "vm_id", x.group.vm_id());
        }
    });
    let states: Vec<State> = rows.iter().map(|r| r.3).collect();
    grouped(
        o,
        "kepler_process_cpu_joules_total",
        Kind::Counter,
        "Energy attributed to the process by its share of CPU time, per zone, in joules.",
        &pre,
        &states,
        kinds,
        |i, k| Val::Micro(rows[i].1.get(k).0),
    );
    grouped(
        o,
        "kepler_process_cpu_watts",
        Kind::Gauge,
        "Power attributed to the process over the latest interval, per zone, in watts.",
        &pre,
        &states,
        kinds,
        |i, k| Val::F(snap.watts(rows[i].2.get(k))),
    );
    let name = "kepler_process_cpu_seconds_total";
    o.header(
        name,
        Kind::Counter,
        "CPU time used by the process, in seconds.",
    );
    for (i, (row, ..)) in rows.iter().enumerate() {
        if let ProcRow::Process(p) = row {
            o.open(name);
            o.labels(pre.get(i));
            push_seconds_close(o, p.cpu_time.0);
        }
    }
}

/// A sample value.
enum Val {
    /// Integer micro-units, written as an exact decimal.
    Micro(u64),
    /// A float.
    F(f64),
}

impl Val {
    #[inline]
    fn close(self, o: &mut Out) {
        match self {
            Val::Micro(v) => o.close_uj(v),
            Val::F(v) => o.close_f64(v),
        }
    }
}

/// Writes `ns` nanoseconds as exact seconds and closes the sample.
#[inline]
fn push_seconds_close(o: &mut Out, ns: u64) {
    o.buf.extend_from_slice(b"} ");
    push_decimal::<9>(&mut o.buf, ns);
    o.end();
}

/// Writes a per-workload, per-zone family: `name{node_name, <pre>, state, zone} value`.
#[allow(clippy::too_many_arguments)]
fn grouped(
    o: &mut Out,
    name: &str,
    kind: Kind,
    help: &str,
    pre: &Arena,
    states: &[State],
    kinds: &[ZoneKind],
    value: impl Fn(usize, ZoneKind) -> Val,
) {
    if kinds.is_empty() || states.is_empty() {
        return;
    }
    o.header(name, kind, help);
    for (i, state) in states.iter().enumerate() {
        let labels = pre.get(i);
        for &k in kinds {
            o.open(name);
            o.labels(labels);
            o.label_raw("state", state.label());
            o.label_raw("zone", k.label());
            value(i, k).close(o);
        }
    }
}

/// The online power model's fit per metered zone (issue 20).
fn model_fit(o: &mut Out, fits: &[ModelFit]) {
    let name = "kepler_model_samples_total";
    o.header(
        name,
        Kind::Counter,
        "Samples (ticks with a measured reading) the online power model of the zone has fitted.",
    );
    for f in fits {
        o.open(name);
        o.label_raw("zone", f.zone.label());
        o.label("path", &f.path);
        o.close_u64(f.samples);
    }
    type Value = fn(&ModelFit) -> Option<f64>;
    let gauges: [(&str, &str, Value); 2] = [
        (
            "kepler_model_mean_absolute_error_watts",
            "Mean absolute error of the online power model, each tick predicted before it was fitted (error on unseen data), in watts.",
            |f| f.mean_absolute_error_watts,
        ),
        (
            "kepler_model_r_squared",
            "Coefficient of determination (R squared) of the online power model over the samples it fitted.",
            |f| f.r_squared,
        ),
    ];
    for (name, help, value) in gauges {
        if fits.iter().all(|f| value(f).is_none()) {
            continue;
        }
        o.header(name, Kind::Gauge, help);
        for f in fits {
            if let Some(v) = value(f) {
                o.open(name);
                o.label_raw("zone", f.zone.label());
                o.label("path", &f.path);
                o.close_f64(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(v: u64) -> String {
        let mut b = Vec::new();
        push_micro(&mut b, v);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn micro_is_exact_decimal() {
        assert_eq!(micro(0), "0");
        assert_eq!(micro(5_000_000), "5");
        assert_eq!(micro(12_000_345), "12.000345");
        assert_eq!(micro(1_500_000), "1.5");
        assert_eq!(micro(1), "0.000001");
        assert_eq!(micro(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn floats_follow_the_text_format() {
        let f = |v: f64| {
            let mut b = Vec::new();
            push_f64(&mut b, v);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(1.25), "1.25");
        assert_eq!(f(0.0), "0.0");
    }

    #[test]
    fn escaping_covers_backslash_quote_newline() {
        let mut b = Vec::new();
        push_escaped(&mut b, b"a\\b\"c\nd");
        assert_eq!(b, b"a\\\\b\\\"c\\nd");
    }

    #[test]
    fn seconds_are_exact_to_the_nanosecond() {
        let s = |ns: u64| {
            let mut o = Out {
                buf: Vec::new(),
                cuts: Vec::new(),
                node: Vec::new(),
                samples: 0,
            };
            push_seconds_close(&mut o, ns);
            String::from_utf8(o.buf).unwrap()
        };
        assert_eq!(s(1_500_000_000), "} 1.5\n");
        assert_eq!(s(2_000_000_001), "} 2.000000001\n");
        assert_eq!(s(2_100_000_010), "} 2.10000001\n");
        assert_eq!(s(1_000), "} 0.000001\n");
        assert_eq!(s(0), "} 0\n");
    }

    #[test]
    fn openmetrics_cuts_total_from_counter_headers_only() {
        let mut o = Out {
            buf: Vec::new(),
            cuts: Vec::new(),
            node: b"node_name=\"n\"".to_vec(),
            samples: 0,
        };
        o.header("a_total", Kind::Counter, "A.");
        o.open("a_total");
        o.close_u64(1);
        o.header("b", Kind::Gauge, "B.");
        o.open("b");
        o.close_f64(0.5);
        let om = to_openmetrics(&o.buf, &o.cuts);
        assert_eq!(
            std::str::from_utf8(&om).unwrap(),
            "# HELP a A.\n# TYPE a counter\na_total{node_name=\"n\"} 1\n\
             # HELP b B.\n# TYPE b gauge\nb{node_name=\"n\"} 0.5\n# EOF\n"
        );
    }
}
