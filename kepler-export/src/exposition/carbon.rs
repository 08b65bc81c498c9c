//! Carbon (issue 20, section 3): the grid intensity in force and how fresh it is. The
//! `*_co2e_grams_total` counters are written next to the energy counters they follow, with
//! the same labels (node zones in `Renderer::node`, pods and containers in
//! `Renderer::workloads`).

use std::sync::Arc;

use kepler_core::CarbonSnapshot;

use super::{Kind, Out};

/// The carbon of a tick, for the exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarbonStats {
    /// Cumulative grams per node zone, container and pod, aligned with the tick's snapshot,
    /// and the intensity used for the tick.
    pub carbon: Arc<CarbonSnapshot>,
    /// The intensity is older than `carbon.staleAfter`, or none was read yet.
    pub stale: bool,
    /// The intensity's age in seconds; `None` for a constant or before any value.
    pub age_secs: Option<f64>,
    /// Failed reads of the intensity file or URL since start.
    pub read_errors: u64,
}

pub(super) fn render(o: &mut Out, c: &CarbonStats) {
    if let Some(i) = c.carbon.intensity {
        let name = "kepler_carbon_intensity_grams_per_kwh";
        o.header(
            name,
            Kind::Gauge,
            "Grid carbon intensity used for the latest tick (carbon.intensity), in grams of CO2e per kWh.",
        );
        o.open(name);
        o.close_f64(i);
    }
    let name = "kepler_carbon_intensity_stale";
    o.header(
        name,
        Kind::Gauge,
        "1 when the carbon intensity in use is older than carbon.staleAfter (the last value is kept) or none was read yet, else 0.",
    );
    o.open(name);
    o.close_u64(u64::from(c.stale));
    if let Some(age) = c.age_secs {
        let name = "kepler_carbon_intensity_age_seconds";
        o.header(
            name,
            Kind::Gauge,
            "Age of the carbon intensity in use: from its timestamp, else the file's modification time, else when it was fetched, in seconds.",
        );
        o.open(name);
        o.close_f64(age);
    }
    let name = "kepler_carbon_intensity_read_errors_total";
    o.header(
        name,
        Kind::Counter,
        "Failed reads of the carbon intensity file or URL since start.",
    );
    o.open(name);
    o.close_u64(c.read_errors);
}
