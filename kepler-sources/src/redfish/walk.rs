//! The walk: ServiceRoot -> Chassis collection -> each chassis -> its power resources.
//!
//! Per chassis, the first of these that yields a number is used, so that one chassis is
//! never counted twice through two APIs that disagree (DMTF's mockup gives 344, 374 and
//! 937.4 W from three of them):
//!
//! 1. `Power.PowerControl[]`: one reading per entry, never summed (entries may nest);
//! 2. `EnvironmentMetrics.PowerWatts`;
//! 3. `PowerSubsystem` -> `PowerSupplies` -> each supply's `Metrics.InputPowerWatts` (AC
//!    input; output watts are the DC side, after losses, and are never used);
//! 4. `Sensors` with `ReadingType: Power`: one sensor, never a sum. `PhysicalContext:
//!    Chassis` first; where no sensor has it (power shelves that leave it null), one whose
//!    `Id`/`Name` names the chassis or total input; else the largest input-side sensor (see
//!    [`model::sensor_rank`]). The largest of the best rank is the chassis input total.
//!    Where the ServiceRoot's `ProtocolFeaturesSupported.ExpandQuery` says `$expand` works,
//!    the collection is asked for expanded (one request instead of one per sensor); a
//!    service that refuses the query is asked again without it.
//!
//! A failing resource (404, timeout, garbage) costs only its own chassis or step: it is
//! recorded, and the walk goes on with the next step and the next chassis.

use std::collections::HashSet;

use serde_json::Value;

use super::client::Fetch;
use super::error::FetchError;
use super::model::{self, Member, PowerReading};

/// The path of the ServiceRoot.
pub const SERVICE_ROOT: &str = "/redfish/v1/";

/// The result of one walk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Walk {
    /// Every reading found, chassis by chassis.
    pub readings: Vec<PowerReading>,
    /// Failures that cost a chassis or one of its resources, not the whole walk.
    pub partial_errors: Vec<FetchError>,
    /// Chassis walked (after removing duplicates).
    pub chassis: usize,
    /// Requests made.
    pub requests: usize,
    /// `Sensors` collections that came back with their members inline (`$expand`).
    pub sensors_expanded: usize,
}

impl Walk {
    /// Node power per chassis, in walk order: see [`model::node_watts`].
    pub fn node_watts(&self) -> Vec<(String, Option<f64>)> {
        let mut out: Vec<(String, Option<f64>)> = Vec::new();
        for r in &self.readings {
            if !out.iter().any(|(c, _)| *c == r.chassis_id) {
                let of: Vec<PowerReading> = self
                    .readings
                    .iter()
                    .filter(|x| x.chassis_id == r.chassis_id)
                    .cloned()
                    .collect();
                out.push((r.chassis_id.clone(), model::node_watts(&of)));
            }
        }
        out
    }
}

struct Walker<'a, F: Fetch> {
    fetch: &'a F,
    out: Walk,
    /// The `$expand` query the service supports, if any.
    expand: Option<String>,
}

impl<F: Fetch> Walker<'_, F> {
    async fn get(&mut self, path: &str) -> Result<Value, FetchError> {
        self.out.requests += 1;
        self.fetch.get(path).await
    }

    /// Fetches a linked resource, recording a failure as partial.
    async fn follow(&mut self, parent: &Value, key: &str) -> Option<(Value, String)> {
        let path = parent
            .get(key)
            .and_then(model::link)
            .and_then(model::fetch_path)?;
        match self.get(&path).await {
            Ok(v) => Some((v, path)),
            Err(e) => {
                self.out.partial_errors.push(e);
                None
            }
        }
    }

    /// A collection member as an object: inline when expanded, fetched otherwise.
    async fn member(&mut self, m: &Member<'_>) -> Option<(Value, String)> {
        match m {
            Member::Inline(v) => {
                let path = model::link(v)
                    .and_then(model::fetch_path)
                    .unwrap_or_default();
                Some(((*v).clone(), path))
            }
            Member::Link(path) => match self.get(path).await {
                Ok(v) => Some((v, path.clone())),
                Err(e) => {
                    self.out.partial_errors.push(e);
                    None
                }
            },
        }
    }

    async fn chassis(&mut self, chassis: &Value, path: &str) {
        let id = model::string(chassis, "Id")
            .unwrap_or_else(|| model::last_segment(path))
            .to_string();

        if let Some((power, p)) = self.follow(chassis, "Power").await {
            let r = model::power_controls(&power, &id, &p);
            if !r.is_empty() {
                self.out.readings.extend(r);
                return;
            }
        }
        if let Some((env, p)) = self.follow(chassis, "EnvironmentMetrics").await {
            if let Some(r) = model::environment_power(&env, &id, &p) {
                self.out.readings.push(r);
                return;
            }
        }
        if self.power_supplies(chassis, &id).await {
            return;
        }
        if let Some(sensors) = self.sensors(chassis).await {
            // A chassis lists many power sensors (PSU inputs and outputs, hot-swap
            // controllers...); only its total is exported, one sensor (model::best_sensor).
            let members = model::members(&sensors);
            if !members.is_empty() && members.iter().all(|m| matches!(m, Member::Inline(_))) {
                self.out.sensors_expanded += 1;
            }
            let mut found: Vec<PowerReading> = Vec::new();
            for m in &members {
                if let Some((s, p)) = self.member(m).await {
                    found.extend(model::power_sensor(&s, &id, &p));
                }
            }
            let best = model::best_sensor(&found).cloned();
            self.out.readings.extend(best);
        }
    }

    /// The chassis's `Sensors` collection, expanded when the service says it can.
    async fn sensors(&mut self, chassis: &Value) -> Option<Value> {
        if let Some(query) = self.expand.clone() {
            let path = chassis
                .get("Sensors")
                .and_then(model::link)
                .and_then(model::fetch_path)?;
            match self.get(&format!("{path}?{query}")).await {
                Ok(v) => return Some(v),
                Err(e) => {
                    tracing::debug!(error = %e, "Sensors with $expand refused; listing instead");
                }
            }
        }
        self.follow(chassis, "Sensors").await.map(|(v, _)| v)
    }

    /// Reads the AC input of every present supply; true when at least one gave a number.
    async fn power_supplies(&mut self, chassis: &Value, id: &str) -> bool {
        let Some((subsystem, _)) = self.follow(chassis, "PowerSubsystem").await else {
            return false;
        };
        let Some((supplies, _)) = self.follow(&subsystem, "PowerSupplies").await else {
            return false;
        };
        let mut found = false;
        for m in &model::members(&supplies) {
            let Some((psu, psu_path)) = self.member(m).await else {
                continue;
            };
            if model::is_absent(&psu) {
                continue;
            }
            if let Some((metrics, p)) = self.follow(&psu, "Metrics").await {
                let resource = if psu_path.is_empty() { p } else { psu_path };
                if let Some(r) = model::power_supply_input(&psu, &metrics, id, &resource) {
                    self.out.readings.push(r);
                    found = true;
                }
            }
        }
        found
    }
}

/// Walks the BMC behind `fetch` once. Fails only when the ServiceRoot or the Chassis
/// collection cannot be read; anything below is a partial error.
pub async fn walk<F: Fetch>(fetch: &F) -> Result<Walk, FetchError> {
    let mut w = Walker {
        fetch,
        out: Walk::default(),
        expand: None,
    };
    let root = w.get(SERVICE_ROOT).await?;
    w.expand = model::expand_query(&root);
    let chassis_path = root
        .get("Chassis")
        .and_then(model::link)
        .and_then(model::fetch_path)
        .unwrap_or_else(|| "/redfish/v1/Chassis".to_string());
    let collection = w.get(&chassis_path).await?;
    let mut seen = HashSet::new();
    for m in &model::members(&collection) {
        let key = match m {
            Member::Link(p) => model::resource_key(p).to_string(),
            Member::Inline(v) => model::link(v)
                .and_then(model::fetch_path)
                .map(|p| model::resource_key(&p).to_string())
                .unwrap_or_default(),
        };
        // The same chassis listed twice is walked once.
        if !key.is_empty() && !seen.insert(key) {
            continue;
        }
        if let Some((chassis, path)) = w.member(m).await {
            w.out.chassis += 1;
            let path = if path.is_empty() {
                model::link(&chassis)
                    .and_then(model::fetch_path)
                    .unwrap_or_default()
            } else {
                path
            };
            w.chassis(&chassis, &path).await;
        }
    }
    Ok(w.out)
}
