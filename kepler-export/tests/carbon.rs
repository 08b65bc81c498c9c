//! Issue 20, section 3: the carbon families. Each `*_co2e_grams_total` series has exactly
//! the label set of its `*_cpu_joules_total` counterpart, the intensity gauges say what is
//! in use and how fresh it is, levels gate them like energy, and promtool accepts the text.

mod common;
mod promtool;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{context, snapshot, stats};
use kepler_core::CarbonLedger;
use kepler_export::{CarbonStats, Exposition, MetricsLevel, SelfStats};

/// `labels -> value` of every sample of `name`.
fn series(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            (labels.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn render(level: MetricsLevel, stale: bool, age: Option<f64>) -> String {
    let snap = snapshot(4);
    // One step from nothing at a constant 360 g/kWh: every total is its energy's worth.
    let carbon = CarbonLedger::new().step(&snap, Some(360.0));
    let stats = SelfStats {
        carbon: Some(CarbonStats {
            carbon: Arc::new(carbon),
            stale,
            age_secs: age,
            read_errors: 3,
        }),
        ..stats()
    };
    let e = Exposition::render(&snap, None, &context(level), &stats);
    String::from_utf8(e.text().to_vec()).unwrap()
}

#[test]
fn co2e_series_mirror_the_energy_series_issue_20() {
    let t = render(MetricsLevel::all(), false, Some(42.5));
    for (energy, carbon) in [
        (
            "kepler_node_cpu_joules_total",
            "kepler_node_co2e_grams_total",
        ),
        (
            "kepler_container_cpu_joules_total",
            "kepler_container_co2e_grams_total",
        ),
        ("kepler_pod_cpu_joules_total", "kepler_pod_co2e_grams_total"),
    ] {
        let joules = series(&t, energy);
        let grams = series(&t, carbon);
        assert!(!joules.is_empty(), "{energy}");
        assert_eq!(
            joules.keys().collect::<Vec<_>>(),
            grams.keys().collect::<Vec<_>>(),
            "{carbon} labels"
        );
        for (labels, j) in &joules {
            let want = j * 360.0 / 3.6e6;
            let g = grams[labels];
            assert!(
                (g - want).abs() <= want * 1e-12,
                "{carbon}{{{labels}}}: {g}, want {want}"
            );
        }
        assert!(t.contains(&format!("# TYPE {carbon} counter\n")));
    }
    // 30 J of package at 360 g/kWh is 3 mg.
    assert!(t.lines().any(|l| l
        == r#"kepler_node_co2e_grams_total{node_name="test-node",zone="package",path="fake/package-0"} 0.003"#));
    for line in [
        r#"kepler_carbon_intensity_grams_per_kwh{node_name="test-node"} 360.0"#,
        r#"kepler_carbon_intensity_stale{node_name="test-node"} 0"#,
        r#"kepler_carbon_intensity_age_seconds{node_name="test-node"} 42.5"#,
        r#"kepler_carbon_intensity_read_errors_total{node_name="test-node"} 3"#,
    ] {
        assert!(t.lines().any(|l| l == line), "missing {line}\n{t}");
    }
    assert!(t.contains("# TYPE kepler_carbon_intensity_read_errors_total counter\n"));
    promtool::check_metrics("co2e_series_mirror_the_energy_series_issue_20", &t);
    let om = Exposition::render(
        &snapshot(4),
        None,
        &context(MetricsLevel::all()),
        &SelfStats {
            carbon: Some(CarbonStats::default()),
            ..stats()
        },
    );
    let om = String::from_utf8(om.openmetrics().to_vec()).unwrap();
    assert!(
        om.contains("# TYPE kepler_node_co2e_grams counter\n"),
        "{om}"
    );
}

#[test]
fn stale_and_levels_issue_20() {
    let t = render(MetricsLevel::all(), true, None);
    assert!(t.contains("kepler_carbon_intensity_stale{node_name=\"test-node\"} 1\n"));
    assert!(!t.contains("kepler_carbon_intensity_age_seconds"));
    // Still the value in use: the counters keep integrating with it.
    assert!(t.contains("kepler_carbon_intensity_grams_per_kwh{node_name=\"test-node\"} 360.0\n"));

    let node_only = kepler_export::parse_levels(&["node".to_string()]).unwrap();
    let t = render(node_only, false, None);
    assert!(t.contains("kepler_node_co2e_grams_total{"));
    assert!(!t.contains("kepler_pod_co2e_grams_total") && !t.contains("kepler_container_co2e"));

    // Off: nothing carbon at all.
    let e = Exposition::render(&snapshot(4), None, &context(MetricsLevel::all()), &stats());
    let t = String::from_utf8(e.text().to_vec()).unwrap();
    assert!(!t.contains("co2e") && !t.contains("kepler_carbon"));
}
