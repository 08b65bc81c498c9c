//! Every configuration key, declared once: YAML path, flag, type, default, check, `--help`
//! line and README meaning. The flag parser and `--help` ([`super::Flags`]), the YAML reader
//! and its unknown-key warnings, and the README tables (`config_doc` test) are all made from
//! [`KEYS`]; adding a key is one entry here plus the line of [`super::Config::from_raw`] that
//! uses its value.
//!
//! The order is the order of `--help` and of the README tables.

use std::time::Duration;

use kepler_sources::CURVE_POINTS;

use super::key::{not_empty, one_of, within, Key, Table, Ty, Value};

/// Declares each key as a constant and lists them all in [`KEYS`].
macro_rules! keys {
    ($($name:ident = $key:expr;)*) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` key.")]
            pub const $name: Key = $key;
        )*
        /// Every key, in `--help` and README order.
        pub static KEYS: &[&Key] = &[$(&$name),*];
    };
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const LOG_LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
const RAPL_ZONE_NAMES: [&str; 5] = ["package", "core", "uncore", "dram", "psys"];

keys! {
    CONFIG_FILE = Key::flag_only("config.file", Ty::Str, "PATH")
        .help("YAML config file (Kepler's keys; unknown keys are warned about).")
        .doc("the YAML config file read under the flags");
    LOG_LEVEL = Key::yaml("log.level", Ty::Str)
        .flag("log.level", "LEVEL")
        .default("info")
        .check(|v| one_of(v, &LOG_LEVELS))
        .help("Log level: debug, info, warn, error.")
        .doc("debug, info, warn, error");
    LOG_FORMAT = Key::yaml("log.format", Ty::Str)
        .flag("log.format", "FORMAT")
        .default("text")
        .check(|v| one_of(v, &["text", "json", "logfmt"]))
        .help("Log format: text or json.")
        .doc("text, logfmt (the same as text) or json");
    HOST_SYSFS = Key::yaml("host.sysfs", Ty::Str)
        .flag("host.sysfs", "PATH")
        .default("/sys")
        .check(not_empty)
        .help("Root of the sysfs tree to read (e.g. /host/sys in a container).")
        .doc("sysfs root (`/host/sys` in a container)");
    HOST_PROCFS = Key::yaml("host.procfs", Ty::Str)
        .flag("host.procfs", "PATH")
        .default("/proc")
        .check(not_empty)
        .help("Root of the procfs tree to read (e.g. /host/proc in a container).")
        .doc("procfs root (`/host/proc` in a container)");
    MONITOR_INTERVAL = Key::yaml("monitor.interval", Ty::Duration)
        .flag("monitor.interval", "DURATION")
        .default("5s")
        .check(|v| match v {
            Value::Duration(d) if d.is_zero() => Ok(v),
            v => within(v, ms(100), secs(3600)),
        })
        .help("How often to read the meters and processes (Go duration, e.g. 5s); 0: no \
               refresh loop, read when scraped (at most once per monitor.staleness).")
        .doc("how often meters and processes are read (100ms to 1h); `0`: no loop, sources \
              are read when `/metrics` is scraped, at most once per `monitor.staleness`");
    MONITOR_STALENESS = Key::yaml("monitor.staleness", Ty::Duration)
        .flag("monitor.staleness", "DURATION")
        .default("500ms")
        .check(|v| within(v, Duration::ZERO, secs(3600)))
        .help("With --monitor.interval=0: a scrape reuses data younger than this (HA \
               scrapers see the same numbers). No effect with an interval.")
        .doc("with `monitor.interval: 0`, a scrape reuses data younger than this; with an \
              interval it has no effect (a warning says so): sources are read once per \
              interval and a scrape never reads hardware");
    MONITOR_TERMINATED_TTL = Key::yaml("monitor.terminatedTTL", Ty::Duration)
        .flag("monitor.terminated-ttl", "DURATION")
        .default_text("2 x interval (1m with `monitor.interval: 0`)")
        .help("How long terminated workloads stay exported (default: two intervals).")
        .doc("how long terminated workloads stay exported");
    MONITOR_MAX_TERMINATED = Key::yaml("monitor.maxTerminated", Ty::Int)
        .flag("monitor.max-terminated", "N")
        .default("500")
        .help("Most terminated workloads kept per level (largest energy first); negative: \
               no cap.")
        .doc("terminated workloads kept per level, largest energy first; negative: no cap");
    MIN_TERMINATED_ENERGY = Key::yaml("monitor.minTerminatedEnergyThreshold", Ty::Int)
        .default("0")
        .check(|v| match v {
            Value::Int(j) if j < 0 => Err(format!("{j} joules can't be negative")),
            v => Ok(v),
        })
        .doc("terminated workloads whose energy (widest zone, joules) is below this are \
              dropped when they end; Go Kepler's default is 10, kepler-rs keeps them all");
    RAPL_ZONES = Key::yaml("rapl.zones", Ty::Strs)
        .flag("rapl.zones", "ZONE")
        .comma()
        .default_text("all")
        .check(rapl_zones)
        .help("RAPL zones to read (repeat or comma-separate: package, core, uncore, dram, \
               psys).")
        .doc("RAPL zones to read: package, core, uncore, dram, psys");
    CPU_PREFERRED_METERS = Key::yaml("cpu.preferredMeters", Ty::Strs)
        .flag("cpu.preferred-meters", "METER")
        .comma()
        .default("[rapl, hwmon, trained, model]")
        .check(preferred_meters)
        .help("CPU meters in order of preference (rapl, hwmon, trained, model, passthrough, \
               fake); the first that works is used.")
        .doc("CPU meters in order of preference (rapl, hwmon, trained, model, passthrough, \
              fake); the first that works is used");
    MODEL_IDLE_WATTS = Key::yaml("model.idleWatts", Ty::Float)
        .flag("model.idle-watts", "WATTS")
        .default("10")
        .check(|v| match v {
            Value::Float(w) if !(w.is_finite() && w >= 0.0) => Err("must be a number >= 0".into()),
            v => Ok(v),
        })
        .help("Model estimator: watts per socket at idle.")
        .doc("model estimate: watts per socket at idle");
    MODEL_MAX_WATTS = Key::yaml("model.maxWatts", Ty::Float)
        .flag("model.max-watts", "WATTS")
        .default("45")
        .help("Model estimator: watts per socket at full load.")
        .doc("model estimate: watts per socket at full load (between `model.idleWatts` and \
              10000)");
    MODEL_CURVE = Key::yaml("model.curve", Ty::Floats)
        .default_text("Fan et al. shape")
        .check(curve)
        .doc("model estimate: 11 watts per socket at 0%, 10%, ..., 100% load (see \
              [Model estimate](#model-estimate))");
    MODEL_DRAM_IDLE_WATTS = Key::yaml("model.dram.idleWatts", Ty::Float)
        .default_text("`0` when `model.dram.maxWatts` is set")
        .check(|v| match v {
            Value::Float(w) if !(w.is_finite() && w >= 0.0) => Err("must be a number >= 0".into()),
            v => Ok(v),
        })
        .doc("model estimate: DRAM watts per socket at idle");
    MODEL_DRAM_MAX_WATTS = Key::yaml("model.dram.maxWatts", Ty::Float)
        .default_text("off")
        .doc("model estimate: DRAM watts per socket at full use; setting it adds a DRAM zone \
              per socket, linear in utilisation");
    MODEL_FILE = Key::yaml("model.file", Ty::Str)
        .flag("model.file", "PATH")
        .default_text("none")
        .check(not_empty)
        .help("Trained power model (a model.export file of a metered node with the same CPU) \
               for the trained CPU meter.")
        .doc("power model file for the `trained` CPU meter, written by `model.export` on a \
              metered node with the same CPU (see [Trained model](#trained-model))");
    MODEL_ACCEPT_MISMATCH = Key::yaml("model.acceptMismatch", Ty::Bool)
        .flag("model.accept-mismatch", "BOOL")
        .default("false")
        .help("Use a model.file trained on another CPU model, socket or core count.")
        .doc("use a `model.file` trained on another CPU model name, socket or core count \
              (refused otherwise)");
    MODEL_EXPORT = Key::yaml("model.export", Ty::Str)
        .flag("model.export", "PATH")
        .default_text("none")
        .check(not_empty)
        .help("Write the power model fitted to the measured CPU meter to this file (JSON), \
               every model.export-interval and at shutdown.")
        .doc("where a CPU meter measures, write the power model fitted to it (JSON, \
              replaced atomically) every `model.exportInterval` and at shutdown");
    MODEL_EXPORT_INTERVAL = Key::yaml("model.exportInterval", Ty::Duration)
        .flag("model.export-interval", "DURATION")
        .default("10m")
        .check(|v| within(v, secs(1), secs(86_400)))
        .help("How often model.export is rewritten.")
        .doc("how often `model.export` is rewritten (1s to 24h)");
    HWMON_ENABLED = Key::yaml("experimental.hwmon.enabled", Ty::Bool)
        .default("true")
        .doc("read hwmon chips (CPU meter `hwmon`, platform chips)");
    HWMON_FORCE_ENABLED = Key::yaml("experimental.hwmon.forceEnabled", Ty::Bool)
        .flag("experimental.hwmon.force-enabled", "BOOL")
        .default("false")
        .help("Deprecated (as in Go Kepler): the same as --cpu.preferred-meters=hwmon.")
        .doc("deprecated, as in Go Kepler: `true` means `cpu.preferredMeters: [hwmon]` (a \
              warning says so)");
    HWMON_ZONES = Key::yaml("experimental.hwmon.zones", Ty::Strs)
        .flag("experimental.hwmon.zones", "ZONE")
        .help("hwmon labels or chip names to keep (repeatable).")
        .default_text("all")
        .doc("hwmon labels or chip names to keep");
    HWMON_CPU = Key::yaml("experimental.hwmon.cpu", Ty::Strs)
        .default_text("see [hwmon](#hwmon)")
        .check(hwmon_rules)
        .doc("substrings of `chip/label` that mean a CPU package");
    HWMON_DRAM = Key::yaml("experimental.hwmon.dram", Ty::Strs)
        .default_text("see [hwmon](#hwmon)")
        .check(hwmon_rules)
        .doc("substrings of `chip/label` that mean memory");
    HWMON_PLATFORM = Key::yaml("experimental.hwmon.platform", Ty::Strs)
        .default_text("see [hwmon](#hwmon)")
        .check(hwmon_rules)
        .doc("substrings of `chip/label` that mean the whole machine");
    HWMON_CHIP_RULES = Key::inert(
        "experimental.hwmon.chipRules",
        "kepler-rs reads hwmon power and energy channels, not voltage x current pairs; \
         classify channels with `experimental.hwmon.cpu`, `.dram` and `.platform`",
    );
    GPU_ENABLED = Key::yaml("experimental.gpu.enabled", Ty::Bool)
        .flag("experimental.gpu.enabled", "BOOL")
        .help("NVIDIA GPU metering through NVML (on by default; off by itself without the \
               library).")
        .default("true")
        .doc("GPUs: NVIDIA through NVML, else any DRM driver (amdgpu, i915, xe...) through fdinfo and hwmon (off by itself where neither finds a GPU)");
    GPU_IDLE_POWER = Key::yaml("experimental.gpu.idlePower", Ty::Float)
        .flag("experimental.gpu.idle-power", "WATTS")
        .help("Watts per GPU counted as idle; 0 learns it.")
        .default_text("learned")
        .check(|v| match v {
            Value::Float(w) if !(w.is_finite() && (0.0..3_000.0).contains(&w)) => Err(format!(
                "{w} is not a number of watts between 0 and 3000 (0 learns it)"
            )),
            v => Ok(v),
        })
        .doc("watts per GPU counted as idle; absent or 0: the lowest power seen with no \
              process");
    GPU_DCGM_ENDPOINT = Key::yaml("experimental.gpu.dcgmEndpoint", Ty::Str)
        .flag("experimental.gpu.dcgm-endpoint", "URL")
        .default_text("none")
        .check(|v| match v {
            Value::Str(u)
                if !(u.trim().is_empty()
                    || u.starts_with("http://")
                    || u.starts_with("https://")) =>
            {
                Err(format!("{u:?} must be an http:// or https:// URL"))
            }
            v => Ok(v),
        })
        .help("dcgm-exporter metrics URL for MIG attribution (accepted; see the README).")
        .doc("dcgm-exporter's metrics URL; accepted and checked, but MIG instances are still \
              weighed equally (a warning says so, see [NVIDIA GPUs](#nvidia-gpus-nvml))");
    METRICS_LEVEL = Key::yaml("exporter.prometheus.metricsLevel", Ty::Strs)
        .flag("metrics", "LEVEL")
        .comma()
        .default("all")
        .help("Metric levels to export (repeat or comma-separate: node, process, container, \
               vm, pod, all).")
        .doc("levels: node, process, container, vm, pod, all");
    PROCESS_TOP_N = Key::yaml("exporter.prometheus.process.topN", Ty::Int)
        .flag("exporter.prometheus.process.top-n", "N")
        .default("0")
        .check(|v| match v {
            Value::Int(n) if !(0..=1_000_000).contains(&n) => {
                Err(format!("{n} is not between 0 and 1000000"))
            }
            v => Ok(v),
        })
        .help("Process series only for the top N processes by energy per tick (up to 2N with \
               hysteresis); the rest fold into one type=\"other\" series per container, VM \
               and for host processes. 0: every process.")
        .doc("process series only for the N processes with the most energy per tick (a shown \
              process stays while within the top 2N); the others' energy goes to one \
              `type=\"other\"` series per container, VM and for host processes, so sums stay \
              exact (see [Folding process series](#folding-process-series)); `0`: every process");
    PROCESS_MIN_JOULES = Key::yaml("exporter.prometheus.process.minJoules", Ty::Float)
        .flag("exporter.prometheus.process.min-joules", "JOULES")
        .default("0")
        .check(|v| match v {
            Value::Float(j) if !(j.is_finite() && (0.0..=1e9).contains(&j)) => {
                Err(format!("{j} is not a number of joules between 0 and 1e9"))
            }
            v => Ok(v),
        })
        .help("Process series only for processes using at least this many joules (widest \
               zone) in a monitor interval; the rest fold into type=\"other\". 0: no \
               threshold.")
        .doc("process series only for processes that use at least this energy (joules, widest \
              zone) in one monitor interval (a shown process stays while above half of it); \
              the rest fold like `exporter.prometheus.process.topN`'s; `0`: no threshold");
    PROMETHEUS_ENABLED = Key::yaml("exporter.prometheus.enabled", Ty::Bool)
        .flag("exporter.prometheus", "BOOL")
        .default("true")
        .help("Serve /metrics (false: only the stdout or JSON exporter writes).")
        .doc("serve HTTP (`/metrics`, `/healthz`, `/readyz`); `false` starts no server: use \
              `exporter.stdout` or `exporter.json` to see the numbers");
    DEBUG_COLLECTORS = Key::yaml("exporter.prometheus.debugCollectors", Ty::Strs)
        .flag("exporter.prometheus.debug-collectors", "COLLECTOR")
        .comma()
        .default_text("none")
        .check(|v| one_of(v, &["go", "process"]))
        .help("Extra collectors: process (process_* metrics of kepler itself); go is \
               accepted with a warning.")
        .doc("`process`: kepler's own `process_cpu_seconds_total`, \
              `process_resident_memory_bytes`, `process_open_fds`, ... as Prometheus clients \
              export them; `go` is accepted with a warning (no Go runtime here)");
    COMPAT = Key::yaml("exporter.prometheus.compat", Ty::Strs)
        .flag("exporter.prometheus.compat", "PROFILE")
        .comma()
        .default_text("none")
        .check(|v| one_of(v, &["guide"]))
        .help("Extra series for dashboards written against other names: guide (the setup \
               guide's kepler_container_joules_total, kepler_node_power_watts, ...).")
        .doc("`guide`: adds the series the Kepler setup guide's queries use (see \
              [Queries](#queries))");
    STDOUT_ENABLED = Key::yaml("exporter.stdout.enabled", Ty::Bool)
        .flag("exporter.stdout", "BOOL")
        .default("false")
        .help("Print a table of node zones and top workloads to stdout every tick.")
        .doc("print a human-readable table per tick on stdout (see [Stdout and \
              JSON](#stdout-and-json-output))");
    JSON_PATH = Key::yaml("exporter.json.path", Ty::Str)
        .flag("exporter.json", "PATH")
        .bare("-")
        .default_text("off")
        .help("Write one JSON document per tick (JSON lines) to PATH, or stdout when no PATH \
               or -.")
        .doc("write one JSON document per tick to this file (`-`: stdout; see [Stdout and \
              JSON](#stdout-and-json-output))");
    DEBUG_PPROF = Key::yaml("debug.pprof.enabled", Ty::Bool)
        .flag("debug.pprof", "BOOL")
        .default("false")
        .help("Accepted for Go Kepler compatibility; true warns: there is no pprof endpoint.")
        .doc("`true` is warned about: there is no pprof endpoint; profile with `perf record \
              -g -p $(pidof kepler)`");
    WEB_CONFIG_FILE = Key::yaml("web.configFile", Ty::Str)
        .flag("web.config-file", "PATH")
        .help("Web config file (Prometheus exporter-toolkit format: TLS and basic auth).")
        .doc("exporter-toolkit web config: TLS and bcrypt basic auth");
    WEB_LISTEN_ADDRESSES = Key::yaml("web.listenAddresses", Ty::Strs)
        .flag("web.listen-address", "ADDR")
        .default(":28282")
        .check(listen_addresses)
        .help("Address to listen on (repeatable), e.g. :28282 or 127.0.0.1:28282.")
        .doc("where to serve (repeatable)");
    WEB_AUTH_KUBERNETES = Key::yaml("web.auth.kubernetes.enabled", Ty::Bool)
        .default("false")
        .doc("`/metrics` only for bearer tokens of `web.auth.kubernetes.allowedSANames` \
              (TokenReview + SubjectAccessReview, cached 30 s); probes stay open");
    WEB_AUTH_KUBERNETES_ALLOWED = Key::yaml("web.auth.kubernetes.allowedSANames", Ty::Strs)
        .check(service_accounts)
        .doc("service accounts (`namespace:name`) that may scrape");
    KUBE_ENABLED = Key::yaml("kube.enabled", Ty::Bool)
        .flag("kube.enable", "BOOL")
        .default("false")
        .help("Enable Kubernetes pod metadata.")
        .doc("pod and container names from Kubernetes (see [Kubernetes](#kubernetes))");
    KUBE_CONFIG = Key::yaml("kube.config", Ty::Str)
        .flag("kube.config", "PATH")
        .default_text("in-cluster")
        .help("Kubeconfig path (default: in-cluster config).")
        .doc("kubeconfig path; default: the pod's service account");
    KUBE_NODE_NAME = Key::yaml("kube.nodeName", Ty::Str)
        .flag("kube.node-name", "NAME")
        .default_text("`$NODE_NAME`, else hostname")
        .help("This node's name (default: $NODE_NAME, then the hostname).")
        .doc("this node: only its pods are read");
    POD_INFORMER_MODE = Key::yaml("kube.podInformer.mode", Ty::Str)
        .default("kubelet")
        .check(|v| one_of(v, &["kubelet", "apiserver"]))
        .doc("`kubelet` (poll the node's kubelet `/pods`) or `apiserver` (watch this node's \
              pods)");
    POD_INFORMER_POLL_INTERVAL = Key::yaml("kube.podInformer.pollInterval", Ty::Duration)
        .only_when(&POD_INFORMER_MODE, "kubelet")
        .default("15s")
        .check(|v| within(v, secs(1), secs(3600)))
        .doc("kubelet mode: time between two `/pods` requests (1s to 1h)");
    POD_INFORMER_KUBELET_URL = Key::yaml("kube.podInformer.kubeletURL", Ty::Str)
        .only_when(&POD_INFORMER_MODE, "kubelet")
        .default_text("`https://$NODE_IP:10250`")
        .check(|v| match v {
            Value::Str(u) if !u.trim().is_empty() && !u.starts_with("https://") => {
                Err(format!("{u:?} must start with https://"))
            }
            v => Ok(v),
        })
        .doc("kubelet mode: the kubelet's address (`$NODE_IP`, else the node name)");
    POD_INFORMER_KUBELET_INSECURE_TLS = Key::yaml("kube.podInformer.kubeletInsecureTLS", Ty::Bool)
        .only_when(&POD_INFORMER_MODE, "kubelet")
        .default("false")
        .doc("kubelet mode: accept a kubelet certificate the cluster CA did not sign \
              (kubeadm, kind)");
    ACTIVITY_SOURCE = Key::yaml("activity.source", Ty::Str)
        .flag("activity.source", "SOURCE")
        .default("auto")
        .check(|v| one_of(v, &["auto", "bpf", "procfs"]))
        .help("Activity source: auto (eBPF when built in and permitted, else procfs), bpf, \
               procfs.")
        .doc("CPU-time source: auto, bpf or procfs (see [eBPF](#ebpf))");
    ATTRIBUTION_IDLE = Key::yaml("attribution.idle", Ty::Str)
        .flag("attribution.idle", "POLICY")
        .default("none")
        .check(|v| match one_of(v, &["none", "cpu-share", "equal", "requests"])? {
            Value::Str(s) if s == "requests" => Err("\"requests\" needs pods' CPU requests \
                from Kubernetes, which this build does not read; use none, cpu-share or equal"
                .into()),
            v => Ok(v),
        })
        .help("Who gets node idle energy: none (Kepler's: it stays at node level), cpu-share, \
               equal.")
        .doc("who gets idle energy: none, cpu-share, equal (see [Attribution](#attribution))");
    ATTRIBUTION_IDLE_POWER = Key::yaml("attribution.idlePower", Ty::Str)
        .flag("attribution.idle-power", "METHOD")
        .default("usage")
        .check(|v| one_of(v, &["usage", "learned"]))
        .help("How idle power is estimated: usage (Kepler's split) or learned (a baseline \
               learned at low CPU usage).")
        .doc("how idle power is estimated: usage or learned");
    LEARNED_IDLE_MAX_USAGE = Key::yaml("attribution.learnedIdle.maxUsage", Ty::Float)
        .only_when(&ATTRIBUTION_IDLE_POWER, "learned")
        .default("0.1")
        .check(|v| match v {
            Value::Float(u) if !(0.0..=1.0).contains(&u) => {
                Err(format!("{u} is not a usage ratio between 0 and 1"))
            }
            v => Ok(v),
        })
        .doc("with `learned`: CPU usage ratio up to which a tick teaches the idle baseline");
    LEARNED_IDLE_DECAY = Key::yaml("attribution.learnedIdle.decay", Ty::Duration)
        .only_when(&ATTRIBUTION_IDLE_POWER, "learned")
        .default("1h")
        .doc("with `learned`: time constant with which the baseline rises toward newer \
              low-usage power");
    REDFISH_ENABLED = Key::yaml("experimental.platform.redfish.enabled", Ty::Bool)
        .flag("experimental.platform.redfish.enabled", "BOOL")
        .default("false")
        .table(Table::Redfish)
        .help("Enable platform power from this node's BMC over Redfish (experimental, EP-001).")
        .doc("turn it on");
    REDFISH_NODE_NAME = Key::yaml("experimental.platform.redfish.nodeName", Ty::Str)
        .flag("experimental.platform.redfish.node-name", "NAME")
        .default_text("the node name")
        .table(Table::Redfish)
        .help("Node name to look up in the Redfish BMC file (default: the node name).")
        .doc("key into `nodes:` of the BMC file; falls back to `kube.nodeName`, \
              `$NODE_NAME`, the hostname");
    REDFISH_CONFIG_FILE = Key::yaml("experimental.platform.redfish.configFile", Ty::Str)
        .flag("experimental.platform.redfish.config", "PATH")
        .alias("experimental.platform.redfish.config-file")
        .default_text("none, required")
        .table(Table::Redfish)
        .help("The Redfish BMC file: nodes -> BMC id, bmcs -> endpoint and credentials \
               (mode 0600).")
        .doc("the BMC file");
    REDFISH_HTTP_TIMEOUT = Key::yaml("experimental.platform.redfish.httpTimeout", Ty::Duration)
        .default("5s")
        .check(|v| within(v, ms(100), secs(300)))
        .table(Table::Redfish)
        .doc("limit for one request, connect to last byte (100ms to 5m); applied also when \
              only flags are used");
    REDFISH_INTERVAL = Key::yaml("experimental.platform.redfish.interval", Ty::Duration)
        .default("30s")
        .check(|v| within(v, secs(1), secs(3600)))
        .table(Table::Redfish)
        .doc("time between polls of a BMC, jittered by ±10% (1s to 1h)");
    REDFISH_STALENESS = Key::yaml("experimental.platform.redfish.staleness", Ty::Duration)
        .default_text("3 x interval")
        .table(Table::Redfish)
        .doc("readings older than this are not exported (interval to 24h)");
    IPMI_ENABLED = Key::yaml("experimental.platform.ipmi.enabled", Ty::Bool)
        .flag("experimental.platform.ipmi.enabled", "BOOL")
        .default("false")
        .table(Table::Ipmi)
        .help("Enable platform power from this node's BMC over IPMI/DCMI (experimental).")
        .doc("turn it on");
    IPMI_CONFIG_FILE = Key::yaml("experimental.platform.ipmi.configFile", Ty::Str)
        .flag("experimental.platform.ipmi.config", "PATH")
        .alias("experimental.platform.ipmi.config-file")
        .default_text("none, required")
        .table(Table::Ipmi)
        .help("The IPMI BMC file: nodes -> BMC id, bmcs -> endpoint host:port, credentials \
               and cipherSuite (mode 0600).")
        .doc("the BMC file; its node key is the node name (`kube.nodeName`, `$NODE_NAME`, the \
              hostname)");
    IPMI_INTERVAL = Key::yaml("experimental.platform.ipmi.interval", Ty::Duration)
        .flag("experimental.platform.ipmi.interval", "DURATION")
        .default("10s")
        .check(|v| within(v, secs(1), secs(3600)))
        .table(Table::Ipmi)
        .help("Time between IPMI polls of a BMC.")
        .doc("time between polls of a BMC, jittered by ±10% (1s to 1h)");
    IPMI_STALENESS = Key::yaml("experimental.platform.ipmi.staleness", Ty::Duration)
        .flag("experimental.platform.ipmi.staleness", "DURATION")
        .default_text("3 x interval")
        .table(Table::Ipmi)
        .help("IPMI readings older than this are not exported.")
        .doc("readings older than this are not exported (interval to 24h)");
    FAKE_CPU_METER_ENABLED = Key::yaml("dev.fake-cpu-meter.enabled", Ty::Bool)
        .default("false")
        .doc("deprecated, as in Go Kepler: `true` means `cpu.preferredMeters: [fake]`, the \
              synthetic meter of [Fake meter](#fake-meter) (a warning says so)");
    FAKE_CPU_METER_ZONES = Key::yaml("dev.fake-cpu-meter.zones", Ty::Strs)
        .default_text("package, core, dram")
        .check(rapl_zones)
        .doc("zones of the `fake` meter");
    VM_PASSTHROUGH_ENABLED = Key::yaml("vm.passthrough.enabled", Ty::Bool)
        .flag("vm.passthrough.enabled", "BOOL")
        .default("false")
        .help("Write each VM's attributed energy into a powercap-shaped tree under \
               vm.passthrough.dir, for the guest's kepler (meter passthrough).")
        .doc("write each VM's attributed energy for its guest (see \
              [VM passthrough](#vm-passthrough))");
    VM_PASSTHROUGH_DIR = Key::yaml("vm.passthrough.dir", Ty::Str)
        .flag("vm.passthrough.dir", "PATH")
        .default("/run/kepler/vm-passthrough")
        .check(not_empty)
        .help("Directory holding one powercap-shaped tree per VM (<dir>/<vm uuid or name>/).")
        .doc("one tree per VM, `<dir>/<vm uuid or name>/`, to share read-only into the guest");
    VM_PASSTHROUGH_MAX_ENERGY_RANGE = Key::yaml("vm.passthrough.maxEnergyRangeUJ", Ty::Int)
        .default("262143328850")
        .check(|v| match v {
            Value::Int(j) if j < 1_000_000 => Err(format!("{j} µJ is below 1 J")),
            v => Ok(v),
        })
        .doc("`max_energy_range_uj` of the VM trees: counters wrap to 0 there, as RAPL's do");
    PASSTHROUGH_PATH = Key::yaml("passthrough.path", Ty::Str)
        .flag("passthrough.path", "PATH")
        .default("/var/lib/kepler/passthrough")
        .check(not_empty)
        .help("In a VM: where the host's tree of this VM is mounted (meter passthrough).")
        .doc("in a VM: mount point of the host's tree for this VM, read by the `passthrough` \
              CPU meter");
    PASSTHROUGH_STALE_AFTER = Key::yaml("passthrough.staleAfter", Ty::Duration)
        .flag("passthrough.stale-after", "DURATION")
        .default("20s")
        .check(|v| within(v, ms(100), secs(3600)))
        .help("In a VM: a passthrough zone the host has not rewritten for this long is stale \
               and not exported.")
        .doc("in a VM: a `passthrough` zone its host has not rewritten for this long is stale \
              and not exported until it moves again");
    CARBON_INTENSITY = Key::yaml("carbon.intensity", Ty::Str)
        .flag("carbon.intensity", "G_PER_KWH|PATH|URL")
        .default_text("none (carbon metrics off)")
        .check(carbon_intensity)
        .table(Table::Carbon)
        .help("Grid carbon intensity in gCO2e/kWh: a number, a file kept current (a number, \
               a JSON object or one Prometheus sample) or an http(s) URL serving one. Turns \
               on the kepler_*_co2e_grams_total counters.")
        .doc("gCO2e/kWh as a number (`400`), or a file path or `http(s)://` URL whose content \
              is a number, a JSON object or one Prometheus sample (see [Carbon](#carbon)); \
              set, it turns on the carbon metrics");
    CARBON_REFRESH_INTERVAL = Key::yaml("carbon.refreshInterval", Ty::Duration)
        .flag("carbon.refresh-interval", "DURATION")
        .default("1m")
        .check(|v| within(v, secs(1), secs(24 * 3600)))
        .table(Table::Carbon)
        .help("Time between reads of the carbon.intensity file or URL.")
        .doc("time between reads of the file or URL, off the tick path (1s to 24h)");
    CARBON_STALE_AFTER = Key::yaml("carbon.staleAfter", Ty::Duration)
        .flag("carbon.stale-after", "DURATION")
        .default("2h")
        .check(|v| within(v, secs(1), secs(30 * 24 * 3600)))
        .table(Table::Carbon)
        .help("A carbon intensity older than this is stale: still used, and \
               kepler_carbon_intensity_stale says so.")
        .doc("an intensity older than this (its timestamp, else the file's modification time, \
              else when it was fetched) is stale: the last value stays in use and \
              `kepler_carbon_intensity_stale` is 1 (1s to 30 days)");
    CARBON_HTTP_TIMEOUT = Key::yaml("carbon.httpTimeout", Ty::Duration)
        .flag("carbon.http-timeout", "DURATION")
        .default("10s")
        .check(|v| within(v, ms(100), secs(300)))
        .table(Table::Carbon)
        .help("Limit for one request of the carbon.intensity URL, connect to last byte.")
        .doc("limit for one request of the URL, connect to last byte (100ms to 5m)");
}

/// `carbon.intensity`: a gCO2e/kWh number, a file or an http(s) URL; empty is off.
fn carbon_intensity(v: Value) -> Result<Value, String> {
    match &v {
        Value::Str(s) if !s.trim().is_empty() => {
            kepler_sources::carbon::IntensitySpec::parse(s).map(|_| v)
        }
        _ => Ok(v),
    }
}

fn rapl_zones(v: Value) -> Result<Value, String> {
    match v {
        Value::Strs(zones) => one_of(
            Value::Strs(zones.into_iter().filter(|z| !z.trim().is_empty()).collect()),
            &RAPL_ZONE_NAMES,
        ),
        v => Ok(v),
    }
}

fn preferred_meters(v: Value) -> Result<Value, String> {
    let names: Vec<&str> = kepler_sources::METERS.iter().map(|m| m.name).collect();
    match one_of(v, &names)? {
        Value::Strs(list) if list.is_empty() => {
            Err(format!("must name at least one of {}", names.join(", ")))
        }
        v => Ok(v),
    }
}

fn hwmon_rules(v: Value) -> Result<Value, String> {
    match v {
        Value::Strs(rules) if rules.iter().any(|r| r.trim().is_empty()) => {
            Err("rules must not be empty strings".into())
        }
        v => Ok(v),
    }
}

fn service_accounts(v: Value) -> Result<Value, String> {
    if let Value::Strs(list) = &v {
        let bad = |sa: &&String| !matches!(sa.split_once(':'), Some((n, s)) if !n.is_empty() && !s.is_empty() && !s.contains(':'));
        if let Some(sa) = list.iter().find(bad) {
            return Err(format!("{sa:?} is not namespace:serviceaccount"));
        }
    }
    Ok(v)
}

fn listen_addresses(v: Value) -> Result<Value, String> {
    match &v {
        Value::Strs(list) if list.is_empty() => Err("must name at least one address".into()),
        Value::Strs(list) => match list.iter().find(|a| !super::valid_listen_address(a)) {
            Some(a) => Err(format!("{a:?} is not HOST:PORT or :PORT")),
            None => Ok(v),
        },
        _ => Ok(v),
    }
}

/// Exactly eleven watts below 10 kW that never fall as load rises.
fn curve(v: Value) -> Result<Value, String> {
    let Value::Floats(points) = &v else {
        return Ok(v);
    };
    if points.len() != CURVE_POINTS {
        return Err(format!(
            "needs {CURVE_POINTS} values (watts at 0%, 10%, ..., 100% load), got {}",
            points.len()
        ));
    }
    for (i, &w) in points.iter().enumerate() {
        if !(w.is_finite() && (0.0..10_000.0).contains(&w)) {
            return Err(format!(
                "value {i} ({}%) = {w} is not between 0 and 10000 W",
                i * 10
            ));
        }
        if i > 0 && w < points[i - 1] {
            return Err(format!(
                "value {i} ({}%) = {w} W is below the one before it; power must not fall as \
                 load rises",
                i * 10
            ));
        }
    }
    Ok(v)
}
