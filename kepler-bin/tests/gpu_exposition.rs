//! The monitor loop with GPUs from the fake NVML backend (issue 7): the real wiring
//! (`kepler_runtime::Monitor::tick`, then the exporter, as the binary's loop does) renders
//! node, process, container and pod GPU metrics from the GPU snapshot returned beside the CPU
//! one, `kepler_node_power_source_info` names every zone, and Prometheus's own
//! `promtool check metrics` accepts the text. No NVIDIA hardware needed.

#[path = "../../kepler-export/tests/promtool/mod.rs"]
mod promtool;

mod support;

use kepler_core::fakes::FakeActivity;
use kepler_core::ZoneKind;
use kepler_export::{ExportContext, MetricsLevel};
use kepler_sources::gpu::{FakeGpu, FakeGpuDevice};
use support::fake_node::{constant_meter, gpu_options, last_tick, pod_process, render};

fn render_with_fake_gpus() -> String {
    let mut a = FakeGpuDevice::new(0, 300.0);
    a.run(&[(101, 25), (102, 75)]);
    let b = FakeGpuDevice::new(1, 60.0);
    let gpu = FakeGpu::new(vec![a, b]);
    let meter = constant_meter("fake", &[(ZoneKind::Package, 0, 80.0)]);
    let activity = FakeActivity {
        cpus: 4,
        background_permille: 100,
        processes: vec![
            pod_process(101, "train", "c1", "p1", 500),
            pod_process(102, "infer \"q\"", "c2", "p1", 500),
        ],
        failing: false,
    };
    let context = ExportContext {
        node_name: "gpu-node".into(),
        level: MetricsLevel::all(),
        ..Default::default()
    };
    // Simulated time: one tick every 100 ms.
    let tick = last_tick(
        gpu_options(Some(50.0)),
        vec![meter],
        activity,
        gpu,
        3,
        100_000_000,
    );
    let gpu = tick
        .gpu
        .as_deref()
        .expect("a GPU snapshot beside the CPU one");
    assert_eq!(gpu.devices.len(), 2);
    let sources: Vec<&str> = tick
        .stats
        .sources
        .iter()
        .map(|s| s.source.as_str())
        .collect();
    // The CPU meter, then the GPU backend (also named "fake").
    assert_eq!(sources, ["fake", "fake"]);
    render(&tick, &context)
}

fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .collect()
}

#[test]
fn gpu_families_and_labels_issue_7() {
    let text = render_with_fake_gpus();
    for name in [
        "kepler_node_gpu_joules_total",
        "kepler_node_gpu_watts",
        "kepler_node_gpu_idle_joules_total",
        "kepler_node_gpu_idle_watts",
        "kepler_node_gpu_active_joules_total",
        "kepler_node_gpu_active_watts",
        "kepler_node_gpu_info",
    ] {
        assert_eq!(series(&text, name).len(), 2, "{name}:\n{text}");
    }
    let info = series(&text, "kepler_node_gpu_info");
    assert!(
        info[0].contains(r#"gpu="0",gpu_uuid="GPU-fake-0000",gpu_name="Fake GPU 80GB",vendor="nvidia",mode="shared""#),
        "{}",
        info[0]
    );
    // Two processes on GPU 0, none on GPU 1.
    let procs = series(&text, "kepler_process_gpu_joules_total");
    assert_eq!(procs.len(), 2, "{text}");
    assert!(procs
        .iter()
        .any(|l| l.contains(r#"pid="102",comm="infer \"q\"""#) && l.contains(r#"gpu="0""#)));
    assert_eq!(series(&text, "kepler_process_gpu_watts").len(), 2);
    assert_eq!(series(&text, "kepler_container_gpu_joules_total").len(), 2);
    // Both containers belong to pod p1: one pod series per GPU used.
    let pods = series(&text, "kepler_pod_gpu_joules_total");
    assert_eq!(pods.len(), 1);
    assert!(
        pods[0].contains(r#"pod_id="p1",pod_name="p1-name",pod_namespace="ml",state="running""#)
    );
    // The source of every zone is stated: the CPU package and both GPUs.
    let sources = series(&text, "kepler_node_power_source_info");
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert!(sources
        .iter()
        .any(|l| l.contains(r#"zone="gpu",path="GPU-fake-0001",source="fake",estimated="false""#)));
    assert_eq!(series(&text, "kepler_exporter_gpu_up").len(), 2);
}

#[test]
fn promtool_accepts_the_gpu_exposition_issue_7() {
    let text = render_with_fake_gpus();
    promtool::check_metrics("promtool_accepts_the_gpu_exposition_issue_7", &text);
}
