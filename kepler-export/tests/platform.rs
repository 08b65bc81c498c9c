//! `kepler_platform_*` rendering (issue #6, EP-001): labels from the source's report, the
//! watts as read, joules integrated by the engine, stale zones without watts, BMC health.

use std::sync::Arc;

use kepler_core::{
    Attributor, EndpointStatus, Metering, MicroWatts, Nanos, PowerFrame, ReadError, Reading,
    SourceKind, SourceReport, Timestamp, ZoneInfo, ZoneKind, ZoneLabels,
};
use kepler_export::{ExportContext, Exposition, MetricsLevel, SelfStats, SourceSelf};

fn zone(id: &str, source: SourceKind) -> Arc<ZoneInfo> {
    Arc::new(
        ZoneInfo::builder(id, ZoneKind::Platform, source)
            .index(0)
            .path(format!("path-of-{id}"))
            .metering(Metering::PowerGauge)
            .estimated(false)
            .build(),
    )
}

fn labels(pc: &str, name: &str) -> Arc<[(&'static str, String)]> {
    Arc::from(vec![
        ("bmc_id", "bmc-1".to_string()),
        ("chassis_id", "System.Embedded.1".to_string()),
        ("power_control_id", pc.to_string()),
        ("power_control_name", name.to_string()),
    ])
}

#[test]
fn issue_6_platform_series_as_the_seed_shows() {
    let pc1 = zone("redfish:pc1", SourceKind::Redfish);
    let pc2 = zone("redfish:pc2", SourceKind::Redfish);
    let acpi = zone("acpi:meter", SourceKind::Acpi);
    let mut engine = Attributor::default();
    let w = |x: f64| Ok(Reading::Power(MicroWatts::from_watts(x)));
    let mut snap = None;
    for t in [0u64, 10] {
        let at = Timestamp(t * 1_000_000_000);
        let mut f = PowerFrame::default();
        f.push(&pc1, w(450.5));
        // PC2 was read once, then went stale.
        if t == 0 {
            f.push(&pc2, w(85.2));
        } else {
            f.push(&pc2, Err(ReadError::Stale { what: "pc2".into() }));
        }
        f.push(&acpi, w(300.0));
        snap = Some(engine.step(&f, None, at));
    }
    let snap = snap.unwrap();
    let mut report = SourceReport::default();
    report.zones = vec![
        ZoneLabels {
            zone: pc1.clone(),
            labels: labels("PC1", "Server Power Control"),
            latest: Some(Reading::Power(MicroWatts::from_watts(450.5))),
        },
        ZoneLabels {
            zone: pc2.clone(),
            labels: labels("PC2", "CPU Sub-system \"Power\""),
            latest: None,
        },
    ];
    report.endpoints = vec![EndpointStatus {
        id: "bmc-1".into(),
        up: true,
        last_success: Some(Timestamp(9_000_000_000)),
        last_duration: Nanos::from_millis(250),
        polls: 3,
        errors: vec![("timeout", 1), ("auth", 0)],
    }];
    let stats = SelfStats {
        sources: vec![SourceSelf {
            source: "redfish".into(),
            read_duration_secs: 0.0,
            report,
        }],
        ..Default::default()
    };
    let ctx = ExportContext {
        node_name: "worker-1".into(),
        level: MetricsLevel::all(),
        wall_offset_secs: 1_700_000_000.0,
        ..Default::default()
    };
    let text = String::from_utf8(
        Exposition::render(&snap, None, &ctx, &stats)
            .text()
            .to_vec(),
    )
    .unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("kepler_platform_"))
        .collect();
    let want = [
        r#"kepler_platform_watts{node_name="worker-1",source="redfish",bmc_id="bmc-1",chassis_id="System.Embedded.1",power_control_id="PC1",power_control_name="Server Power Control"} 450.5"#,
        r#"kepler_platform_watts{node_name="worker-1",source="acpi",zone="platform",path="path-of-acpi:meter"} 300.0"#,
        // 450.5 W held for 10 s.
        r#"kepler_platform_joules_total{node_name="worker-1",source="redfish",bmc_id="bmc-1",chassis_id="System.Embedded.1",power_control_id="PC1",power_control_name="Server Power Control"} 4505"#,
        // Read once (a baseline), then stale: a counter at 0, and no watts sample.
        r#"kepler_platform_joules_total{node_name="worker-1",source="redfish",bmc_id="bmc-1",chassis_id="System.Embedded.1",power_control_id="PC2",power_control_name="CPU Sub-system \"Power\""} 0"#,
        r#"kepler_platform_joules_total{node_name="worker-1",source="acpi",zone="platform",path="path-of-acpi:meter"} 3000"#,
        r#"kepler_platform_bmc_up{node_name="worker-1",source="redfish",bmc_id="bmc-1"} 1"#,
        r#"kepler_platform_bmc_last_success_timestamp_seconds{node_name="worker-1",source="redfish",bmc_id="bmc-1"} 1700000009.0"#,
        r#"kepler_platform_bmc_poll_duration_seconds{node_name="worker-1",source="redfish",bmc_id="bmc-1"} 0.25"#,
        r#"kepler_platform_bmc_polls_total{node_name="worker-1",source="redfish",bmc_id="bmc-1"} 3"#,
        r#"kepler_platform_bmc_errors_total{node_name="worker-1",source="redfish",bmc_id="bmc-1",kind="timeout"} 1"#,
        r#"kepler_platform_bmc_errors_total{node_name="worker-1",source="redfish",bmc_id="bmc-1",kind="auth"} 0"#,
    ];
    assert_eq!(lines, want, "{text}");
    assert!(text.contains("# TYPE kepler_platform_joules_total counter\n"));
    assert!(text.contains("# TYPE kepler_platform_watts gauge\n"));
}

#[test]
fn issue_6_no_platform_zones_no_platform_families() {
    let snap = Attributor::default().step(&PowerFrame::default(), None, Timestamp(0));
    let text = String::from_utf8(
        Exposition::render(
            &snap,
            None,
            &ExportContext::default(),
            &SelfStats::default(),
        )
        .text()
        .to_vec(),
    )
    .unwrap();
    assert!(!text.contains("kepler_platform_"));
}
