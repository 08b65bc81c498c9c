//! What a source reports besides its readings: labels that tell its zones apart and the
//! health of the remote endpoints it polls. Plain data, filled by [`crate::PowerSource::report`].

use std::sync::Arc;

use crate::units::{Nanos, Timestamp};
use crate::zone::{Reading, ZoneInfo};

/// Labels of one zone beyond `zone`, `path` and `source`, for zones that those do not
/// describe (a BMC's chassis and PowerControl ids), and the latest fresh value as the meter
/// gave it (exporters show a gauge as read, not as re-derived from integrated energy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneLabels {
    /// The zone, as pushed into the power frame.
    pub zone: Arc<ZoneInfo>,
    /// `(name, value)` pairs, in export order.
    pub labels: Arc<[(&'static str, String)]>,
    /// The latest reading that is fresh enough to export; `None` when there is none.
    pub latest: Option<Reading>,
}

/// Health of one remote endpoint (a BMC) that a source polls in the background.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint's configured id (a BMC id); never a URL with credentials.
    pub id: String,
    /// True when the latest poll succeeded.
    pub up: bool,
    /// When the latest successful poll finished.
    pub last_success: Option<Timestamp>,
    /// How long the latest poll took, success or not.
    pub last_duration: Nanos,
    /// Polls since start.
    pub polls: u64,
    /// Failures since start by kind (`timeout`, `auth`, `not_found`...), in a stable order.
    pub errors: Vec<(&'static str, u64)>,
}

/// Everything one source reports besides readings. The caller owns and reuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceReport {
    /// Extra labels per zone.
    pub zones: Vec<ZoneLabels>,
    /// Remote endpoints.
    pub endpoints: Vec<EndpointStatus>,
}

impl SourceReport {
    /// Empties the report, keeping its allocations.
    pub fn clear(&mut self) {
        self.zones.clear();
        self.endpoints.clear();
    }

    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.endpoints.is_empty()
    }

    /// The labels reported for the zone with id `zone_id`.
    pub fn zone(&self, zone_id: &str) -> Option<&ZoneLabels> {
        self.zones.iter().find(|z| z.zone.id == zone_id)
    }
}
