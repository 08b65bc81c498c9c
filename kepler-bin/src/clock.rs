//! The program's clock for readings: monotonic time as `kepler_core::Timestamp`s, the only
//! time the engines see (see the crate docs for the other clocks and why they exist).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kepler_core::Timestamp;

/// Monotonic nanoseconds since the clock was made, plus the wall time of that origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    wall_origin_secs: f64,
}

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
            wall_origin_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// Now, as a core timestamp.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.origin.elapsed().as_nanos().min(u64::MAX as u128) as u64)
    }

    /// Unix seconds at `Timestamp(0)`.
    pub fn wall_origin_secs(&self) -> f64 {
        self.wall_origin_secs
    }
}
