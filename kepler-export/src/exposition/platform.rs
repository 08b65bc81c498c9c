//! Platform power (EP-001): `kepler_platform_watts` and `kepler_platform_joules_total` per
//! platform zone, and the health of the BMCs behind them.
//!
//! Labels of a zone come from its source's report (`bmc_id`, `chassis_id`,
//! `power_control_id`, `power_control_name` for Redfish); a platform zone without a report
//! (an ACPI or hwmon meter) is labelled with its `zone` and `path`. The watts are the
//! latest fresh reading as the meter gave it; a zone whose reading is stale or failed has
//! no `kepler_platform_watts` sample. The joules are integrated by the engine from the
//! polled power: they start at 0 and never decrease.

use std::collections::HashMap;

use kepler_core::{Reading, Snapshot, ZoneKind, ZoneLabels};

use super::{ExportContext, Kind, Out, SelfStats};

/// Writes `,key="value"` for each label of the zone, or its zone and path without a report.
fn zone_labels(o: &mut Out, labels: Option<&ZoneLabels>, zone: &kepler_core::NodeZone) {
    o.label_raw("source", zone.info.source.label());
    match labels {
        Some(l) => {
            for (k, v) in l.labels.iter() {
                o.label(k, v);
            }
        }
        None => {
            o.label_raw("zone", zone.info.kind.label());
            o.label("path", &zone.info.path);
        }
    }
}

pub(super) fn render(o: &mut Out, snap: &Snapshot, ctx: &ExportContext, stats: &SelfStats) {
    let reported: HashMap<&str, &ZoneLabels> = stats
        .sources
        .iter()
        .flat_map(|s| s.report.zones.iter())
        .map(|z| (z.zone.id.as_str(), z))
        .collect();
    let zones: Vec<_> = snap
        .zones
        .iter()
        .filter(|z| z.info.kind == ZoneKind::Platform && z.has_reading)
        .collect();

    if ctx.level.node && !zones.is_empty() {
        let fresh: Vec<_> = zones
            .iter()
            .filter(|z| z.last_error.is_none())
            .filter_map(|z| {
                let labels = reported.get(z.info.id.as_str()).copied();
                let watts = match labels.map(|l| l.latest) {
                    Some(Some(Reading::Power(p))) => p.as_watts(),
                    // Reported, but nothing fresh to show.
                    Some(_) => return None,
                    None => z.power,
                };
                Some((z, labels, watts))
            })
            .collect();
        if !fresh.is_empty() {
            let name = "kepler_platform_watts";
            o.header(
                name,
                Kind::Gauge,
                "Platform power as the meter reports it (Redfish: one series per PowerControl entry, or the chassis's EnvironmentMetrics, PSU input or power sensor; entries may nest, do not sum them), in watts. Absent while the reading is stale.",
            );
            for (z, labels, watts) in &fresh {
                o.open(name);
                zone_labels(o, *labels, z);
                o.close_f64(*watts);
            }
        }
        let name = "kepler_platform_joules_total";
        o.header(
            name,
            Kind::Counter,
            "Platform energy integrated from the polled power since the exporter started (not a hardware counter), in joules.",
        );
        for z in &zones {
            o.open(name);
            zone_labels(o, reported.get(z.info.id.as_str()).copied(), z);
            o.close_uj(z.total.0);
        }
    }

    let endpoints: Vec<_> = stats
        .sources
        .iter()
        .flat_map(|s| {
            s.report
                .endpoints
                .iter()
                .map(move |e| (s.source.as_str(), e))
        })
        .collect();
    if endpoints.is_empty() {
        return;
    }
    let name = "kepler_platform_bmc_up";
    o.header(
        name,
        Kind::Gauge,
        "1 when the latest background poll of the BMC succeeded, else 0.",
    );
    for (source, e) in &endpoints {
        o.open(name);
        o.label("source", source);
        o.label("bmc_id", &e.id);
        o.close_u64(u64::from(e.up));
    }
    if endpoints.iter().any(|(_, e)| e.last_success.is_some()) {
        let name = "kepler_platform_bmc_last_success_timestamp_seconds";
        o.header(
            name,
            Kind::Gauge,
            "Unix time of the latest successful poll of the BMC, in seconds.",
        );
        for (source, e) in &endpoints {
            if let Some(at) = e.last_success {
                o.open(name);
                o.label("source", source);
                o.label("bmc_id", &e.id);
                o.close_f64(ctx.unix_secs(at));
            }
        }
    }
    let name = "kepler_platform_bmc_poll_duration_seconds";
    o.header(
        name,
        Kind::Gauge,
        "Time the latest poll of the BMC (all requests of one walk) took, in seconds.",
    );
    for (source, e) in &endpoints {
        o.open(name);
        o.label("source", source);
        o.label("bmc_id", &e.id);
        o.close_f64(e.last_duration.as_secs_f64());
    }
    let name = "kepler_platform_bmc_polls_total";
    o.header(
        name,
        Kind::Counter,
        "Background polls of the BMC since start.",
    );
    for (source, e) in &endpoints {
        o.open(name);
        o.label("source", source);
        o.label("bmc_id", &e.id);
        o.close_u64(e.polls);
    }
    let name = "kepler_platform_bmc_errors_total";
    o.header(
        name,
        Kind::Counter,
        "Failed BMC requests since start by kind (connect, timeout, tls, auth, not_found, server_error, http_status, body, too_large, parse).",
    );
    for (source, e) in &endpoints {
        for (kind, n) in &e.errors {
            o.open(name);
            o.label("source", source);
            o.label("bmc_id", &e.id);
            o.label_raw("kind", kind);
            o.close_u64(*n);
        }
    }
}
