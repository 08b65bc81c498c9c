//! One reconcile of the PowerMonitor: read inputs, apply children, write status if it changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::apply::{is_not_found, Applier};
use crate::children::{
    self, Inputs, Kind, DASHBOARD, MANAGED_BY, METRICS_READER, NAME, TLS_SECRET,
};
use crate::config::{self, BadConfigYaml};
use crate::crd::{InvalidSpec, PowerMonitor, SINGLETON_NAME};
use crate::status::{self, Verdict, AVAILABLE, RECONCILED};

/// The finalizer that removes cluster-scoped children before the PowerMonitor goes.
pub const FINALIZER: &str = "kepler.system.sustainable.computing.io/finalizer";

/// What the operator was started with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Kepler's image (`--kepler.image`).
    pub kepler_image: String,
    /// Namespace of kepler's namespaced objects (`--deployment-namespace`).
    pub namespace: String,
    /// Reconcile again after this long even when nothing changed.
    pub resync: Duration,
    /// Retry after this long when a reconcile failed.
    pub retry: Duration,
}

/// Shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Applier on that client.
    pub applier: Applier,
    /// Start settings.
    pub settings: Settings,
}

/// Why a reconcile did not finish; [`ReconcileError::reason`] is the `Reconciled=False` reason.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The PowerMonitor is not named `power-monitor` (where the CRD schema cannot enforce it).
    #[error("only one PowerMonitor, named {SINGLETON_NAME}, is reconciled; {0:?} is ignored")]
    NotSingleton(String),
    /// A spec value cannot be deployed.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    /// A Secret in `deployment.secrets`, or the TLS Secret of rbac mode, does not exist.
    #[error("Secret {namespace}/{name} not found (spec.kepler.deployment.secrets, or the serving certificate of security.mode rbac)")]
    SecretNotFound {
        /// Namespace searched.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// A ConfigMap in `config.additionalConfigMaps` does not exist or has no `config.yaml`.
    #[error("ConfigMap {namespace}/{name} (spec.kepler.config.additionalConfigMaps) {problem}")]
    ConfigMapNotFound {
        /// Namespace searched.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// `not found` or `has no config.yaml`.
        problem: &'static str,
    },
    /// An additional `config.yaml` is not a mapping.
    #[error(transparent)]
    BadConfig(#[from] BadConfigYaml),
    /// The deployment namespace is being deleted; nothing can be created in it.
    #[error("namespace {0} is terminating")]
    NamespaceTerminating(String),
    /// An API request failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

impl ReconcileError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::NotSingleton(_) | ReconcileError::InvalidSpec(_) => {
                "InvalidPowerMonitorResource"
            }
            ReconcileError::SecretNotFound { .. } => "SecretNotFound",
            ReconcileError::ConfigMapNotFound { .. } => "ConfigMapNotFound",
            ReconcileError::BadConfig(_) => "InvalidConfig",
            ReconcileError::NamespaceTerminating(_) => "NamespaceTerminating",
            ReconcileError::Api(_) => "ReconcileError",
        }
    }
}

/// Errors of the controller itself (the finalizer bookkeeping); reported and retried.
pub type Error = kube::runtime::finalizer::Error<ReconcileError>;

/// The controller's reconcile function.
pub async fn reconcile(pm: Arc<PowerMonitor>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<PowerMonitor> = Api::all(ctx.client.clone());
    if pm.name_any() != SINGLETON_NAME {
        let err = ReconcileError::NotSingleton(pm.name_any());
        write_status(&ctx, &pm, &Err(err), None)
            .await
            .map_err(|e| Error::ApplyFailed(e.into()))?;
        return Ok(Action::await_change());
    }
    finalizer(&api, FINALIZER, pm, |event| async {
        match event {
            Event::Apply(pm) => apply(&ctx, &pm).await,
            Event::Cleanup(pm) => cleanup(&ctx, &pm).await,
        }
    })
    .await
}

/// Retries failed reconciles after `settings.retry`.
pub fn error_policy(_pm: Arc<PowerMonitor>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "reconcile failed");
    Action::requeue(ctx.settings.retry)
}

async fn apply(ctx: &Context, pm: &PowerMonitor) -> Result<Action, ReconcileError> {
    let outcome = deploy(ctx, pm).await;
    if let Err(e) = &outcome {
        tracing::warn!(reason = e.reason(), error = %e, "reconcile incomplete");
    }
    let ds = Api::<DaemonSet>::namespaced(ctx.client.clone(), &ctx.settings.namespace)
        .get_opt(NAME)
        .await?;
    let writes_failed = matches!(outcome, Err(ReconcileError::Api(_)));
    write_status(ctx, pm, &outcome, ds.as_ref()).await?;
    match outcome {
        Ok(()) => Ok(Action::requeue(ctx.settings.resync)),
        Err(e) if writes_failed => Err(e),
        Err(_) => Ok(Action::requeue(ctx.settings.retry)),
    }
}

async fn write_status(
    ctx: &Context,
    pm: &PowerMonitor,
    outcome: &Result<(), ReconcileError>,
    ds: Option<&DaemonSet>,
) -> Result<(), kube::Error> {
    let reconciled = match outcome {
        Ok(()) => Verdict {
            status: "True",
            reason: "ReconcileSuccess".into(),
            message: "every kepler object is applied".into(),
        },
        Err(e) => Verdict {
            status: "False",
            reason: e.reason().into(),
            message: e.to_string(),
        },
    };
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
        .to_string();
    let next = status::next(
        pm.status.as_ref(),
        pm.metadata.generation.unwrap_or(0),
        &[(RECONCILED, reconciled), (AVAILABLE, status::available(ds))],
        status::counters(ds),
        &now,
    );
    if pm.status.as_ref() == Some(&next) {
        return Ok(());
    }
    Api::<PowerMonitor>::all(ctx.client.clone())
        .patch_status(
            &pm.name_any(),
            &PatchParams {
                field_manager: Some(crate::apply::FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "status": next })),
        )
        .await?;
    Ok(())
}

/// Applies every child; the first failure stops it.
async fn deploy(ctx: &Context, pm: &PowerMonitor) -> Result<(), ReconcileError> {
    let ns = ctx.settings.namespace.as_str();
    let resolved = pm.spec.resolve()?;
    if let Some(live) = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(ns)
        .await?
    {
        if live.metadata.deletion_timestamp.is_some() {
            return Err(ReconcileError::NamespaceTerminating(ns.into()));
        }
    }
    // The namespace first: the secrets and ConfigMaps the spec names live in it.
    let placeholder = Inputs {
        owner: pm,
        resolved: &resolved,
        namespace: ns,
        image: "",
        config_yaml: "",
        secret_digests: &[],
        pod_informer_mode: "",
        monitoring_crds: false,
    };
    let namespace = children::desired(&placeholder).remove(0);
    ctx.applier.ensure(&namespace, ns).await?;

    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let mut additional = Vec::new();
    for name in &resolved.additional_config_maps {
        let missing = |problem| ReconcileError::ConfigMapNotFound {
            namespace: ns.into(),
            name: name.clone(),
            problem,
        };
        let cm = configmaps
            .get_opt(name)
            .await?
            .ok_or(missing("not found"))?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("config.yaml"))
            .ok_or(missing("has no config.yaml"))?;
        additional.push(config::parse_config_yaml(name, text)?);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut secret_digests = Vec::new();
    // rbac mode serves /metrics over TLS from this Secret: a missing one is SecretNotFound too.
    let tls = (resolved.security_mode == crate::crd::SecurityMode::Rbac).then_some(TLS_SECRET);
    let names = resolved.secrets.iter().map(|s| s.name.as_str()).chain(tls);
    for name in names {
        let secret =
            secrets
                .get_opt(name)
                .await?
                .ok_or_else(|| ReconcileError::SecretNotFound {
                    namespace: ns.into(),
                    name: name.into(),
                })?;
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        secret_digests.push(children::secret_digest(&data));
    }
    let config_yaml = config::render(&pm.spec, &resolved, &additional);
    let merged: serde_json::Value =
        serde_saphyr::from_str(&config_yaml).unwrap_or(serde_json::Value::Null);
    let mode = merged["kube"]["podInformer"]["mode"]
        .as_str()
        .unwrap_or("kubelet")
        .to_string();
    let monitoring_crds = monitoring_crds(&ctx.client).await?;
    let inputs = Inputs {
        image: &ctx.settings.kepler_image,
        config_yaml: &config_yaml,
        secret_digests: &secret_digests,
        pod_informer_mode: &mode,
        monitoring_crds,
        ..placeholder
    };
    let wanted = children::desired(&inputs);
    for child in wanted.iter().skip(1) {
        if ctx.applier.ensure(child, ns).await? {
            tracing::info!(kind = child.kind.kind, name = %child.name, "applied");
        }
    }
    // Objects of an earlier spec that this one does not want (rbac mode switched off).
    if !wanted.iter().any(|c| c.name == METRICS_READER) {
        for kind in [Kind::CLUSTER_ROLE_BINDING, Kind::CLUSTER_ROLE] {
            ctx.applier.delete(kind, ns, METRICS_READER).await?;
        }
    }
    Ok(())
}

/// Whether the Prometheus Operator's ServiceMonitor and PrometheusRule kinds are served.
async fn monitoring_crds(client: &Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => {
            let served = |plural: &str| list.resources.iter().any(|r| r.name == plural);
            Ok(served(Kind::SERVICE_MONITOR.plural) && served(Kind::PROMETHEUS_RULE.plural))
        }
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes every child explicitly, then asks for the namespace's deletion without waiting for
/// it: a namespace stuck terminating (a finalizer nobody serves) must not keep the
/// PowerMonitor, and the cluster-scoped objects, around.
async fn cleanup(ctx: &Context, pm: &PowerMonitor) -> Result<Action, ReconcileError> {
    let ns = ctx.settings.namespace.as_str();
    let a = &ctx.applier;
    let mut owned: Vec<(Kind, &str)> = vec![
        (Kind::DAEMON_SET, NAME),
        (Kind::SERVICE, NAME),
        (Kind::CONFIG_MAP, NAME),
        (Kind::CONFIG_MAP, DASHBOARD),
        (Kind::SERVICE_ACCOUNT, NAME),
        (Kind::CLUSTER_ROLE_BINDING, NAME),
        (Kind::CLUSTER_ROLE, NAME),
        (Kind::CLUSTER_ROLE_BINDING, METRICS_READER),
        (Kind::CLUSTER_ROLE, METRICS_READER),
    ];
    if monitoring_crds(&ctx.client).await? {
        owned.push((Kind::SERVICE_MONITOR, NAME));
        owned.push((Kind::PROMETHEUS_RULE, NAME));
    }
    for (kind, name) in owned {
        match a.delete(kind, ns, name).await {
            Ok(_) => {}
            // Deleting in a terminating namespace is allowed; anything else is retried.
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(live) = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(ns)
        .await?
    {
        let ours = live.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            && live
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == pm.metadata.uid.as_ref());
        if ours {
            a.delete(Kind::NAMESPACE, ns, ns).await?;
        }
    }
    tracing::info!(namespace = ns, "kepler removed");
    Ok(Action::await_change())
}
