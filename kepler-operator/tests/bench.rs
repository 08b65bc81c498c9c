//! Numbers for BENCHMARKS.md (issue 16), not a pass/fail test: ignored by default.
//! `cargo test -p kepler-operator --release --test bench -- --ignored --nocapture`
//! Real kube-apiserver 1.20.2 + etcd on loopback; the operator binary as a child process.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kepler_operator::{PowerMonitor, NAME};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "power-monitor";

/// (resident KiB, peak resident KiB, CPU seconds) of a process, from /proc.
fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the ") ".
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (kib("VmRSS:"), kib("VmHWM:"), ticks as f64 / 100.0)
}

fn pm() -> PowerMonitor {
    serde_json::from_value(json!({
        "apiVersion": "kepler.system.sustainable.computing.io/v1alpha1",
        "kind": "PowerMonitor", "metadata": {"name": "power-monitor"}, "spec": {}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn operator_numbers() {
    let Some((cluster, client)) = cluster_with_crd().await else {
        return;
    };
    let op = Operator::start(
        &cluster,
        "bench",
        &["--leader-elect", "--leader-election-namespace", "default"],
    );
    let pid = op.child.id();
    let pms = pm_api(&client);
    let dss = Api::<DaemonSet>::namespaced(client.clone(), NS);

    // 1. CR created -> DaemonSet exists (polled every 2 ms), 10 times.
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        pms.create(&PostParams::default(), &pm()).await.unwrap();
        while dss.get_opt(NAME).await.ok().flatten().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no DaemonSet after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(t.elapsed());
        delete_power_monitor(&client).await;
        // The namespace stays Terminating here (no namespace controller): drop it from etcd's
        // view by finalizing it, as the namespace controller would.
        let req = http::Request::put(format!("/api/v1/namespaces/{NS}/finalize"))
            .header("content-type", "application/json")
            .body(
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS}, "spec": {"finalizers": []}}))
                .unwrap(),
            )
            .unwrap();
        client.request_text(req).await.unwrap();
        until(30, "namespace gone", || async {
            Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                .get_opt(NS)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    }
    latencies.sort();
    println!(
        "CR -> DaemonSet created: median {:?}, min {:?}, max {:?} (n=10)",
        latencies[5], latencies[0], latencies[9]
    );

    // 2. Idle with one PowerMonitor deployed: RSS and CPU over 60 s; API requests per minute.
    pms.create(&PostParams::default(), &pm()).await.unwrap();
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = [
        "GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "APPLY", "DELETE",
    ];
    let mut resources = OPERATOR_RESOURCES.to_vec();
    resources.push("leases");
    let (req0, writes0, lease0) = (
        api_requests(&client, &all, &resources).await,
        api_requests(&client, WRITES, OPERATOR_RESOURCES).await,
        api_requests(&client, &all, &["leases"]).await,
    );
    let (_, _, cpu0) = usage(pid);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (rss, _, cpu1) = usage(pid);
    let (req1, writes1, lease1) = (
        api_requests(&client, &all, &resources).await,
        api_requests(&client, WRITES, OPERATOR_RESOURCES).await,
        api_requests(&client, &all, &["leases"]).await,
    );
    println!(
        "idle 60 s: RSS {rss} KiB, CPU {:.2} s ({:.3}% of a core)",
        cpu1 - cpu0,
        (cpu1 - cpu0) / 60.0 * 100.0
    );
    println!(
        "steady-state minute: {} API requests ({} of them lease get/renew), {} writes to reconciled objects",
        req1 - req0,
        lease1 - lease0,
        writes1 - writes0
    );

    // 3. A storm: 100 config changes as fast as the API server takes them.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let (_, _, cpu0) = usage(pid);
    let t = Instant::now();
    for i in 0..100 {
        pms.patch(
            "power-monitor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"kepler": {"config": {"maxTerminated": 1000 + i}}}})),
        )
        .await
        .unwrap();
    }
    until(60, "last change applied", || async {
        let cm = cms.get_opt(NAME).await.ok()??;
        cm.data?["config.yaml"]
            .contains("maxTerminated: 1099")
            .then_some(())
    })
    .await;
    let elapsed = t.elapsed();
    let (rss, hwm, cpu1) = usage(pid);
    println!(
        "100 config changes: converged {elapsed:?} after the first patch; CPU {:.2} s; RSS {rss} KiB, peak {hwm} KiB",
        cpu1 - cpu0
    );
}
