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
    // The binary's default order: hwmon measures where RAPL is absent (issue 15).
    assert_eq!(
        cfg["cpu"]["preferredMeters"],
        serde_json::json!(["rapl", "hwmon", "trained", "model"])
    );
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
    let mut templates: Vec<PathBuf> = std::fs::read_dir(chart.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    templates.sort();
    assert!(templates.iter().any(|t| t.ends_with("_config.tpl")));
    for t in templates {
        let text = std::fs::read_to_string(&t).unwrap();
        let opens: usize = ["if", "with", "range", "define"]
            .iter()
            .map(|w| {
                text.matches(&format!("{{{{- {w} ")).count()
                    + text.matches(&format!("{{{{ {w} ")).count()
            })
            .sum();
        let ends = text.matches("{{- end").count() + text.matches("{{ end").count();
        assert_eq!(opens, ends, "{}: unbalanced blocks and ends", t.display());
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
    assert!(rbac.contains(r#"eq .Values.config.kube.podInformer.mode "apiserver""#));
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
    let crd = cluster.dir.path().join("monitoring-crds.yaml");
    let stand_in = |kind: &str, plural: &str| {
        format!(
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    kind: {kind}
    plural: {plural}
    singular: {singular}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#,
            singular = kind.to_lowercase()
        )
    };
    std::fs::write(
        &crd,
        format!(
            "{}---\n{}",
            stand_in("ServiceMonitor", "servicemonitors"),
            stand_in("PrometheusRule", "prometheusrules")
        ),
    )
    .unwrap();
    run(&["apply"], &crd);
    let mut files = yaml_files(&dir);
    // The chart as Helm renders it, where the renderer is installed (issue 15).
    if let Some(python) = helm_python() {
        for (name, values) in [
            ("chart-default", serde_json::json!({})),
            (
                "chart-custom",
                serde_json::json!({"privilege": "low", "nodeSelector": {"a": "b"},
                    "nvidia": {"enabled": true, "driverLibraryPath": "/usr/lib64"},
                    "config": {"kube": {"podInformer": {"mode": "apiserver"}}}}),
            ),
            (
                "chart-redfish",
                serde_json::json!({"redfish": {"secretName": "bmc"},
                    "serviceMonitor": {"labels": {"release": "kps"}}}),
            ),
        ] {
            // One JSON object per file: kubectl reads a stream of JSON documents badly.
            for (i, o) in helm_template(&python, values).unwrap().iter().enumerate() {
                let path = cluster.dir.path().join(format!("{name}-{i}.json"));
                std::fs::write(&path, serde_json::to_string(o).unwrap()).unwrap();
                files.push(path);
            }
        }
    }
    let mut accepted = 0;
    for file in files {
        if std::fs::read_to_string(&file)
            .unwrap()
            .contains("monitoring.coreos.com/v1")
        {
            // The CRDs need a moment to be served.
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

/// Labels of each metric in the README's Metrics table (`{a,b}` in a name expanded), plus
/// `node_name`, which every series carries.
fn readme_metric_labels() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let table = readme
        .split("| metric | type | labels (besides node_name) |")
        .nth(1)
        .expect("README has the Metrics table");
    let mut out = std::collections::BTreeMap::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').collect();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let mut labels: BTreeSet<String> = ticked(cells[3]).into_iter().collect();
        labels.insert("node_name".into());
        for name in ticked(cells[1]) {
            let expanded = match (name.find('{'), name.find('}')) {
                (Some(a), Some(b)) => name[a + 1..b]
                    .split(',')
                    .map(|alt| format!("{}{alt}{}", &name[..a], &name[b + 1..]))
                    .collect(),
                _ => vec![name],
            };
            for n in expanded {
                out.insert(n, labels.clone());
            }
        }
    }
    assert!(out.contains_key("kepler_container_cpu_watts"), "{out:?}");
    out
}

/// Labels an aggregation groups by that none of the series inside it carries (the bug of
/// grouping container series by `pod_name`). Metrics the README table does not list are not
/// checked; labels a `group_left`/`group_right` brings in count as carried.
fn missing_group_labels(
    expr: &str,
    known: &std::collections::BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    use support::dashboard::{aggregations, selectors};
    let sels = selectors(expr);
    let mut out = Vec::new();
    for agg in aggregations(expr) {
        let Some((true, by)) = &agg.grouping else {
            continue;
        };
        let inside: Vec<_> = sels.iter().filter(|s| agg.span.contains(&s.at)).collect();
        if inside.iter().any(|s| !known.contains_key(&s.metric)) {
            continue;
        }
        let mut carried: BTreeSet<String> = ["instance", "job"].map(String::from).into();
        for s in &inside {
            carried.extend(known[&s.metric].iter().cloned());
        }
        let body = &expr[agg.span.clone()];
        for join in ["group_left", "group_right"] {
            for part in body.split(join).skip(1) {
                if let Some(list) = part
                    .trim_start()
                    .strip_prefix('(')
                    .and_then(|p| p.split_once(')'))
                {
                    carried.extend(list.0.split(',').map(|l| l.trim().to_string()));
                }
            }
        }
        for label in by {
            if !carried.contains(label) {
                out.push(format!("{} by {label}: no series inside has it", agg.op));
            }
        }
    }
    out
}

/// Issue 15: no panel adds up zones that overlap (package holds core and uncore, psys holds
/// everything) or sums the nested platform series, every `by` label exists on the series
/// grouped, and the zone variable offers one zone at a time. The old dashboard's queries
/// are kept here as cases the checks must reject.
#[test]
fn dashboard_never_adds_overlapping_zones_or_missing_labels_issue_15() {
    use support::dashboard::{dashboard, dashboard_queries, zone_problems};
    let known = readme_metric_labels();
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "only {} queries", queries.len());
    for q in &queries {
        let zones = zone_problems(&q.expr);
        assert!(
            zones.is_empty(),
            "{} {}: {:?}: {zones:?}",
            q.panel,
            q.ref_id,
            q.expr
        );
        let labels = missing_group_labels(&q.expr, &known);
        assert!(
            labels.is_empty(),
            "{} {}: {:?}: {labels:?}",
            q.panel,
            q.ref_id,
            q.expr
        );
    }
    let dash = dashboard();
    let zone_var = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "zone")
        .expect("a zone variable");
    assert_eq!(zone_var["multi"], false, "one zone at a time");
    assert_eq!(zone_var["includeAll"], false, "one zone at a time");
    assert_eq!(zone_var["current"]["value"], "package");

    for (bad, why) in [
        (
            r#"sum(kepler_node_cpu_active_watts{node_name=~".*"})"#,
            "overlap",
        ),
        (
            r#"sum by (node_name) (kepler_node_cpu_watts{node_name=~".*"})"#,
            "overlap",
        ),
        (
            r#"topk(10, sum by (pod_namespace, pod_name) (kepler_pod_cpu_watts{node_name=~".*"}))"#,
            "overlap",
        ),
        (
            r#"sum by (node_name) (kepler_platform_watts{node_name=~".*"})"#,
            "summed",
        ),
        (
            r#"sum(kepler_node_cpu_watts{zone=~"package|core"})"#,
            "overlap",
        ),
        (r#"sum(kepler_node_cpu_watts{zone!="psys"})"#, "open set"),
        (
            r#"sum(kepler_pod_cpu_watts{zone=~"pack.*"})"#,
            "not a zone name",
        ),
    ] {
        let problems = zone_problems(bad);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{bad}: {problems:?} (expected {why:?})"
        );
    }
    for good in [
        r#"sum by (node_name, zone) (kepler_node_cpu_watts)"#,
        r#"sum without (path) (kepler_node_cpu_watts)"#,
        r#"sum by (node_name) (kepler_node_cpu_watts{zone=~"package|dram"})"#,
        r#"count by (node_name) (kepler_node_cpu_watts)"#,
        r#"kepler_platform_watts"#,
    ] {
        assert_eq!(zone_problems(good), Vec::<String>::new(), "{good}");
    }
    let old_top_containers = r#"topk(10, sum by (pod_name, container_name) (kepler_container_cpu_watts{zone="package"}))"#;
    assert_eq!(
        missing_group_labels(old_top_containers, &known),
        ["sum by pod_name: no series inside has it"]
    );
}

/// Issue 15: every dashboard query, variables substituted, is valid PromQL: `promtool check
/// rules` parses a rule file made of them (and rejects the same file with one query broken).
#[test]
fn dashboard_queries_parse_in_promtool_issue_15() {
    let queries = support::dashboard::dashboard_queries();
    let rule_file = |exprs: &[String]| {
        let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
        for (i, e) in exprs.iter().enumerate() {
            text.push_str(&format!(
                "      - record: dashboard:query_{i}\n        expr: {}\n",
                serde_json::to_string(e).unwrap()
            ));
        }
        text
    };
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        match Command::new("promtool")
            .args(["check", "rules"])
            .arg(&path)
            .output()
        {
            Ok(out) => Some((
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )),
            Err(e) if support::required() => {
                panic!("REQUIRE_K8S=1 but promtool cannot run ({e}; Debian package prometheus)")
            }
            Err(e) => {
                eprintln!("SKIPPED: no promtool ({e}; Debian package prometheus; REQUIRE_K8S=1 makes this fail)");
                None
            }
        }
    };
    let mut exprs: Vec<String> = queries.iter().map(|q| q.expr.clone()).collect();
    let Some((ok, out)) = check("dashboard.yaml", &rule_file(&exprs)) else {
        return;
    };
    assert!(
        ok,
        "promtool check rules on the dashboard's queries:\n{out}"
    );
    assert!(
        out.contains(&format!("{} rules found", exprs.len())),
        "{out}"
    );
    exprs[0].push(')');
    let (ok, out) = check("broken.yaml", &rule_file(&exprs)).unwrap();
    assert!(!ok, "a broken query passed: {out}");
}

/// The PrometheusRule of the plain manifests: a header, then the `groups:` items of the
/// alert and recording rule files, indented under `spec.groups`.
fn prometheus_rule_text() -> String {
    let mut out = String::from(
        "# Generated from deploy/prometheus/kepler-alerts.yaml and kepler-recording-rules.yaml by
# `KEPLER_UPDATE_DEPLOY=1 cargo test -p kepler-k8s --test deploy`: edit those, not this.
# Needs the Prometheus Operator's CRDs (monitoring.coreos.com/v1).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: kepler
  namespace: kepler
  labels:
    app.kubernetes.io/name: kepler
spec:
  groups:
",
    );
    let mut body = Vec::new();
    for file in RULE_FILES {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut lines = text.lines();
        lines
            .by_ref()
            .find(|l| *l == "groups:")
            .unwrap_or_else(|| panic!("{file}: no top-level groups:"));
        body.extend(lines.map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("  {l}")
            }
        }));
    }
    while body.last().is_some_and(|l| l.is_empty()) {
        body.pop();
    }
    out.push_str(&body.join("\n"));
    out.push('\n');
    out
}

const RULE_FILES: [&str; 2] = [
    "deploy/prometheus/kepler-alerts.yaml",
    "deploy/prometheus/kepler-recording-rules.yaml",
];

/// The rule groups of the plain rule files, in order.
fn rule_file_groups() -> Vec<Value> {
    RULE_FILES
        .iter()
        .flat_map(|f| {
            docs(&repo().join(f))[0]["groups"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

/// Issue 15: `deploy/kubernetes/70-prometheusrule.yaml` holds exactly the rule files' groups
/// (`KEPLER_UPDATE_DEPLOY=1` regenerates it), the workload alerts are there, and no rule adds
/// up overlapping zones.
#[test]
fn prometheus_rule_object_holds_the_rule_files_issue_15() {
    let path = repo().join("deploy/kubernetes/70-prometheusrule.yaml");
    let want = prometheus_rule_text();
    if std::env::var_os("KEPLER_UPDATE_DEPLOY").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap();
    assert!(
        got == want,
        "{} is not the rule files' groups: run KEPLER_UPDATE_DEPLOY=1 cargo test -p kepler-k8s --test deploy",
        path.display()
    );
    let all = manifests();
    let rule = find(&all, "70-prometheusrule.yaml", "PrometheusRule");
    let groups = rule_file_groups();
    assert_eq!(rule["spec"]["groups"], Value::Array(groups.clone()));
    let alerts: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for must in [
        "KeplerExporterDown",
        "KeplerPodHighPower",
        "KeplerNodePowerRise",
    ] {
        assert!(alerts.contains(&must), "{must} missing: {alerts:?}");
    }
    for g in &groups {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            let problems = support::dashboard::zone_problems(expr);
            assert!(problems.is_empty(), "{expr}: {problems:?}");
        }
    }
}

/// The python that has Helm's SDK (`helm-python-sdk`, see scripts/helm-template.py):
/// `$KEPLER_HELM_PYTHON`, else the venv .ci/run makes. `None` (after saying why) when it is
/// missing and not required.
fn helm_python() -> Option<PathBuf> {
    let python = std::env::var_os("KEPLER_HELM_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/kepler-rs/helm-sdk/bin/python"))
        })?;
    let ok = Command::new(&python)
        .args(["-c", "import helm_python"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let why = format!(
        "no Helm renderer: {} cannot import helm_python (python3 -m venv ~/.cache/kepler-rs/helm-sdk && ~/.cache/kepler-rs/helm-sdk/bin/pip install helm-python-sdk==0.2.2)",
        python.display()
    );
    if support::required() {
        panic!("REQUIRE_K8S=1 but {why}");
    }
    eprintln!("SKIPPED: {why}; REQUIRE_K8S=1 makes this fail");
    None
}

/// `helm template kepler deploy/helm/kepler -n kepler` with `values` (JSON), through Helm's
/// own engine: the objects, or the error Helm gave.
fn helm_template(python: &Path, values: Value) -> Result<Vec<Value>, String> {
    let out = Command::new(python)
        .arg(repo().join("scripts/helm-template.py"))
        .arg(repo().join("deploy/helm/kepler"))
        .args(["kepler", "kepler"])
        .arg(values.to_string())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("rendered chart: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect())
}

/// Drops nulls and empty maps (kepler reads both as "not written").
fn prune(v: &mut Value) {
    if let Value::Object(m) = v {
        for x in m.values_mut() {
            prune(x);
        }
        m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(|o| o.is_empty())));
    }
}

/// What the chart adds on top of the plain objects goes: the instance label (Helm's release)
/// and the config checksum annotation; a ConfigMap's config.yaml is compared as data.
fn normalised(mut o: Value) -> Value {
    fn drop_instance(v: &mut Value) {
        if let Some(m) = v.as_object_mut() {
            m.remove("app.kubernetes.io/instance");
        }
    }
    drop_instance(&mut o["metadata"]["labels"]);
    drop_instance(&mut o["spec"]["selector"]["matchLabels"]);
    drop_instance(&mut o["spec"]["selector"]);
    if o["spec"]["template"].is_object() {
        drop_instance(&mut o["spec"]["template"]["metadata"]["labels"]);
        let meta = o["spec"]["template"]["metadata"].as_object_mut().unwrap();
        if let Some(Value::Object(a)) = meta.get_mut("annotations") {
            a.remove("checksum/config");
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(text) = o["data"]["config.yaml"].as_str() {
        let mut cfg: Value = serde_saphyr::from_str(text).unwrap();
        prune(&mut cfg);
        o["data"]["config.yaml"] = cfg;
    }
    o
}

fn by_kind_and_name(
    objects: impl IntoIterator<Item = Value>,
) -> std::collections::BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
            (key, normalised(o))
        })
        .collect()
}

/// Issue 15: Helm's own engine renders the chart into the same objects as
/// `deploy/kubernetes/` (less the Namespace, which `helm install --create-namespace` makes),
/// `privilege: low` into the low-privilege DaemonSet, apiserver mode into its RBAC; the
/// values for placement, the ServiceMonitor's labels, Redfish, NVIDIA and the alert
/// thresholds land where they should; and values that cannot work are refused by name.
#[test]
fn helm_renders_the_plain_manifests_and_its_values_issue_15() {
    let Some(python) = helm_python() else {
        return;
    };
    // `helm lint`: no error and no warning (severity 2 and up; 1 is INFO, e.g. "icon is
    // recommended").
    let out = Command::new(&python)
        .arg(repo().join("scripts/helm-template.py"))
        .arg("--lint")
        .arg(repo().join("deploy/helm/kepler"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lint: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lint["total_charts_linted"], 1, "{lint}");
    assert_eq!(lint["errors"], serde_json::json!([]), "{lint}");
    for m in lint["messages"].as_array().unwrap() {
        assert!(m["severity"].as_i64().unwrap() < 2, "helm lint: {m}");
    }
    let render = |values: Value| {
        helm_template(&python, values.clone())
            .unwrap_or_else(|e| panic!("helm template with {values}: {e}"))
    };
    let plain = manifests();
    let want = by_kind_and_name(
        plain
            .iter()
            .filter(|(p, d)| {
                !p.to_string_lossy().contains("alternatives") && d["kind"] != "Namespace"
            })
            .map(|(_, d)| d.clone()),
    );
    let got = by_kind_and_name(render(serde_json::json!({})));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (key, w) in &want {
        assert_eq!(
            &got[key], w,
            "{key}: the chart and deploy/kubernetes differ"
        );
    }
    // The PrometheusRule the chart renders is the rule files' groups.
    assert_eq!(
        got["PrometheusRule/kepler"]["spec"]["groups"],
        Value::Array(rule_file_groups())
    );

    let low = by_kind_and_name(render(serde_json::json!({"privilege": "low"})));
    let ds = find(&plain, "daemonset-low-privilege.yaml", "DaemonSet").clone();
    assert_eq!(low["DaemonSet/kepler"], normalised(ds));
    let api = by_kind_and_name(render(
        serde_json::json!({"config": {"kube": {"podInformer": {"mode": "apiserver"}}}}),
    ));
    let role = find(&plain, "rbac-apiserver.yaml", "ClusterRole").clone();
    assert_eq!(api["ClusterRole/kepler"], normalised(role));
    let cfg = &api["ConfigMap/kepler"]["data"]["config.yaml"];
    assert_eq!(
        cfg["kube"]["podInformer"],
        serde_json::json!({"mode": "apiserver"}),
        "kubelet-only keys left in apiserver mode"
    );

    let custom = by_kind_and_name(render(serde_json::json!({
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "gpu", "operator": "In", "values": ["yes"]}]}]}}},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {
            "labels": {"release": "kube-prometheus-stack"},
            "job": "kepler-exporter",
            "podHighPower": {"watts": 75, "for": "20m"},
            "nodePowerRise": {"watts": 150, "window": "30m", "for": "2m"},
        },
        "redfish": {"secretName": "bmc", "secretKey": "bmc.yaml"},
        "nvidia": {"enabled": true, "driverLibraryPath": "/run/nvidia/driver/usr/lib64"},
        "config": {"monitor": {"interval": "10s"}},
    })));
    let pod = &custom["DaemonSet/kepler"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"kubernetes.io/os": "linux"})
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "gpu"
    );
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}])
    );
    for kind in ["ServiceMonitor/kepler", "PrometheusRule/kepler"] {
        assert_eq!(
            custom[kind]["metadata"]["labels"]["release"], "kube-prometheus-stack",
            "{kind}"
        );
    }
    let rules: Vec<&Value> = custom["PrometheusRule/kepler"]["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let alert = |name: &str| *rules.iter().find(|r| r["alert"] == name).unwrap();
    assert_eq!(
        alert("KeplerExporterDown")["expr"],
        r#"up{job="kepler-exporter"} == 0"#
    );
    let pod_alert = alert("KeplerPodHighPower");
    assert!(
        pod_alert["expr"].as_str().unwrap().ends_with("> 75"),
        "{pod_alert}"
    );
    assert_eq!(pod_alert["for"], "20m");
    let rise = alert("KeplerNodePowerRise");
    let expr = rise["expr"].as_str().unwrap();
    assert!(
        expr.contains("offset 30m") && expr.trim_end().ends_with("> 150"),
        "{expr}"
    );
    assert_eq!(rise["for"], "2m");
    // The BMC file from the Secret, 0600, where the config says it is.
    let volumes = pod["volumes"].as_array().unwrap();
    let secret = volumes.iter().find(|v| v["name"] == "redfish").unwrap();
    assert_eq!(secret["secret"]["secretName"], "bmc");
    assert_eq!(secret["secret"]["defaultMode"], 0o600);
    assert_eq!(secret["secret"]["items"][0]["key"], "bmc.yaml");
    let c = &pod["containers"][0];
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "redfish")
        .unwrap();
    assert_eq!(mount["readOnly"], true);
    let cfg = &custom["ConfigMap/kepler"]["data"]["config.yaml"];
    let redfish = &cfg["experimental"]["platform"]["redfish"];
    assert_eq!(redfish["enabled"], true);
    assert_eq!(
        redfish["configFile"].as_str().unwrap(),
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            secret["secret"]["items"][0]["path"].as_str().unwrap()
        )
    );
    assert_eq!(cfg["monitor"]["interval"], "10s");
    // NVIDIA: the runtime class, its variables, and the driver's library directory.
    assert_eq!(pod["runtimeClassName"], "nvidia");
    let env = c["env"].as_array().unwrap();
    let var = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].clone())
    };
    assert_eq!(var("NVIDIA_VISIBLE_DEVICES"), Some("all".into()));
    let lib = volumes
        .iter()
        .find(|v| v["name"] == "nvidia-driver")
        .unwrap();
    assert_eq!(lib["hostPath"]["path"], "/run/nvidia/driver/usr/lib64");
    let lib_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "nvidia-driver")
        .unwrap();
    assert_eq!(var("LD_LIBRARY_PATH"), Some(lib_mount["mountPath"].clone()));
    // The config checksum follows the config, so a change rolls the pods.
    let sum = |objs: &[Value]| {
        objs.iter().find(|o| o["kind"] == "DaemonSet").unwrap()["spec"]["template"]["metadata"]
            ["annotations"]["checksum/config"]
            .clone()
    };
    assert_ne!(
        sum(&render(serde_json::json!({}))),
        sum(&render(
            serde_json::json!({"config": {"monitor": {"interval": "10s"}}})
        ))
    );

    for (values, says) in [
        (
            serde_json::json!({"privilege": "low", "redfish": {"secretName": "bmc"}}),
            "redfish.secretName needs privilege: high",
        ),
        (
            serde_json::json!({"service": {"port": 9102}}),
            "service.port 9102 is not in config.web.listenAddresses",
        ),
        (
            serde_json::json!({"privilege": "root"}),
            "privilege must be high or low",
        ),
    ] {
        let err = helm_template(&python, values.clone()).expect_err(&values.to_string());
        assert!(err.contains(says), "{values}: {err}");
    }
}

/// Series of one node whose zones nest as on a real Intel machine (package 40 W holds core
/// 25 W and uncore 5 W; dram 8 W beside it; psys 70 W holds all), two pods in two
/// namespaces, three containers, two nested Redfish entries, two GPUs, self-metrics. Every
/// 30 s for 65 minutes; counters grow at the gauges' watts.
const DASHBOARD_SERIES: &str = r#"
      - series: 'kepler_node_cpu_watts{node_name="n1",zone="package",path="intel-rapl:0"}'
        values: '40x130'
      - series: 'kepler_node_cpu_watts{node_name="n1",zone="core",path="intel-rapl:0:0"}'
        values: '25x130'
      - series: 'kepler_node_cpu_watts{node_name="n1",zone="uncore",path="intel-rapl:0:1"}'
        values: '5x130'
      - series: 'kepler_node_cpu_watts{node_name="n1",zone="dram",path="intel-rapl:0:2"}'
        values: '8x130'
      - series: 'kepler_node_cpu_watts{node_name="n1",zone="psys",path="intel-rapl:1"}'
        values: '70x130'
      - series: 'kepler_node_cpu_active_watts{node_name="n1",zone="package",path="intel-rapl:0"}'
        values: '30x130'
      - series: 'kepler_node_cpu_active_watts{node_name="n1",zone="core",path="intel-rapl:0:0"}'
        values: '20x130'
      - series: 'kepler_node_cpu_active_watts{node_name="n1",zone="psys",path="intel-rapl:1"}'
        values: '50x130'
      - series: 'kepler_node_cpu_idle_watts{node_name="n1",zone="package",path="intel-rapl:0"}'
        values: '10x130'
      - series: 'kepler_node_cpu_idle_watts{node_name="n1",zone="core",path="intel-rapl:0:0"}'
        values: '5x130'
      - series: 'kepler_node_cpu_idle_watts{node_name="n1",zone="psys",path="intel-rapl:1"}'
        values: '20x130'
      - series: 'kepler_node_cpu_unattributed_watts{node_name="n1",zone="package"}'
        values: '2x130'
      - series: 'kepler_node_cpu_unattributed_watts{node_name="n1",zone="core"}'
        values: '1x130'
      - series: 'kepler_pod_cpu_watts{node_name="n1",pod_id="u1",pod_name="a",pod_namespace="shop",state="running",zone="package"}'
        values: '12x130'
      - series: 'kepler_pod_cpu_watts{node_name="n1",pod_id="u1",pod_name="a",pod_namespace="shop",state="running",zone="core"}'
        values: '8x130'
      - series: 'kepler_pod_cpu_watts{node_name="n1",pod_id="u2",pod_name="b",pod_namespace="web",state="running",zone="package"}'
        values: '6x130'
      - series: 'kepler_pod_cpu_watts{node_name="n1",pod_id="u2",pod_name="b",pod_namespace="web",state="running",zone="core"}'
        values: '4x130'
      - series: 'kepler_pod_cpu_joules_total{node_name="n1",pod_id="u1",pod_name="a",pod_namespace="shop",state="running",zone="package"}'
        values: '0+360x130'
      - series: 'kepler_pod_cpu_joules_total{node_name="n1",pod_id="u1",pod_name="a",pod_namespace="shop",state="running",zone="core"}'
        values: '0+240x130'
      - series: 'kepler_pod_cpu_joules_total{node_name="n1",pod_id="u2",pod_name="b",pod_namespace="web",state="running",zone="package"}'
        values: '0+180x130'
      # A pod seen before the kubelet named it: its own bucket, never an empty label.
      - series: 'kepler_pod_cpu_joules_total{node_name="n1",pod_id="u9",pod_name="",pod_namespace="",state="running",zone="package"}'
        values: '0+180x130'
      - series: 'kepler_pod_cpu_watts{node_name="n1",pod_id="u9",pod_name="",pod_namespace="",state="running",zone="package"}'
        values: '3x130'
      - series: 'kepler_container_cpu_watts{node_name="n1",container_id="c1",container_name="app",runtime="containerd",state="running",pod_id="u1",zone="package"}'
        values: '10x130'
      - series: 'kepler_container_cpu_watts{node_name="n1",container_id="c1",container_name="app",runtime="containerd",state="running",pod_id="u1",zone="core"}'
        values: '7x130'
      - series: 'kepler_container_cpu_watts{node_name="n1",container_id="c2",container_name="sidecar",runtime="containerd",state="running",pod_id="u1",zone="package"}'
        values: '2x130'
      - series: 'kepler_container_cpu_watts{node_name="n1",container_id="c3",container_name="web",runtime="containerd",state="running",pod_id="u2",zone="package"}'
        values: '6x130'
      # The pod sandbox (pause) container: no name; the container panel leaves it out.
      - series: 'kepler_container_cpu_watts{node_name="n1",container_id="s1",container_name="",runtime="kubernetes",state="running",pod_id="u2",zone="package"}'
        values: '1x130'
      - series: 'kepler_platform_watts{node_name="n1",source="redfish",bmc_id="bmc-1",chassis_id="1",power_control_id="0",power_control_name="Chassis"}'
        values: '200x130'
      - series: 'kepler_platform_watts{node_name="n1",source="redfish",bmc_id="bmc-1",chassis_id="1",power_control_id="1",power_control_name="CPU"}'
        values: '60x130'
      - series: 'kepler_node_gpu_watts{node_name="n1",gpu="0",gpu_uuid="GPU-0",gpu_name="T4",vendor="nvidia"}'
        values: '100x130'
      - series: 'kepler_node_gpu_watts{node_name="n1",gpu="1",gpu_uuid="GPU-1",gpu_name="T4",vendor="nvidia"}'
        values: '50x130'
      - series: 'kepler_node_gpu_idle_watts{node_name="n1",gpu="0",gpu_uuid="GPU-0",gpu_name="T4",vendor="nvidia"}'
        values: '20x130'
      - series: 'kepler_node_gpu_idle_watts{node_name="n1",gpu="1",gpu_uuid="GPU-1",gpu_name="T4",vendor="nvidia"}'
        values: '10x130'
      - series: 'kepler_exporter_zone_up{node_name="n1",source="rapl",zone="package",path="intel-rapl:0"}'
        values: '1x130'
      - series: 'kepler_exporter_zone_up{node_name="n1",source="rapl",zone="dram",path="intel-rapl:0:2"}'
        values: '0x130'
      - series: 'kepler_kube_synced{node_name="n1"}'
        values: '1x130'
      - series: 'kepler_kube_requests_total{node_name="n1",request="pods",result="ok"}'
        values: '0+30x130'
"#;

/// Issue 15: on nested zones every panel shows the right watts, evaluated by Prometheus's
/// own engine (`promtool test rules`, the queries as `dashboard_queries` gives them, at
/// 60 m): active + unattributed + idle = the package's 40 W, the containers get their
/// pods' names, platform entries stay apart, and package + dram is 48 W, not the 148 W of
/// every zone added up. A panel without an expectation here fails the test.
#[test]
fn dashboard_queries_give_the_right_watts_on_nested_zones_issue_15() {
    let n1 = r#"node_name="n1""#;
    let expected: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "Node CPU power by zone",
            "A",
            [
                ("package", 40),
                ("core", 25),
                ("uncore", 5),
                ("dram", 8),
                ("psys", 70),
            ]
            .iter()
            .map(|(z, w)| format!("{{{n1},zone=\"{z}\"}} {w}"))
            .collect(),
        ),
        (
            "Active vs idle CPU power ($zone)",
            "A",
            vec!["{} 28".into()],
        ),
        ("Active vs idle CPU power ($zone)", "B", vec!["{} 2".into()]),
        (
            "Active vs idle CPU power ($zone)",
            "C",
            vec!["{} 10".into()],
        ),
        (
            "Top 10 pods by power ($zone)",
            "A",
            vec![
                r#"{pod_namespace="shop",pod_name="a"} 12"#.into(),
                r#"{pod_namespace="web",pod_name="b"} 6"#.into(),
                r#"{pod_namespace="(unresolved)",pod_name="(unresolved)"} 3"#.into(),
            ],
        ),
        (
            "Top 10 containers by power ($zone)",
            "A",
            vec![
                r#"{pod_namespace="shop",pod_name="a",container_name="app"} 10"#.into(),
                r#"{pod_namespace="shop",pod_name="a",container_name="sidecar"} 2"#.into(),
                r#"{pod_namespace="web",pod_name="b",container_name="web"} 6"#.into(),
            ],
        ),
        // 12 W and 6 W for an hour, in kWh.
        (
            "Energy by namespace over the range ($zone)",
            "A",
            vec![
                r#"{pod_namespace="shop"} 0.012"#.into(),
                r#"{pod_namespace="web"} 0.006"#.into(),
                r#"{pod_namespace="(unresolved)"} 0.006"#.into(),
            ],
        ),
        (
            "Platform vs CPU package + DRAM power",
            "A",
            vec![
                format!(
                    r#"kepler_platform_watts{{{n1},source="redfish",bmc_id="bmc-1",chassis_id="1",power_control_id="0",power_control_name="Chassis"}} 200"#
                ),
                format!(
                    r#"kepler_platform_watts{{{n1},source="redfish",bmc_id="bmc-1",chassis_id="1",power_control_id="1",power_control_name="CPU"}} 60"#
                ),
            ],
        ),
        (
            "Platform vs CPU package + DRAM power",
            "B",
            vec![format!("{{{n1}}} 48")],
        ),
        ("GPU power", "A", vec![format!("{{{n1}}} 150")]),
        ("GPU power", "B", vec![format!("{{{n1}}} 30")]),
        ("Exporter health", "A", vec![format!("{{{n1}}} 0")]),
        (
            "Exporter health",
            "B",
            vec![format!("kepler_kube_synced{{{n1}}} 1")],
        ),
        (
            "Exporter health",
            "C",
            vec![format!(r#"{{{n1},request="pods",result="ok"}} 60"#)],
        ),
        ("variable node", "node", vec![format!("{{{n1}}} 5")]),
        (
            "variable zone",
            "zone",
            ["package", "core", "uncore", "dram", "psys"]
                .iter()
                .map(|z| format!("{{zone=\"{z}\"}} 1"))
                .collect(),
        ),
    ];
    let queries = support::dashboard::dashboard_queries();
    let mut tests = String::new();
    for q in &queries {
        let (_, _, samples) = expected
            .iter()
            .find(|(panel, r, _)| *panel == q.panel && *r == q.ref_id)
            .unwrap_or_else(|| panic!("no expected result for {} {}: add one", q.panel, q.ref_id));
        tests.push_str(&format!(
            "      - expr: {}\n        eval_time: 60m\n        exp_samples:\n",
            serde_json::to_string(&q.expr).unwrap()
        ));
        for s in samples {
            let (labels, value) = s.rsplit_once(' ').unwrap();
            tests.push_str(&format!(
                "          - labels: {}\n            value: {value}\n",
                serde_json::to_string(labels).unwrap()
            ));
        }
    }
    assert_eq!(
        queries.len(),
        expected.len(),
        "expectations for panels that are gone"
    );
    let file = format!(
        "rule_files: []\nevaluation_interval: 30s\ntests:\n  - interval: 30s\n    input_series:{DASHBOARD_SERIES}    promql_expr_test:\n{tests}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.test.yaml");
    std::fs::write(&path, &file).unwrap();
    let out = match Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) if support::required() => {
            panic!("REQUIRE_K8S=1 but promtool cannot run ({e}; Debian package prometheus)")
        }
        Err(e) => {
            eprintln!("SKIPPED: no promtool ({e}; Debian package prometheus; REQUIRE_K8S=1 makes this fail)");
            return;
        }
    };
    assert!(
        out.status.success(),
        "promtool test rules on the dashboard's queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
