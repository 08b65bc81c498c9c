//! Lenient reading of Redfish resources.
//!
//! Real BMCs bend the schema in many ways (see the fixture README: `MemberID` casing, missing
//! ids, path-style and broken-fragment `@odata.id`s, unversioned types, expanded collections,
//! null readings). A typed deserializer refuses a whole resource for one odd field, so these
//! functions walk a `serde_json::Value` and take only what they need, skipping what is odd.

use serde_json::Value;

/// Where a power number came from; also decides how the series is labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadingKind {
    /// `Power.PowerControl[].PowerConsumedWatts` (the legacy Power resource).
    PowerControl,
    /// `EnvironmentMetrics.PowerWatts.Reading`.
    EnvironmentMetrics,
    /// `PowerSubsystem/PowerSupplies/<psu>/Metrics.InputPowerWatts.Reading` (AC input side).
    PowerSupplyInput,
    /// A `Sensor` with `ReadingType: Power` that stands for the chassis (see [`SensorRank`]).
    Sensor,
}

impl ReadingKind {
    /// Go Kepler's `source_type` label: `PowerControl`, `PowerSupply`, and (kepler-rs
    /// extras) `EnvironmentMetrics`, `Sensor`.
    pub fn upstream_type(self) -> &'static str {
        match self {
            ReadingKind::PowerControl => "PowerControl",
            ReadingKind::PowerSupplyInput => "PowerSupply",
            ReadingKind::EnvironmentMetrics => "EnvironmentMetrics",
            ReadingKind::Sensor => "Sensor",
        }
    }

    /// A short name for logs and zone ids.
    pub fn label(self) -> &'static str {
        match self {
            ReadingKind::PowerControl => "power_control",
            ReadingKind::EnvironmentMetrics => "environment_metrics",
            ReadingKind::PowerSupplyInput => "power_supply_input",
            ReadingKind::Sensor => "sensor",
        }
    }
}

/// One power number read from a BMC: one exported `kepler_platform_watts` series.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerReading {
    /// The chassis `Id` (or the last segment of its URI when the BMC omits `Id`).
    pub chassis_id: String,
    /// Which API it came from.
    pub kind: ReadingKind,
    /// The `power_control_id` label: the PowerControl `MemberId`, PSU or sensor `Id`.
    pub id: String,
    /// The `power_control_name` label: the entry's `Name` (may be empty).
    pub name: String,
    /// `PhysicalContext` when given (`Chassis`, `CPUSubsystem`, ...).
    pub physical_context: Option<String>,
    /// Watts, as read (fractional watts exist: 159.25).
    pub watts: f64,
    /// The resource path it was read from (no fragment), for the `path` label.
    pub resource: String,
}

/// The link target of `v`: `{"@odata.id": ...}`, a HAL-style `{"href": ...}`, or a bare string.
pub fn link(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(m) => m
            .get("@odata.id")
            .or_else(|| m.get("href"))
            .and_then(Value::as_str),
        _ => None,
    }
    .filter(|s| !s.trim().is_empty())
}

/// The path to request for a link: fragment and query dropped, and an absolute URL reduced to
/// its path so that requests (and credentials) only ever go to the configured BMC.
/// `None` when the link is not a path.
pub fn fetch_path(link: &str) -> Option<String> {
    let link = link.trim();
    let no_fragment = link.split('#').next().unwrap_or("");
    let no_query = no_fragment.split('?').next().unwrap_or("");
    let path = if let Some(rest) = no_query
        .strip_prefix("https://")
        .or_else(|| no_query.strip_prefix("http://"))
    {
        &rest[rest.find('/')?..]
    } else {
        no_query
    };
    if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some(path.to_string())
}

/// The key two links to the same resource share (trailing `/` ignored).
pub fn resource_key(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

/// The last non-empty path segment of `path` (`/a/b/` gives `b`).
pub fn last_segment(path: &str) -> &str {
    resource_key(path).rsplit('/').next().unwrap_or("")
}

/// A string property, trimmed (vendors pad `Model` with spaces).
pub fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A property that must be a number of watts: finite and not negative. Numeric strings are
/// accepted (some firmware quotes numbers); `null`, other strings and objects give `None`.
pub fn watts(v: Option<&Value>) -> Option<f64> {
    let x = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (x.is_finite() && x >= 0.0).then_some(x)
}

/// An array member's id: `MemberId`, old Dell's `MemberID`, or `Id`.
pub fn member_id(v: &Value) -> Option<&str> {
    string(v, "MemberId")
        .or_else(|| string(v, "MemberID"))
        .or_else(|| string(v, "Id"))
}

/// True when `Status.State` says the item is not there (`Absent`).
pub fn is_absent(v: &Value) -> bool {
    v.get("Status")
        .and_then(|s| s.get("State"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("Absent"))
}

/// One member of a collection: the resource itself when the collection is expanded, or the
/// path to fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum Member<'a> {
    /// An expanded member: a full object, not to be fetched again.
    Inline(&'a Value),
    /// A link to fetch.
    Link(String),
}

/// The members of a collection. A member object carrying more than its `@odata.id` is taken
/// as expanded (`$expand`); `Members@odata.count` is ignored (it can be wrong).
pub fn members(collection: &Value) -> Vec<Member<'_>> {
    let Some(items) = collection.get("Members").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|m| match m {
            Value::Object(o) if o.keys().any(|k| !k.starts_with("@odata.")) => {
                Some(Member::Inline(m))
            }
            _ => link(m).and_then(fetch_path).map(Member::Link),
        })
        .collect()
}

/// The id of a PowerControl entry: its member id, else the last segment of its fragment or
/// path (`#/PowerControl/0`, `#PowerControl/0`), else its position.
fn power_control_id(entry: &Value, index: usize) -> String {
    if let Some(id) = member_id(entry) {
        return id.to_string();
    }
    if let Some(l) = link(entry) {
        let tail = l.rsplit(['#', '/']).find(|s| !s.is_empty());
        if let Some(t) = tail {
            return t.to_string();
        }
    }
    index.to_string()
}

/// Readings of every `PowerControl` entry that has a `PowerConsumedWatts` value. Entries
/// are not summed: they may nest (Lenovo: chassis, CPU and memory sub-systems).
pub fn power_controls(power: &Value, chassis_id: &str, resource: &str) -> Vec<PowerReading> {
    let Some(entries) = power.get("PowerControl").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let watts = watts(e.get("PowerConsumedWatts"))?;
            Some(PowerReading {
                chassis_id: chassis_id.to_string(),
                kind: ReadingKind::PowerControl,
                id: power_control_id(e, i),
                name: string(e, "Name").unwrap_or("").to_string(),
                physical_context: string(e, "PhysicalContext").map(str::to_string),
                watts,
                resource: resource.to_string(),
            })
        })
        .collect()
}

/// `EnvironmentMetrics.PowerWatts.Reading`, as one reading.
pub fn environment_power(env: &Value, chassis_id: &str, resource: &str) -> Option<PowerReading> {
    let watts = watts(env.get("PowerWatts").and_then(|p| p.get("Reading")))?;
    Some(PowerReading {
        chassis_id: chassis_id.to_string(),
        kind: ReadingKind::EnvironmentMetrics,
        id: string(env, "Id")
            .unwrap_or("EnvironmentMetrics")
            .to_string(),
        name: string(env, "Name").unwrap_or("").to_string(),
        physical_context: Some("Chassis".into()),
        watts,
        resource: resource.to_string(),
    })
}

/// A power supply's AC input power from its `PowerSupplyMetrics` (`InputPowerWatts`), never
/// the output side: input is what the wall delivers.
pub fn power_supply_input(
    psu: &Value,
    metrics: &Value,
    chassis_id: &str,
    resource: &str,
) -> Option<PowerReading> {
    let watts = watts(
        metrics
            .get("InputPowerWatts")
            .and_then(|p| p.get("Reading")),
    )?;
    Some(PowerReading {
        chassis_id: chassis_id.to_string(),
        kind: ReadingKind::PowerSupplyInput,
        id: member_id(psu)
            .map(str::to_string)
            .unwrap_or_else(|| last_segment(resource).to_string()),
        name: string(psu, "Name").unwrap_or("").to_string(),
        physical_context: Some("PowerSupply".into()),
        watts,
        resource: resource.to_string(),
    })
}

/// A `Sensor` that measures power: `ReadingType` `Power`, units W (or kW, converted), a
/// reading present, not absent. Whether it stands for the whole chassis is
/// [`sensor_rank`]'s question; its `PhysicalContext` (null on some power shelves) is kept.
pub fn power_sensor(sensor: &Value, chassis_id: &str, resource: &str) -> Option<PowerReading> {
    let kind = string(sensor, "ReadingType")?;
    if !kind.eq_ignore_ascii_case("Power") || is_absent(sensor) {
        return None;
    }
    let scale = match string(sensor, "ReadingUnits") {
        None => 1.0,
        Some(u) if u.eq_ignore_ascii_case("W") || u.eq_ignore_ascii_case("Watts") => 1.0,
        Some(u) if u.eq_ignore_ascii_case("kW") => 1000.0,
        Some(_) => return None,
    };
    let watts = watts(sensor.get("Reading"))? * scale;
    Some(PowerReading {
        chassis_id: chassis_id.to_string(),
        kind: ReadingKind::Sensor,
        id: member_id(sensor)
            .map(str::to_string)
            .unwrap_or_else(|| last_segment(resource).to_string()),
        name: string(sensor, "Name").unwrap_or("").to_string(),
        physical_context: string(sensor, "PhysicalContext").map(str::to_string),
        watts,
        resource: resource.to_string(),
    })
}

/// How surely a power sensor is the chassis's input total; the walk takes the largest
/// reading of the best rank present, so one chassis is one sensor, never a sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SensorRank {
    /// `PhysicalContext: Chassis`.
    Chassis,
    /// No `PhysicalContext`, and an `Id` or `Name` that names the whole (`total`, `chassis`,
    /// `system`, `shelf`...) and no part (a PSU, CPU, fan, output...): power shelves that
    /// leave the context null.
    NamedTotal,
    /// No context or `PowerSupply`, named as an input and not an output (`PSU0 Input
    /// Power`): the largest is a floor of the chassis input, used when nothing better exists.
    InputSide,
}

/// The rank of a power sensor reading, `None` when it measures a part (CPU, memory, an
/// output, a fan...) or nothing says what it measures.
pub fn sensor_rank(r: &PowerReading) -> Option<SensorRank> {
    const WHOLE: &[&str] = &[
        "total",
        "chassis",
        "system",
        "shelf",
        "node",
        "platform",
        "server",
        "enclosure",
    ];
    const PART: &[&str] = &[
        "cpu",
        "gpu",
        "mem",
        "memory",
        "dimm",
        "dram",
        "fan",
        "fans",
        "psu",
        "ps",
        "pdu",
        "supply",
        "pcie",
        "vr",
        "hsc",
        "hotswap",
        "swap",
        "storage",
        "disk",
        "drive",
        "nic",
        "subsystem",
        "sub",
        "out",
        "output",
        "soc",
        "board",
        "slot",
        "rail",
        "battery",
    ];
    const INPUT: &[&str] = &["in", "input", "ac"];
    const OUTPUT: &[&str] = &["out", "output", "dc"];
    let context = r.physical_context.as_deref();
    if context.is_some_and(|c| c.eq_ignore_ascii_case("Chassis")) {
        return Some(SensorRank::Chassis);
    }
    let mut words = name_words(&r.id);
    words.extend(name_words(&r.name));
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    match context {
        None if has(WHOLE) && !has(PART) => Some(SensorRank::NamedTotal),
        None | Some("PowerSupply") if has(INPUT) && !has(OUTPUT) => Some(SensorRank::InputSide),
        _ => None,
    }
}

/// The lower-case words of an `Id` or `Name`: split at anything not alphanumeric and at
/// camel-case humps (`ChassisInputPower`, `PSU0InputPower`), trailing digits dropped
/// (`psu0` -> `psu`).
fn name_words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            words.push(std::mem::take(&mut word));
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1);
        let hump = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(char::is_ascii_lowercase))
            });
        if hump {
            words.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_lowercase());
    }
    words.push(word);
    words
        .into_iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The one sensor that gives a chassis's power: the best [`sensor_rank`] present, and the
/// largest reading of that rank (an input total is never below any of its parts; the first
/// wins a tie).
pub fn best_sensor<'a>(
    readings: impl IntoIterator<Item = &'a PowerReading>,
) -> Option<&'a PowerReading> {
    let mut best: Option<(SensorRank, &PowerReading)> = None;
    for r in readings {
        let Some(rank) = sensor_rank(r) else { continue };
        let better = best.is_none_or(|(br, b)| rank < br || (rank == br && r.watts > b.watts));
        if better {
            best = Some((rank, r));
        }
    }
    best.map(|(_, r)| r)
}

/// The node power of one chassis's readings: the PowerControl entry whose context is
/// `Chassis` (else the first entry), else the EnvironmentMetrics value, else the sum of PSU
/// inputs, else the power sensor [`best_sensor`] picks. `None` when
/// the chassis reports no power at all, which is not the same as 0 W.
pub fn node_watts(readings: &[PowerReading]) -> Option<f64> {
    let of = |k: ReadingKind| readings.iter().filter(move |r| r.kind == k);
    let pc: Vec<_> = of(ReadingKind::PowerControl).collect();
    if !pc.is_empty() {
        let chassis = pc.iter().find(|r| {
            r.physical_context
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("Chassis"))
        });
        return Some(chassis.unwrap_or(&pc[0]).watts);
    }
    if let Some(r) = of(ReadingKind::EnvironmentMetrics).next() {
        return Some(r.watts);
    }
    let psu: Vec<f64> = of(ReadingKind::PowerSupplyInput).map(|r| r.watts).collect();
    if !psu.is_empty() {
        return Some(psu.iter().sum());
    }
    best_sensor(of(ReadingKind::Sensor)).map(|r| r.watts)
}

/// The `$expand` query that expands a collection's members one level, from the ServiceRoot's
/// `ProtocolFeaturesSupported.ExpandQuery`; `None` when the service does not say it can.
/// `NoLinks` (`.`: every hyperlink outside `Links`, which includes `Members`) is preferred
/// to `ExpandAll` (`*`), which also expands `Links`.
pub fn expand_query(root: &Value) -> Option<String> {
    let q = root.get("ProtocolFeaturesSupported")?.get("ExpandQuery")?;
    let yes = |k: &str| q.get(k).and_then(Value::as_bool) == Some(true);
    let what = if yes("NoLinks") {
        "."
    } else if yes("ExpandAll") {
        "*"
    } else {
        return None;
    };
    let levels = if yes("Levels") { "($levels=1)" } else { "" };
    Some(format!("$expand={what}{levels}"))
}

/// Parses a response body as a JSON object. Redfish resources are objects; anything else
/// (an HTML login page, a bare string, a truncated document) is refused with a short reason.
pub fn parse_resource(body: &[u8]) -> Result<Value, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'<') {
        return Err("an HTML or XML page, not JSON".into());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err("JSON but not an object".into())
    }
}

/// Every reading this crate would take from one resource body, whatever its type:
/// PowerControl entries, an EnvironmentMetrics value, power sensors that may stand for the
/// chassis (any [`SensorRank`]), and the same for
/// each expanded member of a collection. The walk uses the parts; this is the whole parser
/// in one call, for the fuzz target and the benchmark.
pub fn readings_in(body: &[u8], chassis_id: &str) -> Result<Vec<PowerReading>, String> {
    let v = parse_resource(body)?;
    let path = link(&v).and_then(fetch_path).unwrap_or_default();
    let mut out = power_controls(&v, chassis_id, &path);
    out.extend(environment_power(&v, chassis_id, &path));
    let ranked = |r: &PowerReading| sensor_rank(r).is_some();
    out.extend(power_sensor(&v, chassis_id, &path).filter(ranked));
    for m in members(&v) {
        if let Member::Inline(item) = m {
            let p = link(item).and_then(fetch_path).unwrap_or_default();
            out.extend(power_sensor(item, chassis_id, &p).filter(ranked));
            out.extend(power_controls(item, chassis_id, &p));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_of_every_style() {
        assert_eq!(
            link(&json!({"@odata.id": "/redfish/v1/"})),
            Some("/redfish/v1/")
        );
        assert_eq!(
            link(&json!({"href": "/rest/v1/Chassis/1"})),
            Some("/rest/v1/Chassis/1")
        );
        assert_eq!(link(&json!({"@odata.id": ""})), None);
        assert_eq!(link(&json!(3)), None);
        assert_eq!(
            fetch_path("/redfish/v1/Chassis/1/Power#PowerControl/0").as_deref(),
            Some("/redfish/v1/Chassis/1/Power")
        );
        assert_eq!(
            fetch_path("https://other.example/redfish/v1/Chassis?$expand=*").as_deref(),
            Some("/redfish/v1/Chassis")
        );
        assert_eq!(fetch_path("Chassis/1"), None);
        assert_eq!(fetch_path("https://host-without-path"), None);
        assert_eq!(
            resource_key("/redfish/v1/Chassis/1/"),
            "/redfish/v1/Chassis/1"
        );
        assert_eq!(last_segment("/redfish/v1/Chassis/1/"), "1");
    }

    #[test]
    fn watts_accepts_numbers_and_numeric_strings_only() {
        assert_eq!(watts(Some(&json!(159.25))), Some(159.25));
        assert_eq!(watts(Some(&json!(" 42 "))), Some(42.0));
        assert_eq!(watts(Some(&json!(null))), None);
        assert_eq!(watts(Some(&json!(-1))), None);
        assert_eq!(watts(Some(&json!("N/A"))), None);
        assert_eq!(watts(Some(&json!({"Reading": 1}))), None);
        assert_eq!(watts(None), None);
    }

    #[test]
    fn power_control_ids_fall_back_to_fragment_then_index() {
        let power = json!({"PowerControl": [
            {"@odata.id": "/redfish/v1/Chassis/1/Power#/PowerControl/0", "PowerConsumedWatts": 1},
            {"MemberID": "PC2", "Name": "CPU", "PowerConsumedWatts": 2},
            {"PowerConsumedWatts": 3},
            {"MemberId": "nul", "PowerConsumedWatts": null},
            "garbage"
        ]});
        let r = power_controls(&power, "1", "/p");
        let ids: Vec<_> = r.iter().map(|r| (r.id.as_str(), r.watts)).collect();
        assert_eq!(ids, [("0", 1.0), ("PC2", 2.0), ("2", 3.0)]);
        assert_eq!(r[1].name, "CPU");
        assert!(power_controls(&json!({"PowerControl": {}}), "1", "/p").is_empty());
    }

    #[test]
    fn expanded_and_linked_members() {
        let c = json!({"Members": [
            {"@odata.id": "/a"},
            {"@odata.id": "/b", "Id": "b", "Reading": 1},
            "/c",
            7
        ]});
        let m = members(&c);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], Member::Link("/a".into()));
        assert!(matches!(m[1], Member::Inline(_)));
        assert_eq!(m[2], Member::Link("/c".into()));
    }

    /// The rank of a sensor as the walk would see it.
    fn rank(v: Value) -> Option<SensorRank> {
        sensor_rank(&power_sensor(&v, "c", "/s")?)
    }

    #[test]
    fn sensors_need_power_and_watts() {
        let ok = json!({"Id": "total", "ReadingType": "Power", "PhysicalContext": "Chassis", "Reading": 2.5, "ReadingUnits": "kW"});
        assert_eq!(power_sensor(&ok, "c", "/s").unwrap().watts, 2500.0);
        assert_eq!(rank(ok), Some(SensorRank::Chassis));
        let cpu = json!({"ReadingType": "Power", "PhysicalContext": "CPU", "Reading": 30});
        assert_eq!(rank(cpu), None);
        let energy =
            json!({"ReadingType": "EnergyJoules", "PhysicalContext": "Chassis", "Reading": 30});
        assert!(power_sensor(&energy, "c", "/s").is_none());
        let absent = json!({"ReadingType": "Power", "PhysicalContext": "Chassis", "Status": {"State": "Absent"}});
        assert!(power_sensor(&absent, "c", "/s").is_none());
        let amps = json!({"ReadingType": "Power", "ReadingUnits": "A", "Reading": 3});
        assert!(power_sensor(&amps, "c", "/s").is_none());
    }

    #[test]
    fn sensors_without_context_are_ranked_by_their_names_issue_19() {
        let s = |id: &str, name: &str, ctx: Value| {
            json!({"Id": id, "Name": name, "ReadingType": "Power", "ReadingUnits": "W",
                   "PhysicalContext": ctx, "Reading": 100})
        };
        let total = Some(SensorRank::NamedTotal);
        let input = Some(SensorRank::InputSide);
        assert_eq!(
            rank(s("ChassisInputPower", "Chassis Input Power", Value::Null)),
            total
        );
        assert_eq!(rank(s("total_power_in", "", Value::Null)), total);
        assert_eq!(rank(s("SysPwr", "System Power", Value::Null)), total);
        assert_eq!(
            rank(s("PSU0InputPower", "PSU0 Input Power", Value::Null)),
            input
        );
        assert_eq!(rank(s("PS1_Input", "", json!("PowerSupply"))), input);
        // Parts and outputs never stand for the chassis.
        assert_eq!(
            rank(s("total_power_out", "Total Output Power", Value::Null)),
            None
        );
        assert_eq!(rank(s("PSU0OutputPower", "", Value::Null)), None);
        assert_eq!(
            rank(s("CPU_Power", "CPU Sub-system Power", Value::Null)),
            None
        );
        assert_eq!(rank(s("FanPower", "Fans Total", Value::Null)), None);
        assert_eq!(rank(s("Power1", "Power 1", Value::Null)), None);
        assert_eq!(rank(s("TotalPower", "Total", json!("CPU"))), None);
        // A missing context is the same as null.
        let v = json!({"Id": "ShelfPower", "ReadingType": "Power", "Reading": 5});
        assert_eq!(rank(v), total);
    }

    #[test]
    fn one_sensor_per_chassis_never_a_sum_issue_19() {
        let r = |id: &str, ctx: Option<&str>, watts: f64| PowerReading {
            chassis_id: "c".into(),
            kind: ReadingKind::Sensor,
            id: id.into(),
            name: String::new(),
            physical_context: ctx.map(str::to_string),
            watts,
            resource: String::new(),
        };
        let psus = [r("PSU0_Input", None, 900.0), r("PSU1_Input", None, 880.0)];
        // Input sides alone: the largest, not 1780.
        assert_eq!(node_watts(&psus), Some(900.0));
        // A named total beats larger parts; a chassis context beats a named total.
        let mut all = psus.to_vec();
        all.push(r("Total_Input_Power", None, 1750.0));
        assert_eq!(node_watts(&all), Some(1750.0));
        all.push(r("hsc", Some("Chassis"), 20.0));
        assert_eq!(node_watts(&all), Some(20.0));
        assert_eq!(node_watts(&[r("CPU0", Some("CPU"), 100.0)]), None);
    }

    #[test]
    fn expand_query_from_the_service_root_issue_19() {
        let root = |q: Value| json!({"ProtocolFeaturesSupported": {"ExpandQuery": q}});
        let all = json!({"ExpandAll": true, "Levels": true, "Links": true, "NoLinks": true, "MaxLevels": 6});
        assert_eq!(
            expand_query(&root(all)).as_deref(),
            Some("$expand=.($levels=1)")
        );
        let star = json!({"ExpandAll": true, "Levels": false});
        assert_eq!(expand_query(&root(star)).as_deref(), Some("$expand=*"));
        assert_eq!(expand_query(&root(json!({"ExpandAll": false}))), None);
        assert_eq!(expand_query(&json!({"Chassis": {}})), None);
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        assert!(parse_resource(b"  <html>login</html>")
            .unwrap_err()
            .contains("HTML"));
        assert!(parse_resource(b"{\"a\": ")
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse_resource(b"[1]")
            .unwrap_err()
            .contains("not an object"));
        assert!(parse_resource(b"{}").is_ok());
    }
}
