//! Units: integer microjoules and microwatts, monotonic nanosecond timestamps.
//!
//! Arithmetic says what happens at the edges: `checked_*` returns `None` where the result
//! does not fit, `saturating_*` clamps at 0 or `u64::MAX`. The operators saturate (energy
//! counters must never wrap); prefer the named methods, which say so at the call site.

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// Energy in integer microjoules. Integer so that conservation holds exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroJoules(pub u64);

impl MicroJoules {
    /// Zero energy.
    pub const ZERO: MicroJoules = MicroJoules(0);

    /// Joules as a float, for exposition.
    pub fn as_joules(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// `self - rhs`, or 0 when `rhs` is larger.
    pub fn saturating_sub(self, rhs: MicroJoules) -> MicroJoules {
        MicroJoules(self.0.saturating_sub(rhs.0))
    }

    /// `self - rhs`, or `None` when `rhs` is larger.
    pub fn checked_sub(self, rhs: MicroJoules) -> Option<MicroJoules> {
        self.0.checked_sub(rhs.0).map(MicroJoules)
    }

    /// `self + rhs`, or `u64::MAX` µJ when it overflows.
    pub fn saturating_add(self, rhs: MicroJoules) -> MicroJoules {
        MicroJoules(self.0.saturating_add(rhs.0))
    }

    /// `self + rhs`, or `None` when it overflows.
    pub fn checked_add(self, rhs: MicroJoules) -> Option<MicroJoules> {
        self.0.checked_add(rhs.0).map(MicroJoules)
    }
}

impl Add for MicroJoules {
    type Output = MicroJoules;
    fn add(self, rhs: MicroJoules) -> MicroJoules {
        MicroJoules(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for MicroJoules {
    fn add_assign(&mut self, rhs: MicroJoules) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

/// Power in integer microwatts, as hwmon and gauges report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroWatts(pub u64);

impl MicroWatts {
    /// Watts as a float.
    pub fn as_watts(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Builds from watts, rounding to the nearest microwatt; negative and NaN become 0.
    pub fn from_watts(w: f64) -> MicroWatts {
        if w.is_finite() && w > 0.0 {
            MicroWatts((w * 1e6).round() as u64)
        } else {
            MicroWatts(0)
        }
    }

    /// `self - rhs`, or 0 when `rhs` is larger.
    pub fn saturating_sub(self, rhs: MicroWatts) -> MicroWatts {
        MicroWatts(self.0.saturating_sub(rhs.0))
    }

    /// `self - rhs`, or `None` when `rhs` is larger.
    pub fn checked_sub(self, rhs: MicroWatts) -> Option<MicroWatts> {
        self.0.checked_sub(rhs.0).map(MicroWatts)
    }

    /// `self + rhs`, or `u64::MAX` µW when it overflows.
    pub fn saturating_add(self, rhs: MicroWatts) -> MicroWatts {
        MicroWatts(self.0.saturating_add(rhs.0))
    }

    /// `self + rhs`, or `None` when it overflows.
    pub fn checked_add(self, rhs: MicroWatts) -> Option<MicroWatts> {
        self.0.checked_add(rhs.0).map(MicroWatts)
    }
}

/// A point on a monotonic clock, in nanoseconds from an origin chosen by the caller.
///
/// The core never reads a clock: the caller passes these in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Nanoseconds elapsed since `earlier`, or 0 when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }

    /// This instant moved forward by `d`, saturating at the end of time.
    pub fn plus(self, d: Nanos) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// Nanoseconds elapsed since `earlier`, or `None` when `earlier` is later (a clock that
    /// went back).
    pub fn checked_since(self, earlier: Timestamp) -> Option<Nanos> {
        self.0.checked_sub(earlier.0).map(Nanos)
    }

    /// This instant moved forward by `d`, or `None` past the end of time.
    pub fn checked_add(self, d: Nanos) -> Option<Timestamp> {
        self.0.checked_add(d.0).map(Timestamp)
    }
}

/// A duration in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s * 1_000_000_000)
    }

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }

    /// Seconds as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self - rhs`, or 0 when `rhs` is longer.
    pub fn saturating_sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }

    /// `self - rhs`, or `None` when `rhs` is longer.
    pub fn checked_sub(self, rhs: Nanos) -> Option<Nanos> {
        self.0.checked_sub(rhs.0).map(Nanos)
    }

    /// `self + rhs`, or `u64::MAX` ns (584 years) when it overflows.
    pub fn saturating_add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }

    /// `self + rhs`, or `None` when it overflows.
    pub fn checked_add(self, rhs: Nanos) -> Option<Nanos> {
        self.0.checked_add(rhs.0).map(Nanos)
    }
}

/// Saturates at `u64::MAX` ns (584 years): no interval the engine sees comes near it.
impl From<Duration> for Nanos {
    fn from(d: Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Nanos> for Duration {
    fn from(n: Nanos) -> Duration {
        Duration::from_nanos(n.0)
    }
}

/// Energy over a duration as watts; 0 when the duration is 0.
pub fn watts(energy: MicroJoules, dt: Nanos) -> f64 {
    if dt.0 == 0 {
        0.0
    } else {
        // µJ / ns * 1e3 = J/s
        energy.0 as f64 * 1e3 / dt.0 as f64
    }
}

/// Energy of a constant power held for `dt`, in µJ, plus the sub-microjoule remainder in
/// µW·ns units (so a caller can carry it and lose nothing across ticks).
pub fn integrate(power: MicroWatts, dt: Nanos, carry: u64) -> (MicroJoules, u64) {
    // µW * ns = 1e-15 J = 1e-9 µJ
    let total = power.0 as u128 * dt.0 as u128 + carry as u128;
    let uj = total / 1_000_000_000;
    let rest = (total % 1_000_000_000) as u64;
    (MicroJoules(uj.min(u64::MAX as u128) as u64), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrate_carries_fractions() {
        // 1 µW for 1 ms is 1e-3 µJ: a thousand of them make exactly 1 µJ.
        let mut carry = 0;
        let mut sum = 0;
        for _ in 0..1000 {
            let (e, c) = integrate(MicroWatts(1), Nanos::from_millis(1), carry);
            sum += e.0;
            carry = c;
        }
        assert_eq!(sum, 1);
        assert_eq!(carry, 0);
    }

    #[test]
    fn named_ops_say_what_happens_at_the_edges_issue_14() {
        let (a, b) = (MicroJoules(3), MicroJoules(5));
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(a.saturating_sub(b), MicroJoules::ZERO);
        assert_eq!(b.checked_sub(a), Some(MicroJoules(2)));
        assert_eq!(MicroJoules(u64::MAX).checked_add(a), None);
        assert_eq!(
            MicroJoules(u64::MAX).saturating_add(a),
            MicroJoules(u64::MAX)
        );
        assert_eq!(MicroWatts(1).checked_sub(MicroWatts(2)), None);
        assert_eq!(
            MicroWatts(u64::MAX).saturating_add(MicroWatts(1)).0,
            u64::MAX
        );
        assert_eq!(Nanos(1).saturating_sub(Nanos(2)), Nanos(0));
        assert_eq!(Nanos(u64::MAX).checked_add(Nanos(1)), None);
        assert_eq!(Timestamp(1).checked_since(Timestamp(2)), None);
        assert_eq!(Timestamp(5).checked_since(Timestamp(2)), Some(Nanos(3)));
        assert_eq!(Timestamp(u64::MAX).checked_add(Nanos(1)), None);
    }

    #[test]
    fn nanos_from_duration_issue_14() {
        assert_eq!(
            Nanos::from(Duration::from_millis(1500)),
            Nanos(1_500_000_000)
        );
        assert_eq!(Nanos::from(Duration::MAX), Nanos(u64::MAX));
        assert_eq!(Duration::from(Nanos(42)), Duration::from_nanos(42));
    }

    #[test]
    fn watts_of_energy() {
        assert_eq!(watts(MicroJoules(5_000_000), Nanos::from_secs(5)), 1.0);
        assert_eq!(watts(MicroJoules(5), Nanos(0)), 0.0);
    }
}
