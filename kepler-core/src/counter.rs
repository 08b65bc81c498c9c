//! Wrap-safe accounting of one zone: raw readings in, plausible energy deltas out.

use crate::units::{integrate, MicroJoules, MicroWatts, Nanos, Timestamp};
use crate::zone::{Metering, Reading, ZoneInfo};

/// The outcome of feeding one reading to a [`ZoneCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delta {
    /// The first reading, or one at the same instant as the last: nothing to count yet.
    Baseline,
    /// Energy used since the previous reading, over `dt`.
    Energy {
        /// Energy since the previous accepted reading.
        energy: MicroJoules,
        /// Time between the two readings.
        dt: Nanos,
        /// True when the counter wrapped in between.
        wrapped: bool,
    },
    /// The delta was larger than the zone could plausibly draw (a reset or a bad read); it is
    /// dropped and the reading becomes the new baseline.
    Implausible,
}

/// Turns successive readings of one zone into energy deltas.
#[derive(Debug, Clone)]
pub(crate) struct ZoneCounter {
    metering: Metering,
    max_power: MicroWatts,
    last: Option<(Timestamp, Reading)>,
    /// Sub-microjoule remainder of integrated power, in µW·ns.
    carry: u64,
}

impl ZoneCounter {
    /// A counter for `zone`; `default_max_power` bounds deltas when the zone states no maximum.
    pub fn new(zone: &ZoneInfo, default_max_power: MicroWatts) -> ZoneCounter {
        ZoneCounter {
            metering: zone.metering,
            max_power: zone.max_power.unwrap_or(default_max_power),
            last: None,
            carry: 0,
        }
    }

    /// Feeds a reading taken at `at`.
    pub fn update(&mut self, at: Timestamp, reading: Reading) -> Delta {
        let Some((prev_at, prev)) = self.last else {
            self.last = Some((at, reading));
            return Delta::Baseline;
        };
        if at <= prev_at {
            // Same sample again (a background poller with nothing new) or a clock step back.
            if at < prev_at {
                self.last = Some((at, reading));
            }
            return Delta::Baseline;
        }
        let dt = at.since(prev_at);
        self.last = Some((at, reading));
        let (energy, wrapped) = match (reading, prev) {
            (Reading::Energy(cur), Reading::Energy(prev)) => {
                if cur >= prev {
                    (cur.saturating_sub(prev), false)
                } else {
                    match self.metering {
                        Metering::EnergyCounter {
                            max_range: Some(max),
                        } if prev <= max => (MicroJoules(max.0 - prev.0 + cur.0), true),
                        // A counter that went back without a known range is a reset.
                        _ => return Delta::Implausible,
                    }
                }
            }
            (Reading::Power(p), _) => {
                let (e, carry) = integrate(p, dt, self.carry);
                self.carry = carry;
                (e, false)
            }
            // A source switched between counter and gauge: start again.
            (Reading::Energy(_), Reading::Power(_)) => return Delta::Baseline,
        };
        let (limit, _) = integrate(self.max_power, dt, 0);
        if energy > limit {
            return Delta::Implausible;
        }
        Delta::Energy {
            energy,
            dt,
            wrapped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{SourceKind, ZoneKind};

    fn zone(max_range: Option<u64>) -> ZoneInfo {
        ZoneInfo {
            id: "z".into(),
            kind: ZoneKind::Package,
            index: 0,
            path: "p".into(),
            source: SourceKind::Fake,
            metering: Metering::EnergyCounter {
                max_range: max_range.map(MicroJoules),
            },
            estimated: false,
            max_power: Some(MicroWatts::from_watts(1000.0)),
        }
    }

    #[test]
    fn wrap_uses_max_range() {
        let mut c = ZoneCounter::new(&zone(Some(1_000_000_000)), MicroWatts(0));
        assert_eq!(
            c.update(Timestamp(0), Reading::Energy(MicroJoules(999_000_000))),
            Delta::Baseline
        );
        let d = c.update(
            Timestamp(1_000_000_000),
            Reading::Energy(MicroJoules(4_000_000)),
        );
        assert_eq!(
            d,
            Delta::Energy {
                energy: MicroJoules(5_000_000),
                dt: Nanos::from_secs(1),
                wrapped: true
            }
        );
    }

    #[test]
    fn reset_without_range_is_dropped() {
        let mut c = ZoneCounter::new(&zone(None), MicroWatts(0));
        c.update(Timestamp(0), Reading::Energy(MicroJoules(500)));
        assert_eq!(
            c.update(Timestamp(1_000_000_000), Reading::Energy(MicroJoules(10))),
            Delta::Implausible
        );
        // The reset value is the new baseline.
        assert!(matches!(
            c.update(Timestamp(2_000_000_000), Reading::Energy(MicroJoules(20))),
            Delta::Energy {
                energy: MicroJoules(10),
                ..
            }
        ));
    }

    #[test]
    fn implausible_jump_is_dropped() {
        let mut c = ZoneCounter::new(&zone(Some(u64::MAX / 2)), MicroWatts(0));
        c.update(Timestamp(0), Reading::Energy(MicroJoules(0)));
        // 2 kJ in one second on a 1 kW zone.
        assert_eq!(
            c.update(
                Timestamp(1_000_000_000),
                Reading::Energy(MicroJoules(2_000_000_000))
            ),
            Delta::Implausible
        );
    }

    #[test]
    fn gauge_integrates() {
        let mut z = zone(None);
        z.metering = Metering::PowerGauge;
        let mut c = ZoneCounter::new(&z, MicroWatts(0));
        c.update(Timestamp(0), Reading::Power(MicroWatts::from_watts(10.0)));
        assert!(matches!(
            c.update(
                Timestamp(500_000_000),
                Reading::Power(MicroWatts::from_watts(10.0))
            ),
            Delta::Energy {
                energy: MicroJoules(5_000_000),
                ..
            }
        ));
    }
}
