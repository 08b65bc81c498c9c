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
    let e = Exposition::render(&snapshot(4), None, &context(level), &stats());
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
        r#"kepler_build_info{node_name="test-node",arch="x86_64",branch="main",revision="abc123",version="0.1.0",rustversion="1.95.0",fips="false",bpf="true"} 1"#,
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
    let e = Exposition::render(&snap, None, &context(MetricsLevel::all()), &stats());
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
    let e = Exposition::render(&snapshot(4), None, &context(MetricsLevel::all()), &stats());
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
    let e = Exposition::render(&snapshot(4), None, &context(MetricsLevel::all()), &stats());
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

/// The eBPF source's and the pod informer's families (issue 14: named and rendered here from
/// typed stats, no longer by the binary): exact text, byte for byte as before, in both
/// informer modes, after every other self-metric and before the render duration.
#[test]
fn component_self_metrics_exact_text() {
    use kepler_export::{BpfStats, KubeMode, KubeRequestStats, KubeStats};
    let request = |request, ok, failed| KubeRequestStats {
        request,
        ok,
        failed,
        seconds_total: 1.5,
        last_seconds: 0.25,
    };
    let mut stats = stats();
    stats.bpf = Some(BpfStats {
        programs_attached: 3,
        map_entries: 120,
        map_capacity: 65536,
        events_dropped: 0,
        entries_deleted: 7,
        slices_unseen: 2,
        held_back: 1,
        read_duration: std::time::Duration::from_millis(4),
    });
    stats.kube = Some(KubeStats {
        synced: true,
        pods: 12,
        containers: 30,
        negative_entries: 4,
        misses: 5,
        negative_hits: 6,
        mode: KubeMode::Kubelet { poll_errors: 2 },
        requests: vec![request("kubelet_pods", 40, 2)],
    });
    let section = |stats: &kepler_export::SelfStats| {
        let e = Exposition::render(&snapshot(2), None, &context(MetricsLevel::all()), stats);
        let t = String::from_utf8(e.text().to_vec()).unwrap();
        let start = t
            .find("# HELP kepler_exporter_bpf_programs_attached")
            .unwrap_or_else(|| t.find("# HELP kepler_kube_synced").expect("kube families"));
        let end = t
            .find("# HELP kepler_exporter_render_duration_seconds")
            .unwrap();
        assert!(t[..start].contains("kepler_exporter_evicted_workloads_total"));
        t[start..end].to_owned()
    };
    let kube_common = "\
# HELP kepler_kube_synced 1 once the first pod list (kubelet poll or API-server list) succeeded.
# TYPE kepler_kube_synced gauge
kepler_kube_synced{node_name=\"test-node\"} 1.0
# HELP kepler_kube_cache_pods Pods of this node in the metadata cache, including deleted ones still retained.
# TYPE kepler_kube_cache_pods gauge
kepler_kube_cache_pods{node_name=\"test-node\"} 12.0
# HELP kepler_kube_cache_containers Container ids in the metadata cache.
# TYPE kepler_kube_cache_containers gauge
kepler_kube_cache_containers{node_name=\"test-node\"} 30.0
# HELP kepler_kube_negative_cache_entries Container ids cached as belonging to no pod (sandboxes, system containers).
# TYPE kepler_kube_negative_cache_entries gauge
kepler_kube_negative_cache_entries{node_name=\"test-node\"} 4.0
# HELP kepler_kube_cache_misses_total Lookups of a container id in no pod and not in the negative cache; never a request.
# TYPE kepler_kube_cache_misses_total counter
kepler_kube_cache_misses_total{node_name=\"test-node\"} 5.0
# HELP kepler_kube_negative_cache_hits_total Lookups answered by the negative cache.
# TYPE kepler_kube_negative_cache_hits_total counter
kepler_kube_negative_cache_hits_total{node_name=\"test-node\"} 6.0
";
    let expected = format!(
        "\
# HELP kepler_exporter_bpf_programs_attached eBPF programs of the activity source attached.
# TYPE kepler_exporter_bpf_programs_attached gauge
kepler_exporter_bpf_programs_attached{{node_name=\"test-node\"}} 3.0
# HELP kepler_exporter_bpf_map_entries Processes holding a slot of the eBPF source at the latest read.
# TYPE kepler_exporter_bpf_map_entries gauge
kepler_exporter_bpf_map_entries{{node_name=\"test-node\"}} 120.0
# HELP kepler_exporter_bpf_map_capacity Slots of the eBPF source: how many processes it can account at once.
# TYPE kepler_exporter_bpf_map_capacity gauge
kepler_exporter_bpf_map_capacity{{node_name=\"test-node\"}} 65536.0
# HELP kepler_exporter_bpf_events_dropped_total CPU-time charges lost because every slot of the eBPF source was taken.
# TYPE kepler_exporter_bpf_events_dropped_total counter
kepler_exporter_bpf_events_dropped_total{{node_name=\"test-node\"}} 0.0
# HELP kepler_exporter_bpf_entries_deleted_total Slots of exited processes freed after they were reported.
# TYPE kepler_exporter_bpf_entries_deleted_total counter
kepler_exporter_bpf_entries_deleted_total{{node_name=\"test-node\"}} 7.0
# HELP kepler_exporter_bpf_slices_unseen_total Context switches out of a thread whose switch in the eBPF program did not see: that slice of CPU time is lost.
# TYPE kepler_exporter_bpf_slices_unseen_total counter
kepler_exporter_bpf_slices_unseen_total{{node_name=\"test-node\"}} 2.0
# HELP kepler_exporter_bpf_reports_held_back_total Reads that found a process's CPU time below its previous report (a race between the caches read) and reported the previous value.
# TYPE kepler_exporter_bpf_reports_held_back_total counter
kepler_exporter_bpf_reports_held_back_total{{node_name=\"test-node\"}} 1.0
# HELP kepler_exporter_bpf_read_duration_seconds Time the latest read of the eBPF slots and frame build took.
# TYPE kepler_exporter_bpf_read_duration_seconds gauge
kepler_exporter_bpf_read_duration_seconds{{node_name=\"test-node\"}} 0.004
{kube_common}\
# HELP kepler_kube_poll_errors_total Failed kubelet pod list polls; the last known pods are kept.
# TYPE kepler_kube_poll_errors_total counter
kepler_kube_poll_errors_total{{node_name=\"test-node\"}} 2.0
# HELP kepler_kube_requests_total Requests to the kubelet or API server, by request and result.
# TYPE kepler_kube_requests_total counter
kepler_kube_requests_total{{node_name=\"test-node\",request=\"kubelet_pods\",result=\"ok\"}} 40.0
kepler_kube_requests_total{{node_name=\"test-node\",request=\"kubelet_pods\",result=\"error\"}} 2.0
# HELP kepler_kube_request_duration_seconds_total Time spent in requests to the kubelet or API server (to the response head).
# TYPE kepler_kube_request_duration_seconds_total counter
kepler_kube_request_duration_seconds_total{{node_name=\"test-node\",request=\"kubelet_pods\"}} 1.5
# HELP kepler_kube_last_request_duration_seconds Time the latest request to the kubelet or API server took.
# TYPE kepler_kube_last_request_duration_seconds gauge
kepler_kube_last_request_duration_seconds{{node_name=\"test-node\",request=\"kubelet_pods\"}} 0.25
"
    );
    assert_eq!(section(&stats), expected);

    // API-server mode: watch restarts by reason instead of poll errors, list and watch
    // requests; no eBPF source.
    stats.bpf = None;
    stats.kube = Some(KubeStats {
        mode: KubeMode::ApiServer {
            watch_errors: 3,
            relists: 1,
        },
        requests: vec![request("list", 2, 0), request("watch", 9, 3)],
        ..stats.kube.clone().unwrap()
    });
    let expected = format!(
        "{kube_common}\
# HELP kepler_kube_watch_restarts_total Pod watch restarts: after an error (then resumed), or with a full relist (410 Gone).
# TYPE kepler_kube_watch_restarts_total counter
kepler_kube_watch_restarts_total{{node_name=\"test-node\",reason=\"error\"}} 3.0
kepler_kube_watch_restarts_total{{node_name=\"test-node\",reason=\"relist\"}} 1.0
# HELP kepler_kube_requests_total Requests to the kubelet or API server, by request and result.
# TYPE kepler_kube_requests_total counter
kepler_kube_requests_total{{node_name=\"test-node\",request=\"list\",result=\"ok\"}} 2.0
kepler_kube_requests_total{{node_name=\"test-node\",request=\"list\",result=\"error\"}} 0.0
kepler_kube_requests_total{{node_name=\"test-node\",request=\"watch\",result=\"ok\"}} 9.0
kepler_kube_requests_total{{node_name=\"test-node\",request=\"watch\",result=\"error\"}} 3.0
# HELP kepler_kube_request_duration_seconds_total Time spent in requests to the kubelet or API server (to the response head).
# TYPE kepler_kube_request_duration_seconds_total counter
kepler_kube_request_duration_seconds_total{{node_name=\"test-node\",request=\"list\"}} 1.5
kepler_kube_request_duration_seconds_total{{node_name=\"test-node\",request=\"watch\"}} 1.5
# HELP kepler_kube_last_request_duration_seconds Time the latest request to the kubelet or API server took.
# TYPE kepler_kube_last_request_duration_seconds gauge
kepler_kube_last_request_duration_seconds{{node_name=\"test-node\",request=\"list\"}} 0.25
kepler_kube_last_request_duration_seconds{{node_name=\"test-node\",request=\"watch\"}} 0.25
"
    );
    assert_eq!(section(&stats), expected);
    // Without either component, none of these families.
    stats.kube = None;
    let e = Exposition::render(&snapshot(2), None, &context(MetricsLevel::all()), &stats);
    let t = String::from_utf8(e.text().to_vec()).unwrap();
    assert!(!t.contains("kepler_kube_") && !t.contains("kepler_exporter_bpf_"));
}
