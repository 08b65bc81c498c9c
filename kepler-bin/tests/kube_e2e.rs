//! The real `kepler` binary with `kube.enabled` in `apiserver` mode against a real
//! kube-apiserver (Debian's kubernetes 1.20.2 source, built by `scripts/kube-apiserver.sh`)
//! and Debian's etcd: pod and container series carry the names the API server knows.
//! Skips when they are not available; fails instead when REQUIRE_K8S=1 (issue 8).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{free_port, parse_exposition, scrape, value, Kepler, KillOnDrop};

const TOKEN: &str = "kepler-e2e-token";
const NODE: &str = "node-e2e";
const CID: &str = "7c1f0e2d3b4a59687c1f0e2d3b4a59687c1f0e2d3b4a59687c1f0e2d3b4a5968";

fn required() -> bool {
    ["REQUIRE_K8S", "REQUIRE_KUBE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn apiserver_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBE_APISERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("KEPLER_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kepler-rs")))?;
    Some(cache.join("kube-apiserver-1.20.2")).filter(|p| p.is_file())
}

/// `curl` against the API server with the test token; the JSON answer.
fn api(port: u16, ca: &Path, method: &str, path: &str, body: Option<(&str, &str)>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-X",
            method,
        ]);
    if let Some((content_type, data)) = body {
        cmd.args([
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data",
            data,
        ]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{method} {path}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn stat_line(pid: u32, comm: &str, utime: u64) -> String {
    format!(
        "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} 0 0 0 20 0 1 0 5000 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
    )
}

fn node_stat(busy: u64) -> String {
    format!(
        "cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {busy} 0 0 {idle} 0 0 0 0 0 0\nintr 1 0\nctxt 1\nbtime 1700000000\n",
        idle = 100_000 - busy
    )
}

#[test]
fn kepler_exports_pod_names_from_a_real_api_server_issue_8() {
    let skip = |why: &str| {
        if required() {
            panic!("REQUIRE_K8S=1 but: {why}");
        }
        eprintln!("SKIPPED: {why} (run scripts/kube-apiserver.sh)");
    };
    let Some(bin) = apiserver_binary() else {
        return skip("no kube-apiserver at ~/.cache/kepler-rs/kube-apiserver-1.20.2");
    };
    let (Some(etcd), Some(_)) = (which("etcd"), which("curl")) else {
        return skip("etcd (etcd-server) or curl missing");
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("tokens.csv"),
        format!("{TOKEN},e2e,e2e,system:masters\n"),
    )
    .unwrap();
    let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
    let _etcd = KillOnDrop(
        Command::new(etcd)
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let key = d.join("certs/apiserver.key");
    let _apiserver = KillOnDrop(
        Command::new(bin)
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .args([
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
            ])
            .arg(format!("--service-account-key-file={}", key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                key.display()
            ))
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("apiserver.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // The CA is the second certificate of the generated serving bundle.
    let ca = d.join("ca.crt");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(pem) = fs::read_to_string(d.join("certs/apiserver.crt")) {
            if let Some(last) = pem.split_inclusive("-----END CERTIFICATE-----\n").last() {
                fs::write(&ca, last).unwrap();
                let ready = Command::new("curl")
                    .args(["-sf", "-o", "/dev/null", "--cacert"])
                    .arg(&ca)
                    .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
                    .arg(format!(
                        "https://127.0.0.1:{port}/api/v1/namespaces/default"
                    ))
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "kube-apiserver not ready:\n{}",
            fs::read_to_string(d.join("apiserver.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A pod bound to this node, its container running with CID (what a kubelet would report).
    let pod = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"web-0","namespace":"default"}},
        "spec":{{"nodeName":"{NODE}","containers":[{{"name":"nginx","image":"registry.invalid/nginx:1"}}]}}}}"#
    );
    let created = api(
        port,
        &ca,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(("application/json", &pod)),
    );
    let uid = created
        .split("\"uid\": \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no uid in {created}"))
        .to_string();
    let status = format!(
        r#"{{"status":{{"phase":"Running","containerStatuses":[{{"name":"nginx","containerID":"containerd://{CID}",
        "ready":true,"restartCount":0,"image":"registry.invalid/nginx:1","imageID":"","state":{{"running":{{}}}}}}]}}}}"#
    );
    api(
        port,
        &ca,
        "PATCH",
        "/api/v1/namespaces/default/pods/web-0/status",
        Some(("application/merge-patch+json", &status)),
    );

    // A node with one process in that container (systemd cgroup driver, containerd).
    let proc_root = d.join("proc");
    let pid_dir = proc_root.join("4242");
    fs::create_dir_all(&pid_dir).unwrap();
    fs::write(proc_root.join("stat"), node_stat(0)).unwrap();
    fs::write(pid_dir.join("stat"), stat_line(4242, "nginx", 0)).unwrap();
    fs::write(pid_dir.join("comm"), "nginx\n").unwrap();
    fs::write(pid_dir.join("cmdline"), b"nginx\0").unwrap();
    fs::write(
        pid_dir.join("cgroup"),
        format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{CID}.scope\n",
            uid.replace('-', "_")
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (stop, proc_root) = (Arc::clone(&stop), proc_root.clone());
        std::thread::spawn(move || {
            let mut t = 0u64;
            while !stop.load(Ordering::Relaxed) {
                t += 5;
                fs::write(proc_root.join("4242/stat"), stat_line(4242, "nginx", t)).unwrap();
                fs::write(proc_root.join("stat"), node_stat(2 * t)).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let kubeconfig = d.join("kubeconfig");
    fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\n\
             users:\n- name: u\n  user:\n    token: {TOKEN}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            ca.display()
        ),
    )
    .unwrap();
    let config = d.join("kepler.yaml");
    fs::write(
        &config,
        format!(
            "kube:\n  enabled: true\n  config: {}\n  nodeName: {NODE}\n  podInformer:\n    mode: apiserver\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    fs::create_dir_all(d.join("sys")).unwrap();
    let kepler = Kepler::start(&[
        &format!("--config.file={}", config.display()),
        &format!("--host.procfs={}", proc_root.display()),
        &format!("--host.sysfs={}", d.join("sys").display()),
        "--cpu.preferred-meters=model",
        "--monitor.interval=200ms",
    ]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = scrape(kepler.port(), "/metrics").unwrap_or_default();
        if body.contains("pod_name=\"web-0\"") && body.contains("container_name=\"nginx\"") {
            break body;
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            panic!("no pod names after 30 s:\n{body}\n{}", kepler.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    ticker.join().unwrap();
    let samples = parse_exposition(&body);
    let pod = samples
        .iter()
        .find(|s| s.name == "kepler_pod_cpu_joules_total")
        .expect("a pod series");
    assert_eq!(pod.label("pod_id"), Some(uid.as_str()));
    assert_eq!(pod.label("pod_name"), Some("web-0"));
    assert_eq!(pod.label("pod_namespace"), Some("default"));
    let c = samples
        .iter()
        .find(|s| s.name == "kepler_container_cpu_joules_total")
        .expect("a container series");
    assert_eq!(c.label("container_id"), Some(CID));
    assert_eq!(c.label("container_name"), Some("nginx"));
    assert_eq!(c.label("pod_id"), Some(uid.as_str()));
    assert_eq!(value(&samples, "kepler_kube_synced", &[]), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "kepler_kube_requests_total",
            &[("request", "list"), ("result", "ok")]
        ),
        Some(1.0)
    );
}
