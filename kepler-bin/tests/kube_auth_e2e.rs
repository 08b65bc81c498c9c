//! `web.auth.kubernetes` (issue 16): the real `kepler` binary checks scrapers' bearer tokens
//! with a real kube-apiserver (TokenReview + SubjectAccessReview). An allowed ServiceAccount
//! with RBAC for `/metrics` gets 200; an allowed one without RBAC, or a bound one that is not
//! allowed, 403; no or a bogus token, 401; probes stay open. Skips without the API server;
//! REQUIRE_K8S=1 makes that a failure.

#[path = "../../kepler-k8s/tests/support/mod.rs"]
mod kube_support;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kube_support::Cluster;
use serde_json::{json, Value};
use support::Kepler;

/// The HTTP status of `GET path`, with a bearer token when given.
fn status(port: u16, path: &str, token: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

async fn post(client: &kube::Client, path: &str, body: Value) -> Value {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let text = client
        .request_text(req)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A ServiceAccount and a bound token for it (TokenRequest API).
async fn service_account_token(client: &kube::Client, ns: &str, name: &str) -> String {
    post(
        client,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        json!({"metadata": {"name": name}}),
    )
    .await;
    let answer = post(
        client,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 3600}}),
    )
    .await;
    answer["status"]["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_allowed_service_account_token_issue_16() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    cluster.ready().await;
    let client = cluster.client().await;
    post(
        &client,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "monitoring"}}),
    )
    .await;
    let prometheus = service_account_token(&client, "monitoring", "prometheus").await;
    let unbound = service_account_token(&client, "monitoring", "unbound").await;
    let other = service_account_token(&client, "default", "other").await;
    // RBAC lets prometheus and other read /metrics; only prometheus and unbound are allowed.
    post(
        &client,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({
        "metadata": {"name": "metrics-reader"},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
    )
    .await;
    post(&client, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json!({
        "metadata": {"name": "metrics-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics-reader"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"},
            {"kind": "ServiceAccount", "name": "other", "namespace": "default"}]})).await;

    let kubeconfig = cluster.kubeconfig(cluster.port, "kepler.kubeconfig");
    let config = cluster.dir.path().join("kepler.yaml");
    std::fs::write(
        &config,
        format!(
            "kube:\n  config: {}\nweb:\n  auth:\n    kubernetes:\n      enabled: true\n      allowedSANames: [\"monitoring:prometheus\", \"monitoring:unbound\"]\n",
            kubeconfig.display()
        ),
    )
    .unwrap();
    let kepler = Kepler::start(&[&format!("--config.file={}", config.display())]);
    let port = kepler.port();
    let mut ready = false;
    for _ in 0..200 {
        if status(port, "/readyz", None) == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "kepler not ready:\n{}", kepler.log());

    assert_eq!(
        status(port, "/metrics", Some(&prometheus)),
        200,
        "{}",
        kepler.log()
    );
    // Cached: the same answer again.
    assert_eq!(status(port, "/metrics", Some(&prometheus)), 200);
    assert_eq!(
        status(port, "/metrics", Some(&unbound)),
        403,
        "allowed but no RBAC"
    );
    assert_eq!(
        status(port, "/metrics", Some(&other)),
        403,
        "RBAC but not allowed"
    );
    assert_eq!(status(port, "/metrics", Some("not-a-token")), 401);
    assert_eq!(status(port, "/metrics", None), 401);
    // Probes carry no token.
    assert_eq!(status(port, "/healthz", None), 200);
}

#[test]
fn a_malformed_allowed_name_is_a_config_error_issue_16() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kepler.yaml");
    std::fs::write(
        &config,
        "web:\n  auth:\n    kubernetes:\n      enabled: true\n      allowedSANames: [prometheus]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg(format!("--config.file={}", config.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("web.auth.kubernetes.allowedSANames"), "{err}");
}
