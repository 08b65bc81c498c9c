//! Rendering a snapshot stepped from kepler-core's fakes: exact lines, escaping, family
//! structure, level gating, OpenMetrics, gzip, and `promtool check metrics`.

mod common;
mod promtool;

use std::collections::{HashMap, HashSet};
use std::io::Read;

use common::{context, snapshot, snapshot_with_exit, stats};
use kepler_core::Timestamp;
use kepler_export::{Exposition, Format, MetricsLevel};

fn render(level: MetricsLevel) -> String {
    let e = Exposition::render(&snapshot(4), &context(level), &stats());
    String::from_utf8(e.text().to_vec()).unwrap()
}

fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line:\n{line}\nin:\n{text}"
    );
}

#[test]
fn node_series_exact_lines() {
    let t = render(MetricsLevel::all());
    // 10 W for 3 s (the first tick is the baseline), split 55% active as the CPU is 55% busy.
    for line in [
        r#"kepler_node_cpu_joules_total{node_name="test-node",zone="package",path="fake/package-0"} 30"#,
        r#"kepler_node_cpu_joules_total{node_name="test-node",zone="dram",path="fake/dram-0"} 6"#,
        r#"kepler_node_cpu_watts{node_name="test-node",zone="package",path="fake/package-0"} 10.0"#,
        r#"kepler_node_cpu_active_joules_total{node_name="test-node",zone="package",path="fake/package-0"} 16.5"#,
        r#"kepler_node_cpu_idle_watts{node_name="test-node",zone="dram",path="fake/dram-0"} 0.9"#,
        r#"kepler_node_cpu_usage_ratio{node_name="test-node"} 0.55"#,
        r#"kepler_node_cpu_info{node_name="test-node",processor="0",vendor_id="GenuineIntel",model_name="Fake CPU @ 2.00GHz",physical_id="0",core_id="0"} 1"#,
        r#"kepler_node_power_source_info{node_name="test-node",zone="package",path="fake/package-0",source="fake",estimated="false"} 1"#,
        r#"kepler_node_cpu_unattributed_joules_total{node_name="test-node",zone="package"} 1.5"#,
        r#"kepler_build_info{node_name="test-node",arch="x86_64",branch="main",revision="abc123",version="0.1.0",rustversion="1.95.0"} 1"#,
        r#"kepler_exporter_ticks_total{node_name="test-node"} 4"#,
        r#"kepler_exporter_processes{node_name="test-node",state="running"} 4"#,
        r#"kepler_exporter_last_read_timestamp_seconds{node_name="test-node",source="fake",zone="package",path="fake/package-0"} 1700000003.0"#,
    ] {
        assert_line(&t, line);
    }
}

#[test]
fn workload_series_exact_lines() {
    let t = render(MetricsLevel::all());
    let cid = common::CONTAINER_ID;
    for line in [
        r#"kepler_process_cpu_joules_total{node_name="test-node",pid="100",comm="busy",exe="/usr/bin/busy",type="regular",container_id="",vm_id="",state="running",zone="package"} 7.5"#.to_string(),
        r#"kepler_process_cpu_watts{node_name="test-node",pid="100",comm="busy",exe="/usr/bin/busy",type="regular",container_id="",vm_id="",state="running",zone="package"} 2.5"#.to_string(),
        r#"kepler_process_cpu_seconds_total{node_name="test-node",pid="100",comm="busy",exe="/usr/bin/busy",type="regular",container_id="",vm_id=""} 1.5"#.to_string(),
        format!(r#"kepler_process_cpu_joules_total{{node_name="test-node",pid="200",comm="nginx",exe="/usr/bin/nginx",type="container",container_id="{cid}",vm_id="",state="running",zone="dram"}} 0.75"#),
        format!(r#"kepler_container_cpu_joules_total{{node_name="test-node",container_id="{cid}",container_name="web",runtime="containerd",pod_id="pod-uid-1",state="running",zone="package"}} 3.75"#),
        r#"kepler_vm_cpu_watts{node_name="test-node",vm_id="vm-uuid-1",vm_name="guest",hypervisor="qemu",state="running",zone="package"} 1.0"#.to_string(),
        r#"kepler_pod_cpu_joules_total{node_name="test-node",pod_id="pod-uid-1",pod_name="web-0",pod_namespace="default",state="running",zone="package"} 3.75"#.to_string(),
    ] {
        assert_line(&t, &line);
    }
}

#[test]
fn label_values_are_escaped() {
    let t = render(MetricsLevel::all());
    // comm is `we"ird\na<newline>me`: quote, backslash and newline escaped, nothing else.
    assert_line(
        &t,
        r#"kepler_process_cpu_seconds_total{node_name="test-node",pid="400",comm="we\"ird\\na\nme",exe="/usr/bin/we\"ird\\na\nme",type="regular",container_id="",vm_id=""} 0.15"#,
    );
    // No raw newline inside a sample: every line is a comment or starts with a metric name.
    for l in t.lines() {
        assert!(l.starts_with("# ") || l.starts_with("kepler_"), "{l:?}");
    }
}

#[test]
fn terminated_process_keeps_its_energy_with_state_terminated() {
    let snap = snapshot_with_exit(5, Some(Timestamp(2_000_000_000)));
    let e = Exposition::render(&snap, &context(MetricsLevel::all()), &stats());
    let t = std::str::from_utf8(e.text()).unwrap();
    assert_line(
        t,
        r#"kepler_process_cpu_watts{node_name="test-node",pid="100",comm="busy",exe="/usr/bin/busy",type="regular",container_id="",vm_id="",state="terminated",zone="package"} 0.0"#,
    );
    assert_line(
        t,
        r#"kepler_exporter_processes{node_name="test-node",state="terminated"} 1"#,
    );
}

/// Checks the text format's structure: HELP then TYPE once per family, samples of a family
/// contiguous and right after its header.
fn check_structure(t: &str, openmetrics: bool) -> Vec<String> {
    let mut seen_help = HashSet::new();
    let mut seen_type = HashSet::new();
    let mut closed = HashSet::new();
    let mut current: Option<(String, String)> = None; // (family, type)
    let mut families = Vec::new();
    for l in t.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(seen_help.insert(name.clone()), "HELP twice for {name}");
            if let Some((prev, _)) = current.take() {
                closed.insert(prev);
            }
            families.push(name.clone());
            current = Some((name, String::new()));
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_string();
            let ty = it.next().unwrap().to_string();
            assert!(seen_type.insert(name.clone()), "TYPE twice for {name}");
            let cur = current.as_mut().expect("TYPE after HELP");
            assert_eq!(cur.0, name, "TYPE right after its HELP");
            cur.1 = ty;
        } else if l == "# EOF" {
            assert!(openmetrics);
        } else {
            let sample = l.split(['{', ' ']).next().unwrap();
            let (family, ty) = current.as_ref().expect("sample after a header");
            let expected = if openmetrics && ty == "counter" {
                format!("{family}_total")
            } else {
                family.clone()
            };
            assert_eq!(sample, expected, "sample outside its family: {l}");
            assert!(!closed.contains(family));
        }
    }
    assert_eq!(seen_help, seen_type);
    families
}

#[test]
fn each_family_has_help_and_type_once_and_contiguous_samples() {
    let t = render(MetricsLevel::all());
    let families = check_structure(&t, false);
    assert!(families.len() > 30, "{families:?}");
    assert_eq!(
        families.last().unwrap(),
        "kepler_exporter_render_duration_seconds"
    );
}

#[test]
fn levels_gate_families() {
    let only_process = MetricsLevel {
        process: true,
        ..MetricsLevel::none()
    };
    let t = render(only_process);
    let names: HashMap<&str, usize> = t
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .fold(HashMap::new(), |mut m, n| {
            *m.entry(n).or_default() += 1;
            m
        });
    assert!(names.contains_key("kepler_process_cpu_joules_total"));
    assert!(names.contains_key("kepler_build_info"));
    assert!(names.contains_key("kepler_exporter_ticks_total"));
    for n in names.keys() {
        assert!(
            !n.starts_with("kepler_node_")
                && !n.starts_with("kepler_container_")
                && !n.starts_with("kepler_vm_")
                && !n.starts_with("kepler_pod_"),
            "{n} should be gated off"
        );
    }

    let t = render(MetricsLevel::none());
    assert!(!t.contains("kepler_process_"));
    assert!(t.contains("kepler_build_info{"));

    let t = render(MetricsLevel {
        node: true,
        pod: true,
        ..MetricsLevel::none()
    });
    assert!(t.contains("kepler_node_cpu_joules_total{"));
    assert!(t.contains("kepler_pod_cpu_joules_total{"));
    assert!(!t.contains("kepler_container_cpu_joules_total"));
}

#[test]
fn openmetrics_variant() {
    let e = Exposition::render(&snapshot(4), &context(MetricsLevel::all()), &stats());
    let om = std::str::from_utf8(e.openmetrics()).unwrap();
    assert!(om.ends_with("\n# EOF\n"));
    assert_line(om, "# TYPE kepler_node_cpu_joules counter");
    assert_line(om, "# TYPE kepler_node_cpu_watts gauge");
    assert!(om.contains("\nkepler_node_cpu_joules_total{node_name=\"test-node\",zone=\"package\""));
    assert!(!om.contains("# TYPE kepler_node_cpu_joules_total"));
    check_structure(om, true);
    // Made once: the same bytes (same allocation) on the next call.
    assert_eq!(
        e.openmetrics().as_ptr(),
        e.body(Format::OpenMetrics, false).as_ptr()
    );
}

#[test]
fn gzip_variants_decompress_to_the_text() {
    let e = Exposition::render(&snapshot(4), &context(MetricsLevel::all()), &stats());
    for (gz, plain) in [
        (e.text_gzip().clone(), e.text().clone()),
        (e.openmetrics_gzip().clone(), e.openmetrics().clone()),
    ] {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
    }
    assert_eq!(e.text_gzip().as_ptr(), e.body(Format::Text, true).as_ptr());
    assert!(e.samples() > 40);
}

#[test]
fn promtool_check_metrics_accepts_the_text() {
    let text = render(MetricsLevel::all());
    promtool::check_metrics("promtool_check_metrics_accepts_the_text", &text);
}
