//! kepler on a real one-node Kubernetes cluster (issue 15): `scripts/k8s-cluster.sh` brings up
//! etcd, a control plane and a kubelet built from Debian's kubernetes 1.20.2 source, containerd,
//! runc and a local bridge network; kepler's image (scripts/dist.sh's binary, eBPF source) is built here and
//! imported; `deploy/kubernetes/` is applied as a user would, with only the image swapped. A real
//! Prometheus (Debian) on the host finds kepler through `kubernetes_sd_configs` (role
//! `endpoints`, kepler's Service) and scrapes the pods it lists. Every assertion is a PromQL
//! answer from Prometheus's HTTP API, compared with what the API server and the kernel's cgroups
//! say.
//!
//! This test changes the host (cgroups, iptables, sysctls, a bridge): it runs only when asked.
//! `KEPLER_K8S_CLUSTER=1` runs it; `REQUIRE_K8S_CLUSTER=1` (CI) runs it and fails where a local
//! run would skip. Needs root, a Prometheus with Kubernetes discovery (Debian 13's, fetched by
//! `scripts/prometheus-k8s.sh`: Debian 12's is built without it), and the Kubernetes binaries that
//! `scripts/kube-build.sh` builds (about 11 minutes once, then cached).

mod support;
// Shared with kepler-k8s's deploy tests; this test uses only the query list.
#[allow(dead_code)]
#[path = "../../kepler-k8s/tests/support/dashboard.rs"]
mod dashboard;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::prometheus::{Prometheus, Series};

/// Prometheus scrape period: short enough to see a terminated pod within kepler's default TTL
/// (two 5 s ticks).
const SCRAPE_SECS: u64 = 2;
/// The window over which energy shares are compared with cgroup CPU shares.
const SHARE_WINDOW_SECS: u64 = 90;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn required() -> bool {
    std::env::var("REQUIRE_K8S_CLUSTER").as_deref() == Ok("1")
}

/// Whether to run: asked for, and what it needs is here. Panics where CI requires it.
fn should_run() -> bool {
    let asked = required() || std::env::var("KEPLER_K8S_CLUSTER").as_deref() == Ok("1");
    if !asked {
        eprintln!(
            "SKIPPED: starts a Kubernetes node on this machine; set KEPLER_K8S_CLUSTER=1 to run \
             (root, `prometheus`, scripts/kube-build.sh)"
        );
        return false;
    }
    let mut missing = Vec::new();
    if !support::is_root() {
        missing.push("root".to_string());
    }
    for tool in ["kubectl", "ctr"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            missing.push(format!("{tool} on PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("k8s cluster test needs {}", missing.join(", "));
    if required() {
        panic!("{why}, and REQUIRE_K8S_CLUSTER=1");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// A Debian-built Prometheus with Kubernetes service discovery (Debian 12's has none; see
/// scripts/prometheus-k8s.sh, which fetches Debian 13's once).
fn prometheus_k8s() -> String {
    let out = Command::new(repo().join("scripts/prometheus-k8s.sh"))
        .output()
        .expect("run scripts/prometheus-k8s.sh");
    assert!(
        out.status.success(),
        "scripts/prometheus-k8s.sh: {}",
        output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The Python that has Helm's engine (`KEPLER_HELM_PYTHON`, set by .ci/run); required with
/// `REQUIRE_K8S_CLUSTER=1`.
fn helm_python() -> Option<String> {
    match std::env::var("KEPLER_HELM_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if required() => panic!("KEPLER_HELM_PYTHON is not set, and REQUIRE_K8S_CLUSTER=1"),
        _ => {
            eprintln!("SKIPPED (chart phase): KEPLER_HELM_PYTHON is not set");
            None
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` every half second until it answers `Some`, or panics naming `what`.
fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The cluster under a temp dir; `down` on drop, whatever happened.
struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn script(args: &[&str]) -> Output {
        Command::new(repo().join("scripts/k8s-cluster.sh"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/k8s-cluster.sh")
    }

    fn up() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("kepler-k8s-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let started = Instant::now();
        let out = Self::script(&["up", &d]);
        // Built before the assertion so a failed start is still torn down.
        let cluster = Cluster {
            kubeconfig: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            dir,
        };
        assert!(
            out.status.success(),
            "k8s-cluster.sh up failed:\n{}",
            output_text(&out)
        );
        eprintln!("cluster up in {:.0?}", started.elapsed());
        let started = Instant::now();
        let out = Self::script(&["images", &d]);
        assert!(
            out.status.success(),
            "k8s-cluster.sh images failed:\n{}",
            output_text(&out)
        );
        eprintln!(
            "kepler image built and imported in {:.0?}",
            started.elapsed()
        );
        cluster
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(output_text(&out))
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args, None)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    fn apply(&self, yaml: &str) {
        self.try_kubectl(&["apply", "-f", "-"], Some(yaml))
            .unwrap_or_else(|e| panic!("kubectl apply: {e}\n---\n{yaml}"));
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    /// Deletes kepler's DaemonSet in `kepler` and waits for the object to go.
    fn delete_kepler_daemonset(&self) {
        self.kubectl(&[
            "-n",
            "kepler",
            "delete",
            "daemonset",
            "kepler",
            "--wait=true",
        ]);
    }

    /// `kubectl rollout status` of kepler's DaemonSet, up to 3 minutes.
    fn rollout_status(&self, namespace: &str) {
        self.kubectl(&[
            "-n",
            namespace,
            "rollout",
            "status",
            "daemonset/kepler",
            "--timeout=180s",
        ]);
    }

    /// Waits until every pod of `namespace` (matching `selector`) is Running and Ready; on a
    /// timeout, says what the pods were doing.
    fn wait_ready(&self, namespace: &str, selector: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pods = self.json(&["-n", namespace, "get", "pods", "-l", selector]);
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let ready = items.iter().filter(|p| is_ready(p)).count();
            if items.len() == count && ready == count {
                return items;
            }
            if Instant::now() > deadline {
                let states: Vec<String> = items
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {} {}",
                            p["metadata"]["name"], p["status"]["phase"], p["status"]["conditions"]
                        )
                    })
                    .collect();
                panic!(
                    "timed out waiting for {count} ready pods in {namespace} ({selector}):\n{}\n\
                     kubelet log:\n{}",
                    states.join("\n"),
                    self.log_tail("kubelet")
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// The node's address, as `up` recorded it.
    fn node_ip(&self) -> String {
        let env = fs::read_to_string(self.path("state/env")).unwrap();
        env.lines()
            .find_map(|l| l.strip_prefix("NODE_IP="))
            .expect("NODE_IP in state/env")
            .to_string()
    }

    /// The holder of the operator's Lease (identity `POD_PID`) once it is a pod of the
    /// operator's namespace and not `previous`, up to 90 s.
    fn operator_leader(&self, previous: Option<&str>) -> String {
        wait_until(
            "an operator replica holds the Lease",
            Duration::from_secs(90),
            || {
                let lease = self
                    .try_kubectl(
                        &[
                            "-n",
                            "kepler-operator",
                            "get",
                            "lease",
                            "kepler-operator-lock",
                            "-o",
                            "json",
                        ],
                        None,
                    )
                    .ok()?;
                let lease: Value = serde_json::from_str(&lease).ok()?;
                let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
                let pods = self.json(&["-n", "kepler-operator", "get", "pods"]);
                let running = pods["items"].as_array()?.iter().any(|p| {
                    p["metadata"]["name"].as_str() == Some(lease_pod(&holder))
                        && p["metadata"]["deletionTimestamp"].is_null()
                });
                (running && previous != Some(holder.as_str())).then_some(holder)
            },
        )
    }

    fn log_tail(&self, component: &str) -> String {
        let text =
            fs::read_to_string(self.path(&format!("logs/{component}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.dir.path().to_str().unwrap().to_string();
        let out = Self::script(&["down", &d]);
        if !out.status.success() {
            eprintln!("k8s-cluster.sh down failed:\n{}", output_text(&out));
        }
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .unwrap_or(false)
}

/// `deploy/kubernetes/` as a user applies it, with kepler's image swapped for the one built
/// here (never pulled). Objects of the Prometheus Operator's API are left out: that operator is
/// not installed, and its CRDs are not part of kepler's package.
fn deploy_manifests(daemonset_override: Option<&str>) -> String {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let text = match (daemonset_override, text.contains("kind: DaemonSet")) {
            (Some(alt), true) => fs::read_to_string(dir.join(alt)).unwrap(),
            _ => text,
        };
        for doc in text.split("\n---") {
            if doc.contains("apiVersion: monitoring.coreos.com/") {
                continue;
            }
            docs.push(swap_image(doc));
        }
    }
    docs.join("\n---\n")
}

fn swap_image(doc: &str) -> String {
    doc.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("image:") && trimmed.contains("kepler") {
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}image: kepler-rs/kepler:dev\n{indent}imagePullPolicy: Never")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pod of busybox containers, each `(name, shell script, CPU limit)`. The limit is the duty
/// (the CFS quota); the request is small so that every pod fits a 2-core node.
fn pod(namespace: &str, name: &str, containers: &[(&str, &str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
    );
    for (c, script, cpu) in containers {
        y.push_str(&format!(
            "  - name: {c}\n    image: kepler-rs/busybox:dev\n    imagePullPolicy: Never\n    \
             command: [sh, -c, {script:?}]\n    resources:\n      requests: {{cpu: 10m}}\n      limits: {{cpu: {cpu}}}\n"
        ));
    }
    y
}

const BURN: &str = "while :; do :; done";
/// About a hundred short-lived processes a second: ten background children (each a forked
/// shell running an applet) every ~0.1 s.
const STORM: &str = "while :; do for i in 0 1 2 3 4 5 6 7 8 9; do md5sum /bin/busybox >/dev/null & done; wait; usleep 80000; done";

fn workloads() -> String {
    let mut docs = vec![];
    for ns in ["energy-low", "energy-high", "energy-storm"] {
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
    }
    docs.push(pod("energy-low", "burn-20", &[("burner", BURN, "200m")]));
    docs.push(pod(
        "energy-high",
        "burn-60",
        &[("burner", BURN, "600m"), ("idler", "sleep 100000", "100m")],
    ));
    docs.push(pod("energy-storm", "storm", &[("spawner", STORM, "800m")]));
    docs.push(pod("energy-low", "doomed", &[("burner", BURN, "100m")]));
    docs.join("---\n")
}

/// A ServiceAccount for Prometheus with what `kubernetes_sd_configs` needs, and its token.
fn prometheus_identity(c: &Cluster) -> String {
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: prometheus\n  namespace: monitoring\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: prometheus-sd\n\
         rules:\n- apiGroups: [\"\"]\n  resources: [endpoints, services, pods]\n  verbs: [get, list, watch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: prometheus-sd\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: prometheus-sd}\n\
         subjects:\n- {kind: ServiceAccount, name: prometheus, namespace: monitoring}\n",
    );
    // 1.20 issues ServiceAccount tokens as Secrets, created by the controller manager.
    let secret = wait_until(
        "prometheus ServiceAccount token",
        Duration::from_secs(60),
        || {
            let sa = c.json(&["-n", "monitoring", "get", "serviceaccount", "prometheus"]);
            sa["secrets"][0]["name"].as_str().map(str::to_string)
        },
    );
    let s = c.json(&["-n", "monitoring", "get", "secret", &secret]);
    let b64 = s["data"]["token"].as_str().expect("token in secret");
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(b64.as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn prometheus_config(c: &Cluster, token_file: &Path) -> String {
    format!(
        "global:\n  scrape_interval: {SCRAPE_SECS}s\n  scrape_timeout: {SCRAPE_SECS}s\n  evaluation_interval: {SCRAPE_SECS}s\n\
         scrape_configs:\n\
         - job_name: kepler\n\
         \x20 kubernetes_sd_configs:\n\
         \x20 - role: endpoints\n\
         \x20   api_server: https://127.0.0.1:16443\n\
         \x20   tls_config: {{ca_file: {ca}}}\n\
         \x20   authorization: {{credentials_file: {token}}}\n\
         \x20   namespaces: {{names: [kepler, power-monitor]}}\n\
         \x20 relabel_configs:\n\
         \x20 - source_labels: [__meta_kubernetes_service_name, __meta_kubernetes_endpoint_port_name]\n\
         \x20   regex: (kepler|power-monitor);http\n\
         \x20   action: keep\n\
         \x20 # One series per node across pod restarts, as the ServiceMonitor does.\n\
         \x20 - source_labels: [__meta_kubernetes_pod_node_name]\n\
         \x20   target_label: instance\n",
        ca = c.path("pki/ca.crt").display(),
        token = token_file.display(),
    )
}

/// `(labels...) -> value` of an instant query, keyed by the given label values.
fn by_labels(series: &[Series], keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    series
        .iter()
        .map(|s| {
            let k = keys
                .iter()
                .map(|k| s.labels.get(*k).cloned().unwrap_or_default())
                .collect();
            (k, s.points.last().map(|p| p.1).unwrap_or(f64::NAN))
        })
        .collect()
}

/// Busy CPU time of the whole machine, in seconds, from /proc/stat.
fn node_busy_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let cpu = stat.lines().next().unwrap();
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal
    (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100.0
}

/// CPU time of a container's cgroup (cgroup v1 cpuacct, where the kubelet's cgroupfs driver
/// puts `kubepods/<qos>/pod<uid>/<container id>`), in seconds.
fn container_cpu_seconds(container_id: &str) -> f64 {
    fn find(dir: &Path, leaf: &str) -> Option<PathBuf> {
        for e in fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if e.file_name() == leaf {
                return Some(p);
            }
            if let Some(found) = find(&p, leaf) {
                return Some(found);
            }
        }
        None
    }
    let root = Path::new("/sys/fs/cgroup/cpuacct/kubepods");
    let dir = find(root, container_id)
        .unwrap_or_else(|| panic!("no cpuacct cgroup for container {container_id}"));
    let ns: f64 = fs::read_to_string(dir.join("cpuacct.usage"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ns / 1e9
}

/// A pod as the API server has it: `(namespace, name, uid, [(container name, container id)])`.
type ApiPod = (String, String, String, Vec<(String, String)>);

/// The API's pods in the given namespaces.
fn api_pods(c: &Cluster, namespaces: &[&str]) -> Vec<ApiPod> {
    let mut out = Vec::new();
    for ns in namespaces {
        for p in c.json(&["-n", ns, "get", "pods"])["items"]
            .as_array()
            .unwrap()
        {
            let containers = p["status"]["containerStatuses"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|s| {
                            let id = s["containerID"].as_str()?;
                            let id = id.rsplit("://").next().unwrap().to_string();
                            Some((s["name"].as_str().unwrap().to_string(), id))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                ns.to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
                containers,
            ));
        }
    }
    out
}

/// Waits until `query` answers with at least one series.
fn wait_for_series(prom: &Prometheus, what: &str, within: Duration, query: &str) {
    wait_until(what, within, || {
        (!prom.query(query, unix_now()).is_empty()).then_some(())
    });
}

/// The zone kepler's node series report first by name (e.g. `package`), for per-zone queries.
fn pick_zone(prom: &Prometheus) -> String {
    let zones: BTreeSet<String> = prom
        .query("group by (zone) (kepler_node_cpu_joules_total)", unix_now())
        .iter()
        .filter_map(|s| s.labels.get("zone").cloned())
        .collect();
    assert!(!zones.is_empty(), "kepler reports no CPU zone");
    if zones.contains("package") {
        "package".into()
    } else {
        zones.into_iter().next().unwrap()
    }
}

#[test]
fn kepler_daemonset_on_a_real_node_pods_energy_in_prometheus_issue_15() {
    if !should_run() {
        return;
    }
    let cluster = Cluster::up();
    let c = &cluster;
    let test_started = Instant::now();

    // kepler as deploy/kubernetes/ installs it (kubelet pod metadata, high privilege).
    c.apply(&deploy_manifests(None));
    let kepler_pods = c.wait_ready("kepler", "app.kubernetes.io/name=kepler", 1);
    eprintln!("kepler Ready {:.0?} after apply", test_started.elapsed());
    let kepler_ip = kepler_pods[0]["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();

    c.apply(&workloads());
    for ns in ["energy-low", "energy-high", "energy-storm"] {
        let n = if ns == "energy-low" { 2 } else { 1 };
        c.wait_ready(ns, "", n);
    }

    let token = prometheus_identity(c);
    let token_file = c.path("prometheus.token");
    fs::write(&token_file, token.trim()).unwrap();
    let mut prom = Prometheus::start_binary(&prometheus_k8s(), &prometheus_config(c, &token_file));
    prom.wait_target_up(Duration::from_secs(60));
    let targets = support::scrape(prom.port, "/api/v1/targets?state=active").unwrap();
    assert!(
        targets.contains(&format!("{kepler_ip}:28282")),
        "Prometheus scrapes the kepler pod's address, found through the Service's endpoints: {targets}"
    );

    // Pod metadata arrives with the kubelet's /pods (every 15 s in the deploy config).
    wait_for_series(
        &prom,
        "pod names in Prometheus",
        Duration::from_secs(90),
        "kepler_pod_cpu_joules_total{pod_name=\"burn-60\",pod_namespace=\"energy-high\"}",
    );

    // The eBPF source, from the committed prebuilt object, in the DaemonSet's capabilities.
    let attached = prom.scalar("max(kepler_exporter_bpf_programs_attached)", unix_now());
    assert_eq!(attached, 3.0, "kepler in the pod uses the eBPF source");
    // Issue 21: the image ships scripts/dist.sh's binary, eBPF compiled in, and `auto` (the
    // ConfigMap's activity.source) picked eBPF: the activity source in use is the `source`
    // label of kepler_exporter_activity_errors_total.
    let built = by_labels(&prom.query("kepler_build_info", unix_now()), &["bpf"]);
    assert_eq!(
        built.keys().collect::<Vec<_>>(),
        [&vec!["true".to_string()]],
        "the image's kepler has the eBPF source compiled in: {built:?}"
    );
    let sources = by_labels(
        &prom.query("kepler_exporter_activity_errors_total", unix_now()),
        &["source"],
    );
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        [&vec!["bpf".to_string()]],
        "the pod's kepler reads activity from eBPF: {sources:?}"
    );

    // Names: every pod and container as the API server has them.
    let namespaces = ["energy-low", "energy-high", "energy-storm", "kepler"];
    let pods = api_pods(c, &namespaces);
    let now = unix_now();
    let seen_pods = by_labels(
        &prom.query(
            "group by (pod_id, pod_name, pod_namespace) (kepler_pod_cpu_joules_total)",
            now,
        ),
        &["pod_id", "pod_name", "pod_namespace"],
    );
    let seen_containers = by_labels(
        &prom.query(
            "group by (container_id, container_name, pod_id) (kepler_container_cpu_joules_total)",
            now,
        ),
        &["container_id", "container_name", "pod_id"],
    );
    for (ns, name, uid, containers) in &pods {
        assert!(
            seen_pods.contains_key(&vec![uid.clone(), name.clone(), ns.clone()]),
            "pod {ns}/{name} ({uid}) not in kepler's pod series: {seen_pods:?}"
        );
        for (cname, cid) in containers {
            assert!(
                seen_containers.contains_key(&vec![cid.clone(), cname.clone(), uid.clone()]),
                "container {cname} ({cid}) of {ns}/{name} not in kepler's container series: \
                 {seen_containers:?}"
            );
        }
    }

    // In kubelet mode, kepler sends nothing to the API server.
    let requests = by_labels(
        &prom.query("sum by (request) (kepler_kube_requests_total)", unix_now()),
        &["request"],
    );
    assert!(
        requests
            .get(&vec!["kubelet_pods".to_string()])
            .copied()
            .unwrap_or(0.0)
            > 0.0,
        "kepler polled the kubelet: {requests:?}"
    );
    for r in ["list", "watch"] {
        assert_eq!(
            requests.get(&vec![r.to_string()]).copied().unwrap_or(0.0),
            0.0,
            "API server {r} requests in kubelet mode: {requests:?}"
        );
    }

    // A deleted pod: state="terminated", then gone after the TTL. Prometheus keeps what it
    // scraped, so the terminated samples are looked for over the whole time since the delete
    // (the TTL is two 5 s ticks; the API server may confirm the delete later than that).
    let delete_started = unix_now();
    let deleted_at = Instant::now();
    c.kubectl(&["-n", "energy-low", "delete", "pod", "doomed", "--wait=true"]);
    let doomed = "kepler_pod_cpu_joules_total{pod_name=\"doomed\",pod_namespace=\"energy-low\"}";
    let terminated_seen = wait_until(
        "doomed pod exported as terminated",
        Duration::from_secs(60),
        || {
            let now = unix_now();
            prom.query_range(doomed, delete_started - 5.0, now, 1.0)
                .into_iter()
                .find(|s| s.labels.get("state").map(String::as_str) == Some("terminated"))
                .map(|s| s.points[0].0 - delete_started)
        },
    );
    wait_until(
        "doomed pod gone from the exposition",
        Duration::from_secs(90),
        || prom.query(doomed, unix_now()).is_empty().then_some(()),
    );
    let terminated_after = Duration::from_secs_f64(terminated_seen.max(0.0));
    eprintln!(
        "deleted pod: terminated after {terminated_after:.0?}, gone after {:.0?}",
        deleted_at.elapsed()
    );

    // Shares: each container's share of node active energy against its cgroup's share of busy
    // CPU time, over the same window.
    let zone = pick_zone(&prom);
    let tracked: Vec<(String, String)> =
        api_pods(c, &["energy-low", "energy-high", "energy-storm"])
            .into_iter()
            .flat_map(|(ns, pod, _, cs)| {
                cs.into_iter()
                    .map(move |(cn, id)| (format!("{ns}/{pod}/{cn}"), id))
            })
            .collect();
    let cpu0: Vec<f64> = tracked
        .iter()
        .map(|(_, id)| container_cpu_seconds(id))
        .collect();
    let busy0 = node_busy_seconds();
    let t0 = unix_now();
    thread::sleep(Duration::from_secs(SHARE_WINDOW_SECS));
    let cpu1: Vec<f64> = tracked
        .iter()
        .map(|(_, id)| container_cpu_seconds(id))
        .collect();
    let busy1 = node_busy_seconds();
    let t1 = unix_now();
    // Let the last tick of the window reach Prometheus before asking.
    thread::sleep(Duration::from_secs(7));
    let window = format!("{}s", (t1 - t0).round() as u64);
    let at = t1 + 5.0;
    let node_active = prom.scalar(
        &format!("sum(increase(kepler_node_cpu_active_joules_total{{zone=\"{zone}\"}}[{window}]))"),
        at,
    );
    let energy = by_labels(
        &prom.query(
            &format!(
                "sum by (container_id) (increase(kepler_container_cpu_joules_total{{zone=\"{zone}\"}}[{window}]))"
            ),
            at,
        ),
        &["container_id"],
    );
    let mut report = String::new();
    for (i, (name, id)) in tracked.iter().enumerate() {
        let cpu_share = (cpu1[i] - cpu0[i]) / (busy1 - busy0);
        let energy_share = energy.get(&vec![id.clone()]).copied().unwrap_or(0.0) / node_active;
        report.push_str(&format!(
            "{name}: cpu {:.2}% energy {:.2}%\n",
            cpu_share * 100.0,
            energy_share * 100.0
        ));
        assert!(
            (energy_share - cpu_share).abs() <= 0.02,
            "{name}: energy share {:.2}% vs cgroup CPU share {:.2}% (over {window}, zone {zone})\n{report}",
            energy_share * 100.0,
            cpu_share * 100.0
        );
    }
    eprintln!("shares over {window} (zone {zone}):\n{report}");

    // Energy by namespace orders as the duty (20% < 60%).
    let by_ns = by_labels(
        &prom.query(
            &format!(
                "sum by (pod_namespace) (increase(kepler_pod_cpu_joules_total{{zone=\"{zone}\"}}[{window}]))"
            ),
            at,
        ),
        &["pod_namespace"],
    );
    let low = by_ns[&vec!["energy-low".to_string()]];
    let high = by_ns[&vec!["energy-high".to_string()]];
    assert!(
        high > 2.0 * low && low > 0.0,
        "energy by namespace follows duty (60% vs 20%): high {high} J, low {low} J"
    );

    // Every dashboard panel's query answers here (see deploy/grafana).
    check_dashboard_queries(&prom);

    // A rollout of the DaemonSet is one counter reset, not more.
    let before_rollout = unix_now();
    c.kubectl(&["-n", "kepler", "rollout", "restart", "daemonset/kepler"]);
    c.rollout_status("kepler");
    wait_until(
        "the new kepler pod scraped",
        Duration::from_secs(60),
        || {
            // The new pod's tick counter started after the rollout began.
            let ticks = prom.query("max(kepler_exporter_ticks_total)", unix_now());
            let fresh = ticks
                .first()
                .is_some_and(|s| s.points[0].1 < (unix_now() - before_rollout) / 5.0 + 2.0);
            fresh.then_some(())
        },
    );
    thread::sleep(Duration::from_secs(3 * SCRAPE_SECS));
    let span = (unix_now() - before_rollout + 30.0).round() as u64;
    let resets = prom.scalar(
        &format!("sum(resets(kepler_node_cpu_joules_total{{zone=\"{zone}\"}}[{span}s]))"),
        unix_now(),
    );
    assert_eq!(resets, 1.0, "a DaemonSet rollout is one counter reset");

    // The low-privilege DaemonSet: procfs source, non-root, no added capabilities, same names.
    c.delete_kepler_daemonset();
    wait_until("old kepler pods gone", Duration::from_secs(90), || {
        let pods = c.json(&["-n", "kepler", "get", "pods"]);
        pods["items"].as_array()?.is_empty().then_some(())
    });
    let switched_at = unix_now();
    c.apply(&deploy_manifests(Some(
        "alternatives/daemonset-low-privilege.yaml",
    )));
    let low_pods = c.wait_ready("kepler", "app.kubernetes.io/name=kepler", 1);
    let sc = &low_pods[0]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["runAsUser"], 65534, "{sc}");
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert!(
        sc["capabilities"]["add"].is_null(),
        "no added capabilities: {sc}"
    );
    assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{sc}");
    wait_for_series(
        &prom,
        "low-privilege kepler's pod names",
        Duration::from_secs(90),
        &format!(
            "kepler_pod_cpu_joules_total{{pod_name=\"burn-60\",pod_namespace=\"energy-high\"}} \
             and (timestamp(kepler_pod_cpu_joules_total) > {switched_at:.0})"
        ),
    );
    let bpf = prom.query("kepler_exporter_bpf_programs_attached", unix_now());
    assert!(
        bpf.is_empty() || bpf.iter().all(|s| s.points[0].1 == 0.0),
        "the low-privilege pod cannot load eBPF: procfs source expected, got {bpf:?}"
    );
    // Issue 21: the same image, without CAP_BPF/CAP_PERFMON, falls back to procfs (`auto`).
    let sources = by_labels(
        &prom.query(
            &format!(
                "kepler_exporter_activity_errors_total \
                 and (timestamp(kepler_exporter_activity_errors_total) > {switched_at:.0})"
            ),
            unix_now(),
        ),
        &["source"],
    );
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        [&vec!["procfs".to_string()]],
        "the low-privilege pod's activity source: {sources:?}"
    );
    let pods = api_pods(c, &["energy-high"]);
    let seen = by_labels(
        &prom.query(
            &format!("group by (pod_id, pod_name, pod_namespace) (kepler_pod_cpu_joules_total and (timestamp(kepler_pod_cpu_joules_total) > {switched_at:.0}))"),
            unix_now(),
        ),
        &["pod_id", "pod_name", "pod_namespace"],
    );
    for (ns, name, uid, _) in &pods {
        assert!(
            seen.contains_key(&vec![uid.clone(), name.clone(), ns.clone()]),
            "low-privilege kepler: pod {ns}/{name} missing: {seen:?}\nkubelet log:\n{}",
            c.log_tail("kubelet")
        );
    }
    // The Helm chart, rendered by Helm's own engine, applied over the plain objects.
    if let Some(python) = helm_python() {
        let values = r#"{"image":{"repository":"kepler-rs/kepler","tag":"dev","pullPolicy":"Never"},"serviceMonitor":{"enabled":false},"prometheusRule":{"enabled":false}}"#;
        let out = Command::new(python)
            .arg(repo().join("scripts/helm-template.py"))
            .args([
                repo().join("deploy/helm/kepler").to_str().unwrap(),
                "kepler",
                "kepler",
                values,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "helm template: {}", output_text(&out));
        let rendered = String::from_utf8(out.stdout).unwrap();
        // The chart's selector adds the release (`app.kubernetes.io/instance`), and a
        // DaemonSet's selector is immutable: going from the plain manifests to the chart
        // replaces the DaemonSet, as `helm install` after `kubectl delete` would.
        c.delete_kepler_daemonset();
        let charted_at = unix_now();
        c.try_kubectl(&["-n", "kepler", "apply", "-f", "-"], Some(&rendered))
            .unwrap_or_else(|e| panic!("applying the rendered chart: {e}"));
        c.rollout_status("kepler");
        wait_for_series(&prom, "the chart's kepler on eBPF, scraped", Duration::from_secs(90), &format!("kepler_exporter_bpf_programs_attached == 3 and (timestamp(kepler_exporter_bpf_programs_attached) > {charted_at:.0})"));
    }
    operator_installs_and_removes_kepler(c, &prom);
    eprintln!(
        "k8s cluster e2e: {:.0?} after the cluster was up",
        test_started.elapsed()
    );
}

/// The operator (issue 16) inside the cluster, installed as an administrator installs it:
/// `deploy/operator/` (CRD, RBAC, a two-replica Deployment with leader election) with the
/// operator's image built here. One PowerMonitor -> kepler's DaemonSet in `power-monitor`, its
/// pods Ready and scraped (pod energy in Prometheus), `Available=True`; the leader's pod deleted
/// -> the other replica takes the Lease and rolls a config change; the PowerMonitor deleted ->
/// its objects gone. The kepler objects of the earlier phases are removed first.
fn operator_installs_and_removes_kepler(c: &Cluster, prom: &Prometheus) {
    c.kubectl(&[
        "delete",
        "namespace",
        "kepler",
        "--wait=true",
        "--timeout=120s",
    ]);
    let deploy = repo().join("deploy/operator");
    c.kubectl(&["apply", "-f", deploy.join("crd.yaml").to_str().unwrap()]);
    c.apply(&fs::read_to_string(deploy.join("rbac.yaml")).unwrap());
    let started = Instant::now();
    c.apply(&operator_deployment(
        &fs::read_to_string(deploy.join("deployment.yaml")).unwrap(),
        &c.node_ip(),
    ));
    c.wait_ready(
        "kepler-operator",
        "app.kubernetes.io/name=kepler-operator",
        2,
    );
    let leader = c.operator_leader(None);
    eprintln!(
        "operator: 2 replicas Ready, {leader} leads, {:.0?} after apply",
        started.elapsed()
    );
    let created = Instant::now();
    c.apply(&fs::read_to_string(deploy.join("powermonitor.yaml")).unwrap());
    let pods = c.wait_ready("power-monitor", "", 1);
    eprintln!(
        "operator: PowerMonitor -> kepler pod Ready in {:.0?}",
        created.elapsed()
    );
    assert_eq!(
        pods[0]["spec"]["containers"][0]["image"], "kepler-rs/kepler:dev",
        "the operator's --kepler.image"
    );
    let since = unix_now();
    wait_for_series(prom, "the operator's kepler scraped with pod names", Duration::from_secs(90), &format!("kepler_pod_cpu_joules_total{{pod_name=\"burn-60\",pod_namespace=\"energy-high\"}} and (timestamp(kepler_pod_cpu_joules_total) > {since:.0})"));
    wait_until(
        "PowerMonitor Available=True",
        Duration::from_secs(60),
        || {
            let pm = c.json(&["get", "powermonitor", "power-monitor"]);
            pm["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|k| k["type"] == "Available" && k["status"] == "True")
                .then_some(())
        },
    );

    // Failover: the leader's pod goes; the other replica takes the Lease and reconciles a
    // change made after the hand-over (a new config hash on kepler's pod template).
    let hash = |c: &Cluster| {
        let ds = c.json(&["-n", "power-monitor", "get", "daemonset", "power-monitor"]);
        ds["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let before = hash(c);
    assert!(!before.is_empty(), "kepler's DaemonSet has no config hash");
    let failover = Instant::now();
    c.kubectl(&[
        "-n",
        "kepler-operator",
        "delete",
        "pod",
        lease_pod(&leader),
        "--wait=false",
    ]);
    // The change only once the old leader's pod is gone and another holds the Lease, so that
    // the roll below can only be the successor's work.
    let successor = c.operator_leader(Some(&leader));
    wait_until("the old leader's pod gone", Duration::from_secs(90), || {
        c.try_kubectl(
            &["-n", "kepler-operator", "get", "pod", lease_pod(&leader)],
            None,
        )
        .is_err()
        .then_some(())
    });
    c.kubectl(&[
        "patch",
        "powermonitor",
        "power-monitor",
        "--type=merge",
        "-p",
        r#"{"spec":{"kepler":{"config":{"logLevel":"debug"}}}}"#,
    ]);

    wait_until(
        "the new leader rolls kepler's config",
        Duration::from_secs(120),
        || (hash(c) != before).then_some(()),
    );
    eprintln!(
        "operator: leader pod deleted -> {successor} leads and rolled the change in {:.0?}",
        failover.elapsed()
    );

    c.kubectl(&[
        "delete",
        "powermonitor",
        "power-monitor",
        "--wait=true",
        "--timeout=120s",
    ]);
    wait_until(
        "the operator's objects gone",
        Duration::from_secs(120),
        || {
            let gone = c
                .try_kubectl(&["get", "namespace", "power-monitor"], None)
                .is_err()
                && c.try_kubectl(&["get", "clusterrole", "power-monitor"], None)
                    .is_err();
            gone.then_some(())
        },
    );
    c.kubectl(&[
        "delete",
        "namespace",
        "kepler-operator",
        "--wait=true",
        "--timeout=120s",
    ]);
}

/// The pod of a Lease holder identity (`POD_PID`, as the operator writes it).
fn lease_pod(holder: &str) -> &str {
    holder.rsplit_once('_').map_or(holder, |(pod, _)| pod)
}

/// The operator's pod template annotation whose change rolls kepler's pods.
const CONFIG_HASH_ANNOTATION: &str = "kepler.system.sustainable.computing.io/config-hash";

/// `deploy/operator/deployment.yaml` with the images built here (never pulled), kepler's image
/// for the operator to deploy, and the API server's address: this cluster runs no kube-proxy, so
/// the `kubernetes` Service address is not routed and in-cluster clients are pointed at the node
/// address the API server's certificate names (explicit env overrides the kubelet's service
/// variables).
fn operator_deployment(yaml: &str, node_ip: &str) -> String {
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "deployment.yaml has no {from:?}");
        text.replacen(from, to, 1)
    };
    let out = replace(
        yaml.to_string(),
        "image: ghcr.io/kepler-rs/kepler-operator:0.1.0",
        "image: kepler-rs/kepler-operator:dev",
    );
    let out = replace(
        out,
        "imagePullPolicy: IfNotPresent",
        "imagePullPolicy: Never",
    );
    let out = replace(
        out,
        "--kepler.image=ghcr.io/kepler-rs/kepler:0.1.0",
        "--kepler.image=kepler-rs/kepler:dev",
    );
    replace(
        out,
        "          env:\n",
        &format!(
            "          env:\n            - name: KUBERNETES_SERVICE_HOST\n              value: \"{node_ip}\"\n            - name: KUBERNETES_SERVICE_PORT\n              value: \"16443\"\n"
        ),
    )
}

/// Runs every panel query of the Grafana dashboard (its variables filled in as
/// `kepler-k8s/tests/support/dashboard.rs` does) against the live Prometheus: each answers with
/// data whose legend labels are set, except panels on hardware this node lacks (GPU, BMC).
fn check_dashboard_queries(prom: &Prometheus) {
    let mut failures = Vec::new();
    let now = unix_now();
    let mut ran = 0;
    for q in dashboard::dashboard_queries() {
        if q.expr.contains("_gpu_") || q.expr.contains("kepler_platform_") {
            continue;
        }
        ran += 1;
        let r = prom.query(&q.expr, now);
        if r.is_empty() {
            failures.push(format!("{} ({}): no data: {}", q.panel, q.ref_id, q.expr));
        }
        for s in &r {
            for l in &q.legend_labels {
                if s.labels.get(l).is_none_or(|v| v.is_empty()) {
                    failures.push(format!(
                        "{} ({}): series without {l}: {:?}",
                        q.panel, q.ref_id, s.labels
                    ));
                }
            }
        }
    }
    assert!(ran >= 8, "only {ran} dashboard queries ran");
    assert!(
        failures.is_empty(),
        "dashboard queries:\n{}",
        failures.join("\n")
    );
}
