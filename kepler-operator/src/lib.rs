//! The Power Monitoring Operator: one cluster-scoped `PowerMonitor` named `power-monitor`
//! installs, configures, upgrades and removes kepler (issue 16).
//!
//! ```text
//! PowerMonitor ──watch──▶ Controller ──reconcile──▶ resolve spec (one set of defaults)
//!  Secrets, ConfigMaps,                              │ read additional ConfigMaps + Secrets
//!  DaemonSet ─────watch──▶ (same key)                ▼
//!                                         children::desired (pure manifests)
//!                                                    │ apply::Applier: GET, compare, SSA only on change
//!                                                    ▼
//!                                         status: Reconciled / Available, written on change
//! ```
//!
//! The API follows upstream kepler-operator v0.24 (group `kepler.system.sustainable.computing.io`,
//! version `v1alpha1`); the defaults are in [`Defaults`] and apply however much of the spec is
//! missing. Two replicas are safe with [`leader`] election on a Lease.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
mod children;
mod config;
mod crd;
pub mod leader;
mod reconcile;
mod status;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Client, CustomResourceExt};

pub use apply::{is_subset, Applier, FIELD_MANAGER};
pub use children::{config_hash, labels, Kind, CONFIG_HASH, DASHBOARD, METRICS_READER, NAME};
pub use config::KEPLER_PORT;
pub use crd::{
    parse_duration, Condition, ConfigMapRef, ConfigSpec, Defaults, DeploymentSpec, InvalidSpec,
    KeplerSpec, KeplerStatus, LogLevel, MetricLevel, PowerMonitor, PowerMonitorSpec,
    PowerMonitorStatus, Resolved, SecretRef, SecurityMode, SecuritySpec, SINGLETON_NAME,
};
pub use reconcile::{Context, ReconcileError, Settings, FINALIZER};
pub use status::{AVAILABLE, RECONCILED};

/// The CRD as YAML, generated from the Rust types, with the singleton name enforced by the
/// schema (`metadata.name` restrictions are allowed in structural schemas, unlike CEL rules
/// which need Kubernetes 1.25+).
pub fn crd_yaml() -> String {
    let mut crd = serde_json::to_value(PowerMonitor::crd()).expect("a CRD serializes");
    for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
        let schema = &mut version["schema"]["openAPIV3Schema"];
        schema["properties"]["metadata"] = serde_json::json!({
            "type": "object",
            "properties": {"name": {"type": "string", "pattern": format!("^{SINGLETON_NAME}$")}},
        });
        strip_null_enum_values(schema);
        schema["description"] = serde_json::json!(
            "PowerMonitor deploys kepler on every selected node. One per cluster, named power-monitor."
        );
    }
    format!(
        "# Generated from kepler-operator's Rust types: `kepler-operator --print-crd`.\n# Do not edit: the test crd_drift fails when this file and the types differ.\n{}",
        serde_saphyr::to_string(&crd).expect("a CRD serializes")
    )
}

/// kube-derive lists `null` among an optional enum's values; kube-apiserver 1.20 fails to
/// convert such a schema (and reports it as "per-version schemas may not all be set to
/// identical values"). `nullable: true` already allows null.
fn strip_null_enum_values(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Array(values)) = m.get_mut("enum") {
                values.retain(|e| !e.is_null());
            }
            m.values_mut().for_each(strip_null_enum_values);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_null_enum_values),
        _ => {}
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run_controller(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = settings.namespace.clone();
    let singleton = || Some(ObjectRef::<PowerMonitor>::new(SINGLETON_NAME));
    let ctx = Arc::new(Context {
        applier: Applier::new(client.clone()),
        client: client.clone(),
        settings,
    });
    // Children are namespaced while their owner is cluster-scoped: map every event to the
    // singleton by name instead of through owner references.
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        children::MANAGED_BY.0,
        children::MANAGED_BY.1
    ));
    Controller::new(
        Api::<PowerMonitor>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<DaemonSet>::namespaced(client.clone(), &ns),
        managed,
        move |_| singleton(),
    )
    .watches(
        Api::<Secret>::namespaced(client.clone(), &ns),
        watcher::Config::default(),
        move |_| singleton(),
    )
    .watches(
        Api::<ConfigMap>::namespaced(client, &ns),
        watcher::Config::default(),
        move |_| singleton(),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile::reconcile, reconcile::error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "reconcile not run");
        }
    })
    .await;
}
