//! deploy/: the manifests hold what kepler needs, the real API server accepts them
//! (`kubectl apply --dry-run=server`), the Helm chart's values cover its templates, the
//! dashboard only queries metrics the exporter emits, and systemd accepts the unit (issue 8).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(yaml_files(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn manifests() -> Vec<(PathBuf, Value)> {
    yaml_files(&repo().join("deploy/kubernetes"))
        .into_iter()
        .flat_map(|p| docs(&p).into_iter().map(move |d| (p.clone(), d)))
        .collect()
}

fn find<'a>(all: &'a [(PathBuf, Value)], file: &str, kind: &str) -> &'a Value {
    &all.iter()
        .find(|(p, d)| p.ends_with(file) && d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {file}"))
        .1
}

fn container(ds: &Value) -> &Value {
    &ds["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn daemonsets_run_kepler_as_the_design_says_issue_8() {
    let all = manifests();
    for file in ["40-daemonset.yaml", "daemonset-low-privilege.yaml"] {
        let ds = find(&all, file, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostPID"], true, "{file}");
        assert_eq!(pod["serviceAccountName"], "kepler", "{file}");
        let c = container(ds);
        let env = c["env"].as_array().unwrap();
        let node = env.iter().find(|e| e["name"] == "NODE_NAME").unwrap();
        assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
        assert_eq!(c["ports"][0]["containerPort"], 28282);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        for (mount, host) in [("/host/proc", "/proc"), ("/host/sys", "/sys")] {
            let m = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == mount)
                .unwrap_or_else(|| panic!("{file}: no {mount}"));
            assert_eq!(m["readOnly"], true, "{file} {mount}");
            let v = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap();
            assert_eq!(v["hostPath"]["path"], host);
        }
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{file}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{file}");
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    }
    let high = &container(find(&all, "40-daemonset.yaml", "DaemonSet"))["securityContext"];
    assert_eq!(
        high["capabilities"]["add"],
        serde_json::json!(["BPF", "PERFMON", "SYS_PTRACE"])
    );
    assert_ne!(high["privileged"], true);
    let low =
        &container(find(&all, "daemonset-low-privilege.yaml", "DaemonSet"))["securityContext"];
    assert_eq!(low["runAsNonRoot"], true);
    assert!(
        low["capabilities"]["add"].is_null(),
        "low privilege adds nothing"
    );

    // The config the DaemonSet mounts turns the informer on, in kubelet mode.
    let cm = find(&all, "30-configmap.yaml", "ConfigMap");
    let cfg: Value = serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg["kube"]["enabled"], true);
    assert_eq!(cfg["kube"]["podInformer"]["mode"], "kubelet");
    assert_eq!(cfg["host"]["procfs"], "/host/proc");
}

#[test]
fn rbac_grants_only_what_each_informer_mode_needs_issue_8() {
    let all = manifests();
    let kubelet = find(&all, "20-rbac-kubelet.yaml", "ClusterRole");
    assert_eq!(
        kubelet["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}])
    );
    let apiserver = find(&all, "rbac-apiserver.yaml", "ClusterRole");
    assert_eq!(
        apiserver["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}])
    );
    let svc = find(&all, "50-service.yaml", "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 28282);
    let sm = find(&all, "60-servicemonitor.yaml", "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

#[test]
fn helm_values_cover_every_template_reference_issue_8() {
    let chart = repo().join("deploy/helm/kepler");
    let meta: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart.join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["name"], "kepler");
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap())
            .unwrap();
    let mut refs = 0;
    for t in yaml_files(&chart.join("templates")) {
        let text = std::fs::read_to_string(&t).unwrap();
        let opens = text.matches("{{- if").count() + text.matches("{{ if").count();
        let ends = text.matches("{{- end }}").count() + text.matches("{{ end }}").count();
        assert_eq!(opens, ends, "{}: unbalanced if/end", t.display());
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".Values.") {
            let tail = &rest[i + ".Values.".len()..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .unwrap_or(tail.len());
            let path = &tail[..end];
            assert!(
                lookup(&values, path).is_some(),
                "{}: .Values.{path} is not in values.yaml",
                t.display()
            );
            refs += 1;
            rest = &tail[end..];
        }
    }
    assert!(refs > 10, "only {refs} value references found");
    // The chart's RBAC follows the informer mode, like the plain manifests.
    let rbac = std::fs::read_to_string(chart.join("templates/rbac.yaml")).unwrap();
    assert!(rbac.contains(r#"eq .Values.kube.podInformer.mode "apiserver""#));
    assert!(
        rbac.contains(r#"resources: ["nodes/proxy"]"#)
            && rbac.contains(r#"verbs: ["list", "watch"]"#)
    );
}

/// Every `"kepler_..."` string literal in the exporter's and the binary's sources.
fn emitted_names() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split('"').skip(1).step_by(2) {
                    if part.starts_with("kepler_")
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        out.insert(part.to_string());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&repo().join("kepler-export/src"), &mut out);
    walk(&repo().join("kepler-bin/src"), &mut out);
    out
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("kepler_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_queries_only_metrics_the_exporter_emits_issue_8() {
    let emitted = emitted_names();
    assert!(emitted.contains("kepler_pod_cpu_watts"), "{emitted:?}");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/kepler-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        exprs.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string()),
        );
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut used = BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            assert!(
                emitted.contains(&name),
                "dashboard query {e:?} uses {name}, which kepler does not emit"
            );
            used.insert(name);
        }
    }
    for must in [
        "kepler_node_cpu_watts",
        "kepler_node_cpu_idle_watts",
        "kepler_pod_cpu_watts",
        "kepler_container_cpu_watts",
        "kepler_pod_cpu_joules_total",
        "kepler_platform_watts",
        "kepler_node_gpu_watts",
    ] {
        assert!(used.contains(must), "the dashboard has no panel on {must}");
    }
}

/// `systemd-analyze verify` on the unit (Debian package `systemd`; CI installs it, and under
/// `REQUIRE_K8S=1` its absence fails the test, issue 14). The copy verified runs `/bin/true`
/// instead of the binary, which is not installed here, so every line systemd prints is a real
/// problem; a copy with an unknown key checks that systemd-analyze would report one.
#[test]
fn systemd_accepts_the_unit_issue_8() {
    let unit = repo().join("deploy/systemd/kepler.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/kepler"));
    let dir = tempfile::tempdir().unwrap();
    let verify = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        match Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
        {
            Ok(out) => Some((
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )),
            Err(e) if support::required() => {
                panic!("REQUIRE_K8S=1 but systemd-analyze cannot run ({e}; Debian package systemd)")
            }
            Err(e) => {
                eprintln!("SKIPPED: no systemd-analyze to verify the unit ({e}; REQUIRE_K8S=1 makes this fail)");
                None
            }
        }
    };
    let runnable = text.replace("/usr/local/bin/kepler", "/bin/true");
    let Some((status, stderr)) = verify("kepler.service", &runnable) else {
        return;
    };
    assert!(
        status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({status}): {stderr}"
    );
    let broken = runnable.replace("[Service]\n", "[Service]\nNoSuchKey=yes\n");
    let (_, stderr) = verify("broken.service", &broken).unwrap();
    assert!(
        stderr.contains("NoSuchKey"),
        "an unknown key went unreported: {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_every_manifest_issue_8() {
    let kubectl = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    });
    let Some(kubectl) = kubectl else {
        if support::required() {
            panic!("REQUIRE_K8S=1 but there is no kubectl (Debian package kubernetes-client)");
        }
        eprintln!("SKIPPED: no kubectl (Debian package kubernetes-client)");
        return;
    };
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    cluster.ready().await;
    let kubeconfig = cluster.kubeconfig(cluster.port, "kubectl.kubeconfig");
    let run = |args: &[&str], file: &Path| {
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .arg("-f")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} -f {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dir = repo().join("deploy/kubernetes");
    // The namespace for real (namespaced dry runs need it), and a stand-in for the Prometheus
    // Operator's ServiceMonitor CRD (a bare API server has none): it checks group, version,
    // kind and metadata, not the operator's schema.
    run(&["apply"], &dir.join("00-namespace.yaml"));
    let crd = cluster.dir.path().join("servicemonitor-crd.yaml");
    std::fs::write(
        &crd,
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    kind: ServiceMonitor
    plural: servicemonitors
    singular: servicemonitor
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#,
    )
    .unwrap();
    run(&["apply"], &crd);
    let mut accepted = 0;
    for file in yaml_files(&dir) {
        if file.ends_with("60-servicemonitor.yaml") {
            // The CRD needs a moment to be served.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let ok = Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["apply", "--dry-run=server", "-f"])
                    .arg(&file)
                    .output()
                    .unwrap()
                    .status
                    .success();
                if ok || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        let out = run(&["apply", "--dry-run=server"], &file);
        assert!(out.contains("(server dry run)"), "{out}");
        accepted += out.lines().count();
    }
    assert!(accepted >= 10, "only {accepted} objects accepted");
}
