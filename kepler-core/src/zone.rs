//! Zone descriptions: what a meter measures and where the number comes from.

use std::fmt;

use crate::units::{MicroJoules, MicroWatts};

/// The part of the machine a zone measures. Zones of one kind on several sockets are summed
/// for attribution and exported per socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ZoneKind {
    /// A whole CPU package (socket).
    Package,
    /// The cores of a package.
    Core,
    /// The uncore (caches, integrated graphics) of a package.
    Uncore,
    /// Memory attached to a package.
    Dram,
    /// The platform as RAPL `psys` sees it.
    Psys,
    /// The whole platform as a BMC, an ACPI meter or an hwmon platform chip sees it.
    Platform,
    /// A GPU.
    Gpu,
}

impl ZoneKind {
    /// Every kind, in export order.
    pub const ALL: [ZoneKind; 7] = [
        ZoneKind::Package,
        ZoneKind::Core,
        ZoneKind::Uncore,
        ZoneKind::Dram,
        ZoneKind::Psys,
        ZoneKind::Platform,
        ZoneKind::Gpu,
    ];

    /// Position in [`ZoneKind::ALL`], for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `zone` label value, as Kepler writes it.
    pub fn label(self) -> &'static str {
        match self {
            ZoneKind::Package => "package",
            ZoneKind::Core => "core",
            ZoneKind::Uncore => "uncore",
            ZoneKind::Dram => "dram",
            ZoneKind::Psys => "psys",
            ZoneKind::Platform => "platform",
            ZoneKind::Gpu => "gpu",
        }
    }

    /// Parses a label such as `package` or a RAPL name such as `package-0`; `None` when unknown.
    pub fn from_name(name: &str) -> Option<ZoneKind> {
        let base = name.trim().split('-').next().unwrap_or("");
        ZoneKind::ALL
            .into_iter()
            .find(|k| k.label().eq_ignore_ascii_case(base))
    }

    /// Whether CPU activity explains this zone's energy, so it is split among processes.
    pub fn is_cpu(self) -> bool {
        matches!(
            self,
            ZoneKind::Package | ZoneKind::Core | ZoneKind::Uncore | ZoneKind::Dram | ZoneKind::Psys
        )
    }
}

impl fmt::Display for ZoneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Where a zone's numbers come from; the `source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SourceKind {
    /// Linux powercap RAPL counters.
    Rapl,
    /// A hwmon chip.
    Hwmon,
    /// The ACPI power meter.
    Acpi,
    /// NVIDIA Management Library.
    Nvml,
    /// A BMC over Redfish.
    Redfish,
    /// A BMC over IPMI (DCMI power reading or an SDR Watts sensor).
    Ipmi,
    /// An estimate from CPU utilisation: not a measurement.
    Model,
    /// A VM's share of its host's measurement, handed over by the host's kepler (issue 22).
    Passthrough,
    /// A fake source in tests.
    Fake,
}

impl SourceKind {
    /// The `source` label value.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Rapl => "rapl",
            SourceKind::Hwmon => "hwmon",
            SourceKind::Acpi => "acpi",
            SourceKind::Nvml => "nvml",
            SourceKind::Redfish => "redfish",
            SourceKind::Ipmi => "ipmi",
            SourceKind::Model => "model",
            SourceKind::Passthrough => "passthrough",
            SourceKind::Fake => "fake",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a zone reports: a cumulative energy counter or an instantaneous power gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metering {
    /// A cumulative counter in µJ that wraps to 0 after `max_range` (when known).
    EnergyCounter {
        /// The counter's range (`max_energy_range_uj`); `None` when unknown.
        max_range: Option<MicroJoules>,
    },
    /// An instantaneous power reading that the engine integrates over time.
    PowerGauge,
}

/// Describes one zone of one meter. Immutable for the life of the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ZoneInfo {
    /// Unique and stable among all zones, e.g. `rapl:/sys/class/powercap/intel-rapl:0`.
    pub id: String,
    /// What the zone measures.
    pub kind: ZoneKind,
    /// Socket or device index (0 when there is one).
    pub index: u32,
    /// The `path` label: where the reading comes from (a sysfs path, a BMC URL...).
    pub path: String,
    /// Where the numbers come from.
    pub source: SourceKind,
    /// Counter or gauge.
    pub metering: Metering,
    /// True when the numbers are an estimate, not a measurement.
    pub estimated: bool,
    /// Most power the zone can plausibly draw; larger deltas are treated as resets.
    pub max_power: Option<MicroWatts>,
}

impl ZoneInfo {
    /// A builder for a zone `id` of `kind` whose numbers come from `source`. It starts as an
    /// energy counter of unknown range on socket 0, measured (not estimated), with `path`
    /// equal to `id` and no stated maximum power; the builder's methods change that.
    ///
    /// ```
    /// use kepler_core::{MicroJoules, SourceKind, ZoneInfo, ZoneKind};
    ///
    /// let zone = ZoneInfo::builder("rapl:package-1", ZoneKind::Package, SourceKind::Rapl)
    ///     .index(1)
    ///     .energy_counter(Some(MicroJoules(262_143_328_850)))
    ///     .build();
    /// assert_eq!((zone.index, zone.path.as_str()), (1, "rapl:package-1"));
    /// ```
    pub fn builder(id: impl Into<String>, kind: ZoneKind, source: SourceKind) -> ZoneInfoBuilder {
        let id = id.into();
        ZoneInfoBuilder(ZoneInfo {
            path: id.clone(),
            id,
            kind,
            index: 0,
            source,
            metering: Metering::EnergyCounter { max_range: None },
            estimated: false,
            max_power: None,
        })
    }
}

/// Builds a [`ZoneInfo`]; see [`ZoneInfo::builder`]. A zone needs no struct literal, so new
/// fields with defaults do not break callers.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct ZoneInfoBuilder(ZoneInfo);

impl ZoneInfoBuilder {
    /// Socket or device index (default 0); per-socket zones follow their socket's usage.
    pub fn index(mut self, index: u32) -> Self {
        self.0.index = index;
        self
    }
    /// The `path` label (default: the id).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.0.path = path.into();
        self
    }
    /// A cumulative energy counter that wraps to 0 after `max_range`, when known (default,
    /// with an unknown range: a counter that goes back is then a reset).
    pub fn energy_counter(mut self, max_range: Option<MicroJoules>) -> Self {
        self.0.metering = Metering::EnergyCounter { max_range };
        self
    }
    /// How the zone reports (default: an energy counter of unknown range).
    pub fn metering(mut self, metering: Metering) -> Self {
        self.0.metering = metering;
        self
    }
    /// An instantaneous power gauge that the engine integrates over time.
    pub fn power_gauge(mut self) -> Self {
        self.0.metering = Metering::PowerGauge;
        self
    }
    /// Marks the numbers as an estimate, not a measurement (default: measured).
    pub fn estimated(mut self, estimated: bool) -> Self {
        self.0.estimated = estimated;
        self
    }
    /// The most power the zone can plausibly draw; larger deltas are dropped as resets
    /// (default, or `None`: the engine's `default_max_power`).
    pub fn max_power(mut self, max_power: impl Into<Option<MicroWatts>>) -> Self {
        self.0.max_power = max_power.into();
        self
    }
    /// The zone.
    pub fn build(self) -> ZoneInfo {
        self.0
    }
}

/// One reading of a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Cumulative energy counter value.
    Energy(MicroJoules),
    /// Instantaneous power.
    Power(MicroWatts),
}
