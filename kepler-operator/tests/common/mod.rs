//! The operator binary against a real kube-apiserver (kepler-k8s's test support: Debian's etcd
//! and a kube-apiserver 1.20.2 built by scripts/kube-apiserver.sh). No controllers run there:
//! tests write DaemonSet status themselves.

#![allow(dead_code)]

#[path = "../../../kepler-k8s/tests/support/mod.rs"]
pub mod support;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kepler_operator::PowerMonitor;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
pub use support::Cluster;

/// Polls `f` every 100 ms until it yields `Some` or `secs` pass.
pub async fn until<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the API server and installs the checked-in CRD (proof the API server accepts it).
pub async fn cluster_with_crd() -> Option<(Cluster, Client)> {
    let cluster = Cluster::start()?;
    cluster.ready().await;
    let client = cluster.client().await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/operator/crd.yaml");
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    install_crd(&client, &crd).await;
    Some((cluster, client))
}

/// Creates a CRD and waits until its resource is served.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), crd)
        .await
        .unwrap_or_else(|e| panic!("CRD {:?} rejected: {e}", crd.metadata.name));
    let name = crd.metadata.name.clone().unwrap();
    until(30, "CRD established", || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let c = crds.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// A minimal CRD of the Prometheus Operator's (schema left open), for the optional objects.
pub fn monitoring_crd(kind: &str, plural: &str) -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": kind, "plural": plural},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap()
}

/// One running `kepler-operator` process, killed on drop.
pub struct Operator {
    pub child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(cluster: &Cluster, name: &str, args: &[&str]) -> Operator {
        let kubeconfig = cluster.kubeconfig(cluster.port, &format!("{name}.kubeconfig"));
        Operator::start_with(cluster, name, &kubeconfig, args)
    }

    /// Started with this kubeconfig (e.g. a service account's token).
    pub fn start_with(
        cluster: &Cluster,
        name: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> Operator {
        let log = cluster.dir.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_kepler-operator"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "kepler_operator=debug,info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Operator { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} (last lines) ---", self.log.display());
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
    }
}

pub fn pm_api(client: &Client) -> Api<PowerMonitor> {
    Api::all(client.clone())
}

/// Deletes the PowerMonitor and waits (30 s at most) until it is gone, which takes the
/// operator's finalizer: it must clean up the children first.
pub async fn delete_power_monitor(client: &Client) {
    let pms = pm_api(client);
    pms.delete("power-monitor", &DeleteParams::default())
        .await
        .unwrap();
    until(30, "PowerMonitor gone", || async {
        pms.get_opt("power-monitor")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

/// `(status, reason)` of a condition of the PowerMonitor.
pub async fn condition(client: &Client, type_: &str) -> Option<(String, String, i64)> {
    let pm = pm_api(client).get_opt("power-monitor").await.ok()??;
    let c = pm
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.observed_generation))
}

/// Waits until a condition has this status and reason.
pub async fn wait_condition(client: &Client, type_: &str, status: &str, reason: &str) {
    until(30, &format!("{type_}={status}/{reason}"), || async {
        let (s, r, _) = condition(client, type_).await?;
        (s == status && r == reason).then_some(())
    })
    .await
}

/// Write requests the API server served, by resource, from its `apiserver_request_total`.
pub async fn api_requests(client: &Client, verbs: &[&str], resources: &[&str]) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    let mut total = 0u64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let verb = label("verb").unwrap_or_default();
        let resource = label("resource").unwrap_or_default();
        if verbs.contains(&verb.as_str()) && resources.contains(&resource.as_str()) {
            total += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        }
    }
    total
}

/// Every write verb of the API server's metrics.
pub const WRITES: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];
/// Every resource the operator reads or writes (leases excluded: leader election renews).
pub const OPERATOR_RESOURCES: &[&str] = &[
    "powermonitors",
    "namespaces",
    "serviceaccounts",
    "clusterroles",
    "clusterrolebindings",
    "configmaps",
    "services",
    "daemonsets",
    "secrets",
    "servicemonitors",
    "prometheusrules",
];
