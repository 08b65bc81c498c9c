//! The engine's settings: who gets idle energy, how idle is estimated, how long terminated
//! workloads stay.

use crate::snapshot::IdlePolicy;
use crate::units::{MicroJoules, MicroWatts, Nanos};

/// How a zone's idle energy is estimated (`attribution.idlePower`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdlePower {
    /// `idle = energy x (1 - CPU usage ratio)`: Kepler's split. Under load it makes idle
    /// shrink toward zero although the idle floor of the hardware does not change.
    Usage,
    /// `idle = baseline x dt` (at most the energy), where the baseline is the lowest power
    /// seen in ticks of low CPU usage. Until a low-usage tick has been seen, `Usage` is used.
    Learned {
        /// Ticks whose usage ratio is at most this, in parts per thousand, teach the baseline.
        max_usage_permille: u32,
        /// Time constant with which the baseline rises toward newer low-usage power, so that
        /// one old dip does not hold it down forever. A lower power replaces it at once.
        decay: Nanos,
    },
}

impl IdlePower {
    /// Default `max_usage_permille` of `Learned`: ticks at up to 10% usage.
    pub const DEFAULT_MAX_USAGE_PERMILLE: u32 = 100;
    /// Default `decay` of `Learned`: one hour.
    pub const DEFAULT_DECAY: Nanos = Nanos::from_secs(3600);
    /// `Learned` with its defaults.
    pub const LEARNED_DEFAULT: IdlePower = IdlePower::Learned {
        max_usage_permille: IdlePower::DEFAULT_MAX_USAGE_PERMILLE,
        decay: IdlePower::DEFAULT_DECAY,
    };
}

/// Engine settings. Build with [`AttributorConfig::builder`] or use the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttributorConfig {
    /// How long a terminated workload stays in snapshots. Default 10 s (two 5 s intervals).
    pub terminated_ttl: Nanos,
    /// Most terminated workloads kept per level (process, container, pod, VM); the largest by
    /// energy win. `None` keeps all of them for the TTL.
    pub max_terminated: Option<usize>,
    /// Terminated workloads whose energy (in their widest zone) is below this are dropped
    /// when they terminate (Go Kepler's `monitor.minTerminatedEnergyThreshold`). Default 0:
    /// every terminated workload is kept for the TTL.
    pub min_terminated_energy: MicroJoules,
    /// Bound on plausible zone power when a zone states none; bigger deltas are resets.
    pub default_max_power: MicroWatts,
    /// Who gets idle energy. Default: nobody (it stays at node level, as in Kepler).
    pub idle: IdlePolicy,
    /// How idle energy is estimated. Default: from the usage ratio, as in Kepler.
    pub idle_power: IdlePower,
}

impl Default for AttributorConfig {
    fn default() -> Self {
        AttributorConfig {
            terminated_ttl: Nanos::from_secs(10),
            max_terminated: Some(500),
            min_terminated_energy: MicroJoules(0),
            default_max_power: MicroWatts::from_watts(10_000.0),
            idle: IdlePolicy::None,
            idle_power: IdlePower::Usage,
        }
    }
}

impl AttributorConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> AttributorConfigBuilder {
        AttributorConfigBuilder(AttributorConfig::default())
    }
}

/// Builds an [`AttributorConfig`].
#[derive(Debug, Clone)]
pub struct AttributorConfigBuilder(AttributorConfig);

impl AttributorConfigBuilder {
    /// Sets how long terminated workloads stay exported.
    pub fn terminated_ttl(mut self, ttl: Nanos) -> Self {
        self.0.terminated_ttl = ttl;
        self
    }
    /// Caps the number of retained terminated workloads per level.
    pub fn max_terminated(mut self, max: Option<usize>) -> Self {
        self.0.max_terminated = max;
        self
    }
    /// Drops terminated workloads whose energy is below `min` (widest zone).
    pub fn min_terminated_energy(mut self, min: MicroJoules) -> Self {
        self.0.min_terminated_energy = min;
        self
    }
    /// Sets the power bound for zones that state none.
    pub fn default_max_power(mut self, p: MicroWatts) -> Self {
        self.0.default_max_power = p;
        self
    }
    /// Sets who gets idle energy.
    pub fn idle(mut self, policy: IdlePolicy) -> Self {
        self.0.idle = policy;
        self
    }
    /// Sets how idle energy is estimated.
    pub fn idle_power(mut self, idle_power: IdlePower) -> Self {
        self.0.idle_power = idle_power;
        self
    }
    /// The config.
    pub fn build(self) -> AttributorConfig {
        self.0
    }
}
