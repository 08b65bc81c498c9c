//! The `kepler-operator` binary against a real kube-apiserver (issue 16). Skips without the
//! API server; REQUIRE_K8S=1 makes that a failure.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kepler_operator::{PowerMonitor, CONFIG_HASH, DASHBOARD, NAME};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

const NS: &str = "power-monitor";

fn power_monitor(spec: Value) -> PowerMonitor {
    serde_json::from_value(json!({
        "apiVersion": "kepler.system.sustainable.computing.io/v1alpha1",
        "kind": "PowerMonitor",
        "metadata": {"name": "power-monitor"},
        "spec": spec,
    }))
    .unwrap()
}

async fn daemonset(client: &Client) -> Option<DaemonSet> {
    Api::<DaemonSet>::namespaced(client.clone(), NS)
        .get_opt(NAME)
        .await
        .ok()?
}

fn template_hash(ds: &DaemonSet) -> String {
    ds.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH]
        .clone()
}

fn image(ds: &DaemonSet) -> String {
    ds.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

/// What the DaemonSet controller would write once every pod of the current generation runs.
async fn daemonset_rolled_out(client: &Client, pods: i32) {
    let api = Api::<DaemonSet>::namespaced(client.clone(), NS);
    let generation = api.get(NAME).await.unwrap().metadata.generation.unwrap();
    api.patch_status(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "observedGeneration": generation,
            "currentNumberScheduled": pods, "numberMisscheduled": 0,
            "desiredNumberScheduled": pods, "numberReady": pods,
            "updatedNumberScheduled": pods, "numberAvailable": pods,
        }})),
    )
    .await
    .unwrap();
}

async fn config_yaml(client: &Client) -> Value {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS)
        .get(NAME)
        .await
        .unwrap();
    serde_saphyr::from_str(&cm.data.unwrap()["config.yaml"]).unwrap()
}

fn dynamic(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind);
    Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powermonitor_lifecycle_on_a_real_api_server() {
    let Some((cluster, client)) = cluster_with_crd().await else {
        return;
    };
    let pms = pm_api(&client);

    // The schema enforces the singleton (no CEL on 1.20: a metadata.name pattern).
    let other = serde_json::from_value::<PowerMonitor>(json!({
        "apiVersion": "kepler.system.sustainable.computing.io/v1alpha1",
        "kind": "PowerMonitor", "metadata": {"name": "second"}, "spec": {}}))
    .unwrap();
    let err = pms
        .create(&PostParams::default(), &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("power-monitor"), "{err}");

    let resync = ["--resync-interval", "1s", "--retry-interval", "1s"];
    let mut op = Operator::start(
        &cluster,
        "op-a",
        &[
            &["--kepler.image", "registry.invalid/kepler:1"][..],
            &resync[..],
        ]
        .concat(),
    );
    // 1. An empty spec: every child with the documented defaults.
    let started = std::time::Instant::now();
    pms.create(&PostParams::default(), &power_monitor(json!({})))
        .await
        .unwrap();
    let ds = until(30, "DaemonSet created", || daemonset(&client)).await;
    eprintln!("CR -> DaemonSet created: {:?}", started.elapsed());
    let pod = ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(pod.host_pid, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some(NAME));
    assert_eq!(
        pod.node_selector.as_ref().unwrap()["kubernetes.io/os"],
        "linux"
    );
    assert_eq!(
        pod.tolerations.as_ref().unwrap()[0].operator.as_deref(),
        Some("Exists")
    );
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.invalid/kepler:1"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let mounts = c.volume_mounts.clone().unwrap();
    for path in ["/host/proc", "/host/sys", "/etc/kepler"] {
        let m = mounts.iter().find(|m| m.mount_path == path).unwrap();
        assert_eq!(m.read_only, Some(true), "{path}");
    }
    let owner = &ds.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "PowerMonitor");
    let first_hash = template_hash(&ds);

    let cfg = config_yaml(&client).await;
    assert_eq!(
        cfg["exporter"]["prometheus"]["metricsLevel"],
        json!(["node", "pod", "vm"])
    );
    assert_eq!(cfg["monitor"]["maxTerminated"], 500);
    assert_eq!(cfg["monitor"]["interval"], "5s");
    let svc = Api::<Service>::namespaced(client.clone(), NS)
        .get(NAME)
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get(NAME)
        .await
        .unwrap();
    let role = Api::<ClusterRole>::all(client.clone())
        .get(NAME)
        .await
        .unwrap();
    assert_eq!(
        role.rules.unwrap()[0].resources,
        Some(vec!["nodes/proxy".to_string()])
    );
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get(NAME)
        .await
        .unwrap();
    assert_eq!(binding.subjects.unwrap()[0].namespace.as_deref(), Some(NS));
    let dash = Api::<ConfigMap>::namespaced(client.clone(), NS)
        .get(DASHBOARD)
        .await
        .unwrap();
    assert!(dash.data.unwrap()["kepler-dashboard.json"].contains("kepler_"));

    // 2. Optional CRDs absent: no ServiceMonitor, and the reconcile still succeeds.
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    // No DaemonSet controller here: its status is empty until the test writes it.
    wait_condition(&client, "Available", "Unknown", "DaemonSetOutOfSync").await;
    daemonset_rolled_out(&client, 1).await;
    wait_condition(&client, "Available", "True", "DaemonSetReady").await;
    let pm = pms.get("power-monitor").await.unwrap();
    assert_eq!(
        pm.status
            .as_ref()
            .unwrap()
            .kepler
            .as_ref()
            .unwrap()
            .number_ready,
        1
    );
    assert!(pm
        .finalizers()
        .iter()
        .any(|f| f == kepler_operator::FINALIZER));

    // 3. Steady state: resyncs every second read, and write nothing.
    let reads0 = api_requests(&client, &["GET"], &["daemonsets"]).await;
    let writes0 = api_requests(&client, WRITES, OPERATOR_RESOURCES).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reads1 = api_requests(&client, &["GET"], &["daemonsets"]).await;
    let writes1 = api_requests(&client, WRITES, OPERATOR_RESOURCES).await;
    assert!(
        reads1 >= reads0 + 3,
        "resyncs did not run: {reads0} -> {reads1} GETs"
    );
    assert_eq!(
        writes1,
        writes0,
        "writes in a steady state ({} resync reads)",
        reads1 - reads0
    );

    // 4. metricLevels changed: new config, new hash in the pod template.
    let patch = |spec: Value| Patch::Merge(json!({ "spec": spec }));
    pms.patch(
        "power-monitor",
        &PatchParams::default(),
        &patch(json!({"kepler": {"config": {"metricLevels": ["node", "process"]}}})),
    )
    .await
    .unwrap();
    until(30, "config hash changed", || async {
        daemonset(&client)
            .await
            .filter(|d| template_hash(d) != first_hash)
    })
    .await;
    assert_eq!(
        config_yaml(&client).await["exporter"]["prometheus"]["metricsLevel"],
        json!(["node", "process"])
    );
    // The DaemonSet's generation moved: Available follows the controller's report.
    wait_condition(&client, "Available", "Unknown", "DaemonSetOutOfSync").await;
    daemonset_rolled_out(&client, 1).await;
    wait_condition(&client, "Available", "True", "DaemonSetReady").await;
    let (_, _, observed) = condition(&client, "Reconciled").await.unwrap();
    assert_eq!(
        observed,
        pms.get("power-monitor")
            .await
            .unwrap()
            .metadata
            .generation
            .unwrap()
    );

    // 4b. An additional ConfigMap: missing -> ConfigMapNotFound; created -> merged under the
    // written spec fields (its interval wins over the default, not its metricsLevel).
    pms.patch(
        "power-monitor",
        &PatchParams::default(),
        &patch(json!({"kepler": {"config": {"additionalConfigMaps": [{"name": "extra"}]}}})),
    )
    .await
    .unwrap();
    wait_condition(&client, "Reconciled", "False", "ConfigMapNotFound").await;
    let extra: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "extra"},
        "data": {"config.yaml": "monitor:\n  interval: 10s\nexporter:\n  prometheus:\n    metricsLevel: [pod]\n"}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &extra)
        .await
        .unwrap();
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    let cfg = config_yaml(&client).await;
    assert_eq!(cfg["monitor"]["interval"], "10s");
    assert_eq!(
        cfg["exporter"]["prometheus"]["metricsLevel"],
        json!(["node", "process"])
    );
    let second_hash = template_hash(&daemonset(&client).await.unwrap());

    // 5. A missing secret: Reconciled=False/SecretNotFound; created: recovers, pods roll.
    pms.patch(
        "power-monitor",
        &PatchParams::default(),
        &patch(json!({"kepler": {"deployment": {"secrets": [
            {"name": "redfish", "mountPath": "/etc/kepler/redfish"}]}}})),
    )
    .await
    .unwrap();
    wait_condition(&client, "Reconciled", "False", "SecretNotFound").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "redfish"}, "stringData": {"redfish.yaml": "nodes: {}\n"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    let ds = daemonset(&client).await.unwrap();
    let with_secret = template_hash(&ds);
    assert_ne!(with_secret, second_hash);
    let volumes = ds.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    assert!(volumes
        .iter()
        .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("redfish")));
    // Changing the secret's data rolls the pods too.
    secrets
        .patch(
            "redfish",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"redfish.yaml": "nodes: {a: {}}\n"}})),
        )
        .await
        .unwrap();
    until(30, "hash after secret change", || async {
        daemonset(&client)
            .await
            .filter(|d| template_hash(d) != with_secret)
    })
    .await;

    // 6. Optional CRDs installed later: ServiceMonitor and PrometheusRule appear.
    install_crd(
        &client,
        &monitoring_crd("ServiceMonitor", "servicemonitors"),
    )
    .await;
    install_crd(
        &client,
        &monitoring_crd("PrometheusRule", "prometheusrules"),
    )
    .await;
    let sm = dynamic(&client, "ServiceMonitor", "servicemonitors");
    until(30, "ServiceMonitor", || async {
        sm.get_opt(NAME).await.ok()?
    })
    .await;
    let rules = dynamic(&client, "PrometheusRule", "prometheusrules");
    let rule = until(30, "PrometheusRule", || async {
        rules.get_opt(NAME).await.ok()?
    })
    .await;
    assert!(rule.data["spec"]["groups"].as_array().unwrap().len() >= 2);

    // 7. Upgrade: the operator restarted with a new kepler image updates the template.
    op.terminate();
    let _op = Operator::start(
        &cluster,
        "op-b",
        &[
            &["--kepler.image", "registry.invalid/kepler:2"][..],
            &resync[..],
        ]
        .concat(),
    );
    until(30, "image upgraded", || async {
        daemonset(&client)
            .await
            .filter(|d| image(d) == "registry.invalid/kepler:2")
    })
    .await;

    // 8. Deleted: every child goes, cluster-scoped ones included, though the namespace stays
    // Terminating (no namespace controller runs here): the finalizer must not wait for it.
    delete_power_monitor(&client).await;
    assert!(daemonset(&client).await.is_none());
    assert!(Api::<ClusterRole>::all(client.clone())
        .get_opt(NAME)
        .await
        .unwrap()
        .is_none());
    assert!(Api::<ClusterRoleBinding>::all(client.clone())
        .get_opt(NAME)
        .await
        .unwrap()
        .is_none());
    assert!(Api::<Service>::namespaced(client.clone(), NS)
        .get_opt(NAME)
        .await
        .unwrap()
        .is_none());
    assert!(Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get_opt(NAME)
        .await
        .unwrap()
        .is_none());
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    assert!(cms.get_opt(NAME).await.unwrap().is_none());
    assert!(cms.get_opt(DASHBOARD).await.unwrap().is_none());
    assert!(sm.get_opt(NAME).await.unwrap().is_none());
    assert!(rules.get_opt(NAME).await.unwrap().is_none());
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(NS)
        .await
        .unwrap();
    assert!(ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_reconcile_converges_after_restart() {
    let Some((cluster, client)) = cluster_with_crd().await else {
        return;
    };
    let args = [
        "--kepler.image",
        "registry.invalid/kepler:1",
        "--retry-interval",
        "1s",
    ];
    let mut op = Operator::start(&cluster, "op-a", &args);
    pm_api(&client)
        .create(
            &PostParams::default(),
            &power_monitor(json!({"kepler": {"config": {"sampleRate": "10s"}}})),
        )
        .await
        .unwrap();
    // Killed as soon as the first child exists: somewhere in the middle of the reconcile.
    until(30, "namespace created", || async {
        Api::<Namespace>::all(client.clone())
            .get_opt(NS)
            .await
            .ok()?
    })
    .await;
    op.kill();
    let _op = Operator::start(&cluster, "op-b", &args);
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    let ds = daemonset(&client).await.unwrap();
    assert_eq!(image(&ds), "registry.invalid/kepler:1");
    assert_eq!(config_yaml(&client).await["monitor"]["interval"], "10s");
    // Exactly one field manager owns the DaemonSet's spec.
    let managers: Vec<String> = ds
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["kepler-operator"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let Some((cluster, client)) = cluster_with_crd().await else {
        return;
    };
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "operators"}})).unwrap(),
        )
        .await
        .unwrap();
    let args = [
        "--leader-elect",
        "--leader-election-namespace",
        "operators",
        "--lease-duration",
        "3s",
        "--lease-retry-period",
        "500ms",
    ];
    let mut a = Operator::start(&cluster, "replica-a", &args);
    let mut b = Operator::start(&cluster, "replica-b", &args);
    let leases = Api::<Lease>::namespaced(client.clone(), "operators");
    let holder = until(30, "a lease holder", || async {
        leases
            .get_opt("kepler-operator-lock")
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await;
    // For several lease periods the holder stays the same and only it reconciles.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let lease = leases
        .get("kepler-operator-lock")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.holder_identity.as_ref(), Some(&holder));
    pm_api(&client)
        .create(&PostParams::default(), &power_monitor(json!({})))
        .await
        .unwrap();
    until(30, "DaemonSet created", || daemonset(&client)).await;
    let (leader, standby) = if holder.starts_with("replica-a") {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(leader.log().contains("became leader"));
    assert!(
        !standby.log().contains("became leader"),
        "{}",
        standby.log()
    );
    assert!(
        !standby.log().contains("applied"),
        "the standby reconciled:\n{}",
        standby.log()
    );

    // The leader dies without releasing: the standby takes over once the lease expires.
    leader.kill();
    let new_holder = until(30, "failover", || async {
        let h = leases
            .get_opt("kepler-operator-lock")
            .await
            .ok()??
            .spec?
            .holder_identity?;
        (h != holder).then_some(h)
    })
    .await;
    assert!(standby.log().contains("became leader"));
    assert_ne!(new_holder, holder);
    // The new leader reconciles: a deleted child comes back.
    Api::<DaemonSet>::namespaced(client.clone(), NS)
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    until(30, "DaemonSet recreated by the new leader", || {
        daemonset(&client)
    })
    .await;
}
