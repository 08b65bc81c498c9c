//! deploy/operator/ on a real kube-apiserver: the operator runs as the ServiceAccount of
//! rbac.yaml (a token from the TokenRequest API) and deploys and removes the example
//! PowerMonitor with exactly the permissions checked in. Skips without the API server;
//! REQUIRE_K8S=1 makes that a failure.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kepler_operator::{PowerMonitor, NAME};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};

fn deploy_file(name: &str) -> String {
    let path = format!("{}/../deploy/operator/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Creates every document of a multi-document manifest.
async fn create_all(client: &Client, yaml: &str) {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap();
        let (group, version) = match doc["apiVersion"].as_str().unwrap().rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                doc["apiVersion"].as_str().unwrap().to_string(),
            ),
        };
        let plural = format!("{}s", kind.to_lowercase());
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&group, &version, kind),
            &plural,
        );
        let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
        let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{kind} {}: {e}", doc["metadata"]["name"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_with_the_checked_in_rbac_and_example() {
    let Some((cluster, client)) = cluster_with_crd().await else {
        return;
    };
    create_all(&client, &deploy_file("rbac.yaml")).await;
    // A bound token of the operator's ServiceAccount, as the kubelet would mount it.
    let req = http::Request::post(
        "/api/v1/namespaces/kepler-operator/serviceaccounts/kepler-operator/token",
    )
    .header("content-type", "application/json")
    .body(
        serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}))
        .unwrap(),
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    let token = answer["status"]["token"].as_str().unwrap();
    let kubeconfig = support::write_kubeconfig(
        &cluster.dir.path().join("operator-sa.kubeconfig"),
        &format!("https://127.0.0.1:{}", cluster.port),
        &cluster.ca_file(),
        token,
    );
    let op = Operator::start_with(
        &cluster,
        "operator-sa",
        &kubeconfig,
        &[
            "--leader-elect",
            "--leader-election-namespace",
            "kepler-operator",
            "--retry-interval",
            "1s",
        ],
    );
    let example: PowerMonitor = serde_saphyr::from_str(&deploy_file("powermonitor.yaml")).unwrap();
    pm_api(&client)
        .create(&PostParams::default(), &example)
        .await
        .unwrap();
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    let ds = Api::<DaemonSet>::namespaced(client.clone(), "power-monitor");
    ds.get(NAME).await.unwrap();
    // rbac mode: the operator grants kepler the review APIs, which it must hold itself.
    pm_api(&client)
        .patch(
            "power-monitor",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"kepler": {"deployment": {"security":
                {"mode": "rbac", "allowedSANames": ["monitoring:prometheus"]}}}}})),
        )
        .await
        .unwrap();
    // rbac mode serves over TLS: without the certificate Secret it cannot deploy.
    wait_condition(&client, "Reconciled", "False", "SecretNotFound").await;
    let tls: Secret = serde_json::from_value(json!({
        "metadata": {"name": "power-monitor-tls"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "placeholder", "tls.key": "placeholder"}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "power-monitor")
        .create(&PostParams::default(), &tls)
        .await
        .unwrap();
    let roles = Api::<ClusterRole>::all(client.clone());
    until(30, "metrics reader role", || async {
        roles.get_opt(kepler_operator::METRICS_READER).await.ok()?
    })
    .await;
    wait_condition(&client, "Reconciled", "True", "ReconcileSuccess").await;
    delete_power_monitor(&client).await;
    assert!(ds.get_opt(NAME).await.unwrap().is_none());
    assert!(roles.get_opt(NAME).await.unwrap().is_none());
    assert!(!op.log().contains("forbidden"), "{}", op.log());
}
