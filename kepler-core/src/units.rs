//! Units: integer microjoules and microwatts, monotonic nanosecond timestamps.

use std::ops::{Add, AddAssign, Sub};

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

    /// Saturating subtraction.
    pub fn saturating_sub(self, rhs: MicroJoules) -> MicroJoules {
        MicroJoules(self.0.saturating_sub(rhs.0))
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

impl Sub for MicroJoules {
    type Output = MicroJoules;
    fn sub(self, rhs: MicroJoules) -> MicroJoules {
        self.saturating_sub(rhs)
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

    /// This instant moved forward by `d`.
    pub fn plus(self, d: Nanos) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
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
    fn watts_of_energy() {
        assert_eq!(watts(MicroJoules(5_000_000), Nanos::from_secs(5)), 1.0);
        assert_eq!(watts(MicroJoules(5), Nanos(0)), 0.0);
    }
}
