//! Issue 17: every metric family of Go Kepler 0.11 (`fixtures/upstream-metrics.txt`, its
//! docs/user/metrics.md as data) is in kepler-rs's exposition with the same labels, apart
//! from the documented differences, and label values are spelled as Go Kepler spells them.
//! The exposition comes from the real wiring (`kepler_runtime::Monitor::tick`, then the
//! exporter) over fake sources: processes (regular, in a container of a pod, a VM), a CPU
//! package, a platform meter reporting BMC labels, and GPUs.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kepler_core::fakes::{FakeActivity, FakeProcess};
use kepler_core::{
    ContainerInfo, CpuInfo, Metering, MicroWatts, PodInfo, PowerFrame, PowerSource, ProcessInfo,
    Reading, Runtime, SourceKind, SourceReport, Timestamp, VmInfo, ZoneInfo, ZoneKind, ZoneLabels,
};
use kepler_export::{BuildInfo, ExportContext, MetricsLevel};
use kepler_runtime::NamedSource;
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice};
use support::fake_node::{constant_meter, gpu_options, last_tick, render};

const DATA: &str = include_str!("fixtures/upstream-metrics.txt");

/// A platform meter that reports BMC labels, as the Redfish source does.
struct FakeBmc {
    zones: Vec<Arc<ZoneInfo>>,
}

impl PowerSource for FakeBmc {
    fn zones(&self) -> &[Arc<ZoneInfo>] {
        &self.zones
    }
    fn read(&mut self, _at: Timestamp, out: &mut PowerFrame) {
        out.push(
            &self.zones[0],
            Ok(Reading::Power(MicroWatts::from_watts(420.0))),
        );
    }
    fn report(&self, _at: Timestamp, out: &mut SourceReport) {
        out.zones.push(ZoneLabels {
            zone: self.zones[0].clone(),
            labels: Arc::from(vec![
                ("bmc_id", "bmc-1".to_string()),
                ("chassis_id", "1".to_string()),
                ("power_control_id", "0".to_string()),
                ("power_control_name", "Server Power Control".to_string()),
                ("source_id", "0".to_string()),
                ("source_name", "Server Power Control".to_string()),
                ("source_type", "PowerControl".to_string()),
            ]),
            latest: Some(Reading::Power(MicroWatts::from_watts(420.0))),
        });
    }
}

fn process(pid: u32, info: ProcessInfo) -> FakeProcess {
    FakeProcess {
        pid,
        start_time: pid as u64,
        start: Timestamp(0),
        end: None,
        permille: 200,
        info: Arc::new(info),
    }
}

fn exposition() -> String {
    let mut gpu0 = FakeGpuDevice::new(0, 300.0);
    gpu0.run(&[(101, 100)]);
    let pod = PodInfo::new("pod-uid-1", "web-0", "shop");
    let container = ContainerInfo::new(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "web",
        Runtime::CriO,
    )
    .with_pod(pod);
    let activity = FakeActivity {
        cpus: 4,
        background_permille: 50,
        processes: vec![
            process(
                101,
                ProcessInfo::new("web", "/usr/bin/web").with_container(container),
            ),
            process(
                102,
                ProcessInfo::new("qemu-kvm", "/usr/bin/qemu-kvm").with_vm(VmInfo::new(
                    "vm-uuid-1",
                    "guest",
                    "kvm",
                )),
            ),
            process(103, ProcessInfo::new("bash", "/usr/bin/bash")),
        ],
        failing: false,
    };
    let bmc = FakeBmc {
        zones: vec![Arc::new(
            ZoneInfo::builder("redfish:bmc-1:0", ZoneKind::Platform, SourceKind::Redfish)
                .path("redfish://bmc-1/Chassis/1/Power#0")
                .metering(Metering::PowerGauge)
                .build(),
        )],
    };
    let meters = vec![
        constant_meter(
            "rapl",
            &[(ZoneKind::Package, 0, 80.0), (ZoneKind::Dram, 0, 8.0)],
        ),
        NamedSource {
            name: "redfish".into(),
            source: Box::new(bmc),
        },
    ];
    let gpu = FakeGpu::new(vec![gpu0]);
    let tick = last_tick(gpu_options(None), meters, activity, gpu, 3, 1_000_000_000);
    let context = ExportContext {
        node_name: "worker-1".into(),
        level: MetricsLevel::all(),
        build: BuildInfo {
            version: "0.1.0".into(),
            ..Default::default()
        },
        cpu_info: vec![CpuInfo {
            processor: 0,
            vendor_id: "GenuineIntel".into(),
            model_name: "Fake".into(),
            physical_id: 0,
            core_id: 0,
        }],
        ..Default::default()
    };
    render(&tick, &context)
}

/// Upstream label sets by metric, and the documented differences.
fn upstream() -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, Vec<String>>,
) {
    let mut metrics = BTreeMap::new();
    let mut diffs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in DATA.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap();
        if first == "diff" {
            let name = words.next().unwrap().to_string();
            diffs
                .entry(name)
                .or_default()
                .extend(words.map(String::from));
        } else {
            let kind = words.next().unwrap();
            assert!(kind == "counter" || kind == "gauge", "{line}");
            metrics.insert(first.to_string(), words.map(String::from).collect());
        }
    }
    (metrics, diffs)
}

#[test]
fn every_upstream_metric_has_upstream_labels_issue_17() {
    let text = exposition();
    let samples = support::parse_exposition(&text);
    let (metrics, diffs) = upstream();
    assert_eq!(
        metrics.len(),
        32,
        "the data file lists Go Kepler 0.11's 32 families"
    );
    for (name, labels) in &metrics {
        let mut want = labels.clone();
        for d in diffs.get(name).into_iter().flatten() {
            let (sign, label) = d.split_at(1);
            match sign {
                "+" => want.insert(label.to_string()),
                "-" => want.remove(label),
                _ => panic!("bad diff {d}"),
            };
        }
        let ours: Vec<BTreeSet<String>> = samples
            .iter()
            .filter(|s| s.name == *name)
            .map(|s| s.labels.iter().map(|(k, _)| k.clone()).collect())
            .collect();
        assert!(!ours.is_empty(), "{name} is missing:\n{text}");
        for got in &ours {
            assert_eq!(got, &want, "{name}");
        }
    }
}

/// Label values as Go Kepler writes them.
#[test]
fn label_values_are_spelled_as_upstream_issue_17() {
    let text = exposition();
    assert!(text.contains(r#"runtime="crio""#), "{text}");
    assert!(text.contains(r#"hypervisor="kvm""#), "{text}");
    for ty in ["container", "vm", "regular"] {
        assert!(
            text.contains(&format!(r#"type="{ty}""#)),
            "process type {ty}:\n{text}"
        );
    }
    assert!(text.contains(
        r#"kepler_platform_watts{node_name="worker-1",source="redfish",bmc_id="bmc-1",chassis_id="1",power_control_id="0",power_control_name="Server Power Control",source_id="0",source_name="Server Power Control",source_type="PowerControl"} 420"#
    ), "{text}");
}
