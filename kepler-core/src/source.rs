//! The two traits that every meter and every activity reader implements.
//!
//! # The buffer rule
//!
//! Every source trait ([`PowerSource`], [`ActivitySource`] and [`crate::GpuBackend`]) follows
//! one rule: **the caller clears the frame before a tick; a source only appends to it** (and
//! sets the frame's scalar fields, such as an activity frame's node totals). Several power
//! sources share one [`PowerFrame`] per tick and a wrapper such as a pod enricher reads
//! through an inner source, so a source that cleared would erase what others appended.

use std::sync::Arc;

use crate::activity::ActivityFrame;
use crate::error::{ReadError, SourceError};
use crate::report::SourceReport;
use crate::units::Timestamp;
use crate::zone::{Reading, ZoneInfo};

/// One zone's reading in one frame: a value or an error, never all-or-nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSample {
    /// Which zone.
    pub zone: Arc<ZoneInfo>,
    /// `None`: read at the tick's instant (the `at` given to the source and to
    /// [`crate::Attributor::step`]), as most meters are. `Some`: sampled earlier by a
    /// background poller (a BMC's value as of its last poll), so the engine integrates it
    /// over the time it really covers.
    pub sampled_at: Option<Timestamp>,
    /// The value, or why there is none.
    pub reading: Result<Reading, ReadError>,
}

impl ZoneSample {
    /// A reading of `zone` taken at the tick's instant.
    pub fn new(zone: Arc<ZoneInfo>, reading: Result<Reading, ReadError>) -> Self {
        ZoneSample {
            zone,
            sampled_at: None,
            reading,
        }
    }

    /// A reading of `zone` that a background poller sampled at `at`, before the tick.
    pub fn sampled(
        zone: Arc<ZoneInfo>,
        at: Timestamp,
        reading: Result<Reading, ReadError>,
    ) -> Self {
        ZoneSample {
            zone,
            sampled_at: Some(at),
            reading,
        }
    }
}

/// What the power sources read in one tick. The caller owns and reuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerFrame {
    /// One entry per zone read.
    pub samples: Vec<ZoneSample>,
}

impl PowerFrame {
    /// An empty frame with room for `zones` readings.
    pub fn with_capacity(zones: usize) -> PowerFrame {
        PowerFrame {
            samples: Vec::with_capacity(zones),
        }
    }

    /// Empties the frame, keeping its allocation.
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Adds a reading of `zone` taken now, at the tick's instant.
    pub fn push(&mut self, zone: &Arc<ZoneInfo>, reading: Result<Reading, ReadError>) {
        self.samples
            .push(ZoneSample::new(Arc::clone(zone), reading));
    }

    /// Adds a reading of `zone` that a background poller sampled at `at`, before the tick.
    pub fn push_sampled(
        &mut self,
        zone: &Arc<ZoneInfo>,
        at: Timestamp,
        reading: Result<Reading, ReadError>,
    ) {
        self.samples
            .push(ZoneSample::sampled(Arc::clone(zone), at, reading));
    }
}

/// A meter of energy or power for one or more zones.
pub trait PowerSource: Send {
    /// The zones this source reads so far. Most sources know them all at construction; a
    /// source that discovers zones in the background (Redfish, as each BMC is first walked)
    /// may add zones later, never remove one, so callers re-read this rather than cache it.
    fn zones(&self) -> &[Arc<ZoneInfo>];

    /// Appends a reading of every zone to `out` (never clears it: the caller does, once per
    /// tick, as several sources share the frame). `at` is the tick's instant, the one the
    /// caller passes to [`crate::Attributor::step`]: a reading taken now is pushed with
    /// [`PowerFrame::push`] and carries no time of its own; a source that samples on its own
    /// schedule converts its sample's age against `at` and uses [`PowerFrame::push_sampled`].
    /// A zone that fails gets an error entry; the others are still read.
    fn read(&mut self, at: Timestamp, out: &mut PowerFrame);

    /// Appends zone labels and endpoint health beyond the readings (a BMC's chassis ids,
    /// whether it answers), as of `at`. Most sources have nothing to add.
    fn report(&self, _at: Timestamp, _out: &mut SourceReport) {}
}

/// Per-process CPU activity plus node CPU totals.
pub trait ActivitySource: Send {
    /// Appends the live processes (with their details, container usage and per-CPU times) to
    /// `out` and sets its node totals as of `at`, the tick's instant (the frame carries no
    /// time of its own: the engine takes it from [`crate::Attributor::step`]; a source may
    /// use `at` for its own bookkeeping, such as when it last saw a process). The source never clears
    /// `out`: the caller clears it before each tick, so a wrapper can add to what an inner
    /// source read. On error `out` may hold part of a read; the caller discards it.
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError>;

    /// A short name for logs and metrics, e.g. `procfs`.
    fn name(&self) -> &'static str;
}

impl<T: PowerSource + ?Sized> PowerSource for Box<T> {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        (**self).zones()
    }
    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        (**self).read(at, out)
    }
    fn report(&self, at: Timestamp, out: &mut SourceReport) {
        (**self).report(at, out)
    }
}

impl<T: PowerSource + ?Sized> PowerSource for &mut T {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        (**self).zones()
    }
    fn read(&mut self, at: Timestamp, out: &mut PowerFrame) {
        (**self).read(at, out)
    }
    fn report(&self, at: Timestamp, out: &mut SourceReport) {
        (**self).report(at, out)
    }
}

impl<T: ActivitySource + ?Sized> ActivitySource for Box<T> {
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        (**self).read(at, out)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}

impl<T: ActivitySource + ?Sized> ActivitySource for &mut T {
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        (**self).read(at, out)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}
