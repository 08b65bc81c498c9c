//! The objects one PowerMonitor owns, built as plain manifests from the resolved spec.
//!
//! Pure functions: no API calls, so every manifest is unit-testable and the reconciler only
//! decides whether to apply them. Manifests are JSON values because they go to the API server
//! as server-side-apply bodies and are compared with what it stores ([`crate::apply`]).

use std::collections::BTreeMap;

use kepler_crypto::Sha256;
use serde_json::{json, Value};

use crate::config::{web_config_yaml, KEPLER_PORT, TLS_DIR};
use crate::crd::{PowerMonitor, Resolved, SecurityMode};

/// Name of every object the operator creates (DaemonSet, Service, ServiceAccount, ...).
pub const NAME: &str = "power-monitor";
/// ClusterRole (and binding) letting `allowedSANames` read `/metrics` in rbac mode.
pub const METRICS_READER: &str = "power-monitor-metrics-reader";
/// Serving certificate (`tls.crt`, `tls.key`) of kepler in rbac mode. On OpenShift the
/// Service annotation makes service-ca create it; elsewhere cert-manager or the admin does.
pub const TLS_SECRET: &str = "power-monitor-tls";
/// ConfigMap holding the Grafana dashboard.
pub const DASHBOARD: &str = "power-monitor-dashboard";
/// Pod template annotation whose change rolls kepler's pods.
pub const CONFIG_HASH: &str = "kepler.system.sustainable.computing.io/config-hash";
/// Label marking what the operator manages (the namespace is only deleted when it carries it).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kepler-operator");

const DASHBOARD_JSON: &str = include_str!("../../deploy/grafana/kepler-dashboard.json");
const ALERT_RULES: &str = include_str!("../../deploy/prometheus/kepler-alerts.yaml");
const RECORDING_RULES: &str = include_str!("../../deploy/prometheus/kepler-recording-rules.yaml");

/// What kind of object a manifest is, enough to address it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `group/version` (or `v1`).
    pub api_version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// URL plural.
    pub plural: &'static str,
    /// Lives in a namespace.
    pub namespaced: bool,
}

#[allow(missing_docs)]
impl Kind {
    pub const NAMESPACE: Kind = Kind::cluster("v1", "Namespace", "namespaces");
    pub const SERVICE_ACCOUNT: Kind = Kind::ns("v1", "ServiceAccount", "serviceaccounts");
    pub const CLUSTER_ROLE: Kind = Kind::cluster(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
    );
    pub const CLUSTER_ROLE_BINDING: Kind = Kind::cluster(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
    );
    pub const CONFIG_MAP: Kind = Kind::ns("v1", "ConfigMap", "configmaps");
    pub const SERVICE: Kind = Kind::ns("v1", "Service", "services");
    pub const DAEMON_SET: Kind = Kind::ns("apps/v1", "DaemonSet", "daemonsets");
    pub const SERVICE_MONITOR: Kind = Kind::ns(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        "servicemonitors",
    );
    pub const PROMETHEUS_RULE: Kind = Kind::ns(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        "prometheusrules",
    );

    const fn ns(api_version: &'static str, kind: &'static str, plural: &'static str) -> Kind {
        Kind {
            api_version,
            kind,
            plural,
            namespaced: true,
        }
    }
    const fn cluster(api_version: &'static str, kind: &'static str, plural: &'static str) -> Kind {
        Kind {
            api_version,
            kind,
            plural,
            namespaced: false,
        }
    }
}

/// One desired object.
#[derive(Clone, Debug)]
pub struct Child {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// The full manifest (apiVersion, kind, metadata, spec...).
    pub manifest: Value,
}

/// Everything the manifests depend on besides the spec.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The owner.
    pub owner: &'a PowerMonitor,
    /// The resolved spec.
    pub resolved: &'a Resolved,
    /// Namespace of the namespaced children.
    pub namespace: &'a str,
    /// Kepler's image.
    pub image: &'a str,
    /// Merged `config.yaml`.
    pub config_yaml: &'a str,
    /// Per mounted secret (spec order), a digest of its data: a changed secret rolls the pods.
    pub secret_digests: &'a [String],
    /// `kube.podInformer.mode` of the merged config (decides the ClusterRole).
    pub pod_informer_mode: &'a str,
    /// The Prometheus Operator's CRDs are installed.
    pub monitoring_crds: bool,
}

/// The common labels.
pub fn labels() -> Value {
    json!({
        "app.kubernetes.io/name": "kepler",
        "app.kubernetes.io/part-of": NAME,
        MANAGED_BY.0: MANAGED_BY.1,
    })
}

fn selector() -> Value {
    json!({"app.kubernetes.io/name": "kepler", "app.kubernetes.io/part-of": NAME})
}

/// The digest that goes into the pod template: config text and secret data digests. A change
/// marker, not a security function; kepler-crypto's SHA-256 so a `fips` build links one.
pub fn config_hash(config_yaml: &str, secret_digests: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(config_yaml.as_bytes());
    for d in secret_digests {
        h.update(&[0]).update(d.as_bytes());
    }
    hex(&h.finish()[..16])
}

/// A digest of a Secret's data (keys sorted, as the API returns them in a map).
pub fn secret_digest(data: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(&(k.len() as u64).to_le_bytes())
            .update(k.as_bytes())
            .update(&(v.len() as u64).to_le_bytes())
            .update(v);
    }
    hex(&h.finish()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every desired child, in apply order (namespace first, DaemonSet after what it mounts).
pub fn desired(i: &Inputs<'_>) -> Vec<Child> {
    let mut out = vec![
        namespace(i),
        service_account(i),
        cluster_role(i),
        cluster_role_binding(i),
        config_map(i),
        dashboard(i),
        service(i),
        daemon_set(i),
    ];
    if i.resolved.security_mode == SecurityMode::Rbac {
        out.extend(metrics_reader(i));
    }
    if i.monitoring_crds {
        out.push(service_monitor(i));
        out.push(prometheus_rule(i));
    }
    out
}

fn owner_ref(pm: &PowerMonitor) -> Value {
    json!([{
        "apiVersion": "kepler.system.sustainable.computing.io/v1alpha1",
        "kind": "PowerMonitor",
        "name": pm.metadata.name,
        "uid": pm.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

fn child(i: &Inputs<'_>, kind: Kind, name: &str, extra_labels: Value, body: Value) -> Child {
    let mut meta = json!({"name": name, "labels": labels(), "ownerReferences": owner_ref(i.owner)});
    if kind.namespaced {
        meta["namespace"] = json!(i.namespace);
    }
    if let (Some(l), Value::Object(extra)) = (meta["labels"].as_object_mut(), extra_labels) {
        l.extend(extra);
    }
    let mut manifest = json!({"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta});
    if let Value::Object(b) = body {
        manifest.as_object_mut().unwrap().extend(b);
    }
    Child {
        kind,
        name: name.into(),
        manifest,
    }
}

fn namespace(i: &Inputs<'_>) -> Child {
    child(i, Kind::NAMESPACE, i.namespace, json!({}), json!({}))
}

fn service_account(i: &Inputs<'_>) -> Child {
    child(i, Kind::SERVICE_ACCOUNT, NAME, json!({}), json!({}))
}

/// Exactly what the pod informer mode needs, plus token and access reviews in rbac mode.
fn cluster_role(i: &Inputs<'_>) -> Child {
    let mut rules = vec![if i.pod_informer_mode == "apiserver" {
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]})
    } else {
        json!({"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]})
    }];
    if i.resolved.security_mode == SecurityMode::Rbac {
        rules.push(json!({"apiGroups": ["authentication.k8s.io"],
                          "resources": ["tokenreviews"], "verbs": ["create"]}));
        rules.push(json!({"apiGroups": ["authorization.k8s.io"],
                          "resources": ["subjectaccessreviews"], "verbs": ["create"]}));
    }
    child(
        i,
        Kind::CLUSTER_ROLE,
        NAME,
        json!({}),
        json!({ "rules": rules }),
    )
}

fn cluster_role_binding(i: &Inputs<'_>) -> Child {
    child(
        i,
        Kind::CLUSTER_ROLE_BINDING,
        NAME,
        json!({}),
        json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": i.namespace}],
        }),
    )
}

fn metrics_reader(i: &Inputs<'_>) -> Vec<Child> {
    let subjects: Vec<Value> = i
        .resolved
        .allowed_sa_names
        .iter()
        .map(|(ns, n)| json!({"kind": "ServiceAccount", "name": n, "namespace": ns}))
        .collect();
    vec![
        child(
            i,
            Kind::CLUSTER_ROLE,
            METRICS_READER,
            json!({}),
            json!({"rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
        ),
        child(
            i,
            Kind::CLUSTER_ROLE_BINDING,
            METRICS_READER,
            json!({}),
            json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": METRICS_READER},
                "subjects": subjects,
            }),
        ),
    ]
}

fn config_map(i: &Inputs<'_>) -> Child {
    let mut data = json!({"config.yaml": i.config_yaml});
    if i.resolved.security_mode == SecurityMode::Rbac {
        data["web-config.yaml"] = json!(web_config_yaml());
    }
    child(
        i,
        Kind::CONFIG_MAP,
        NAME,
        json!({}),
        json!({ "data": data }),
    )
}

fn dashboard(i: &Inputs<'_>) -> Child {
    child(
        i,
        Kind::CONFIG_MAP,
        DASHBOARD,
        // The Grafana Helm chart's dashboard sidecar picks up ConfigMaps with this label.
        json!({"grafana_dashboard": "1"}),
        json!({"data": {"kepler-dashboard.json": DASHBOARD_JSON}}),
    )
}

fn service(i: &Inputs<'_>) -> Child {
    let mut svc = child(
        i,
        Kind::SERVICE,
        NAME,
        json!({}),
        json!({"spec": {
            "clusterIP": "None",
            "selector": selector(),
            "ports": [{"name": "http", "port": KEPLER_PORT, "targetPort": "http", "protocol": "TCP"}],
        }}),
    );
    if i.resolved.security_mode == SecurityMode::Rbac {
        svc.manifest["metadata"]["annotations"] =
            json!({"service.beta.openshift.io/serving-cert-secret-name": TLS_SECRET});
    }
    svc
}

fn daemon_set(i: &Inputs<'_>) -> Child {
    let r = i.resolved;
    let mut mounts = vec![
        json!({"name": "proc", "mountPath": "/host/proc", "readOnly": true}),
        json!({"name": "sys", "mountPath": "/host/sys", "readOnly": true}),
        json!({"name": "config", "mountPath": "/etc/kepler", "readOnly": true}),
    ];
    let mut volumes = vec![
        json!({"name": "proc", "hostPath": {"path": "/proc", "type": "Directory"}}),
        json!({"name": "sys", "hostPath": {"path": "/sys", "type": "Directory"}}),
        json!({"name": "config", "configMap": {"name": NAME}}),
    ];
    if r.security_mode == SecurityMode::Rbac {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({"name": "tls", "secret": {"secretName": TLS_SECRET}}));
    }
    for (n, s) in r.secrets.iter().enumerate() {
        let vol = format!("secret-{n}");
        mounts.push(json!({"name": vol, "mountPath": s.mount_path,
                           "readOnly": s.read_only.unwrap_or(true)}));
        volumes.push(json!({"name": vol, "secret": {"secretName": s.name}}));
    }
    let tolerations = serde_json::to_value(&r.tolerations).expect("tolerations serialize");
    let scheme = if r.security_mode == SecurityMode::Rbac {
        "HTTPS"
    } else {
        "HTTP"
    };
    child(
        i,
        Kind::DAEMON_SET,
        NAME,
        json!({}),
        json!({"spec": {
            "selector": {"matchLabels": selector()},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {
                    "labels": selector(),
                    "annotations": {CONFIG_HASH: config_hash(i.config_yaml, i.secret_digests)},
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "hostPID": true,
                    "nodeSelector": r.node_selector,
                    "tolerations": tolerations,
                    "containers": [{
                        "name": "kepler",
                        "image": i.image,
                        // Preloaded and air-gapped images work without a registry.
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["--config.file=/etc/kepler/config.yaml"],
                        // NODE_IP: kubelet mode polls https://$NODE_IP:10250/pods; without it
                        // kepler falls back to the node name, which pods cannot always resolve.
                        "env": [{"name": "NODE_NAME",
                                 "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "NODE_IP",
                                 "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
                        "ports": [{"name": "http", "containerPort": KEPLER_PORT, "protocol": "TCP"}],
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http",
                                                      "scheme": scheme},
                                          "periodSeconds": 30},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http",
                                                       "scheme": scheme},
                                           "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"memory": "256Mi"}},
                        // As deploy/kubernetes/40-daemonset.yaml: root reads energy_uj,
                        // BPF + PERFMON for eBPF, SYS_PTRACE for /proc/<pid>/exe.
                        "securityContext": {
                            "runAsUser": 0,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"], "add": ["BPF", "PERFMON", "SYS_PTRACE"]},
                        },
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        }}),
    )
}

fn service_monitor(i: &Inputs<'_>) -> Child {
    let mut sm = child(
        i,
        Kind::SERVICE_MONITOR,
        NAME,
        json!({}),
        json!({"spec": {
            "selector": {"matchLabels": selector()},
            "namespaceSelector": {"matchNames": [i.namespace]},
            "endpoints": [{
                "port": "http",
                "interval": "15s",
                "scrapeTimeout": "10s",
                "relabelings": [
                    // The alert rules select job="kepler".
                    {"action": "replace", "targetLabel": "job", "replacement": "kepler"},
                    {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                     "targetLabel": "instance"},
                ],
            }],
        }}),
    );
    if i.resolved.security_mode == SecurityMode::Rbac {
        // Prometheus's own service account token over TLS; its CA must trust the certificate
        // (a `ca.crt` key, as cert-manager writes, is used when present).
        let ep = &mut sm.manifest["spec"]["endpoints"][0];
        ep["scheme"] = json!("https");
        ep["bearerTokenFile"] = json!("/var/run/secrets/kubernetes.io/serviceaccount/token");
        ep["tlsConfig"] = json!({
            "serverName": format!("{NAME}.{}.svc", i.namespace),
            "ca": {"secret": {"name": TLS_SECRET, "key": "ca.crt", "optional": true}},
        });
    }
    sm
}

fn prometheus_rule(i: &Inputs<'_>) -> Child {
    let mut groups = Vec::new();
    for text in [RECORDING_RULES, ALERT_RULES] {
        let v: Value = serde_saphyr::from_str(text).expect("checked-in rule files parse");
        if let Some(g) = v["groups"].as_array() {
            groups.extend(g.iter().cloned());
        }
    }
    child(
        i,
        Kind::PROMETHEUS_RULE,
        NAME,
        json!({}),
        json!({"spec": {"groups": groups}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PowerMonitorSpec;

    fn owner() -> PowerMonitor {
        let mut pm = PowerMonitor::new("power-monitor", PowerMonitorSpec::default());
        pm.metadata.uid = Some("0000-uid".into());
        pm
    }

    fn build(spec: &str, mode: &str, crds: bool) -> Vec<Child> {
        let pm = owner();
        let s: PowerMonitorSpec = serde_json::from_str(spec).unwrap();
        let r = s.resolve().unwrap();
        desired(&Inputs {
            owner: &pm,
            resolved: &r,
            namespace: "power-monitor",
            image: "kepler:1",
            config_yaml: "log: {}\n",
            secret_digests: &[],
            pod_informer_mode: mode,
            monitoring_crds: crds,
        })
    }

    fn find<'a>(cs: &'a [Child], kind: Kind, name: &str) -> &'a Value {
        &cs.iter()
            .find(|c| c.kind == kind && c.name == name)
            .unwrap()
            .manifest
    }

    #[test]
    fn daemonset_mounts_host_trees_read_only_and_secrets() {
        let cs = build(
            r#"{"kepler":{"deployment":{"secrets":[{"name":"bmc","mountPath":"/etc/redfish"}]}}}"#,
            "kubelet",
            false,
        );
        let ds = find(&cs, Kind::DAEMON_SET, NAME);
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostPID"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        // kubelet mode reaches the kubelet at the node's IP (found missing on the real cluster).
        let env = c["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "NODE_IP"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"));
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().all(|m| m["readOnly"] == true));
        assert!(mounts.iter().any(|m| m["mountPath"] == "/etc/redfish"));
        assert_eq!(pod["volumes"][3]["secret"]["secretName"], "bmc");
        assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
        assert_eq!(ds["metadata"]["ownerReferences"][0]["uid"], "0000-uid");
    }

    #[test]
    fn optional_monitoring_objects_only_with_their_crds() {
        let without = build("{}", "kubelet", false);
        assert!(without.iter().all(|c| c.kind != Kind::SERVICE_MONITOR));
        let with = build("{}", "kubelet", true);
        let rule = find(&with, Kind::PROMETHEUS_RULE, NAME);
        assert!(rule["spec"]["groups"].as_array().unwrap().len() >= 2);
    }

    #[test]
    fn cluster_role_follows_informer_mode_and_security() {
        let kubelet = build("{}", "kubelet", false);
        let rules = &find(&kubelet, Kind::CLUSTER_ROLE, NAME)["rules"];
        assert_eq!(
            rules,
            &json!([{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}])
        );
        let rbac = build(
            r#"{"kepler":{"deployment":{"security":{"mode":"rbac","allowedSANames":["mon:prom"]}}}}"#,
            "apiserver",
            false,
        );
        let rules = find(&rbac, Kind::CLUSTER_ROLE, NAME)["rules"]
            .as_array()
            .unwrap();
        assert_eq!(rules[0]["resources"], json!(["pods"]));
        assert_eq!(rules.len(), 3);
        let b = find(&rbac, Kind::CLUSTER_ROLE_BINDING, METRICS_READER);
        assert_eq!(b["subjects"][0]["namespace"], "mon");
        // Tokens only over TLS: the certificate Secret is mounted and named in the web config.
        let pod = &find(&rbac, Kind::DAEMON_SET, NAME)["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][3]["secret"]["secretName"], TLS_SECRET);
        assert_eq!(
            pod["containers"][0]["readinessProbe"]["httpGet"]["scheme"],
            "HTTPS"
        );
        let cm = find(&rbac, Kind::CONFIG_MAP, NAME);
        assert!(cm["data"]["web-config.yaml"]
            .as_str()
            .unwrap()
            .contains("/etc/kepler-tls/tls.crt"));
    }

    #[test]
    fn config_hash_changes_with_config_or_secret() {
        let a = config_hash("x", &[]);
        assert_eq!(a, config_hash("x", &[]));
        assert_ne!(a, config_hash("y", &[]));
        assert_ne!(a, config_hash("x", &["d".into()]));
    }
}
