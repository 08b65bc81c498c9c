//! What we keep of a pod: its identity and the ids of its containers, from either the kubelet's
//! `/pods` list or an API-server watch. Both decode into the same lean [`PodObject`], so both
//! modes share one extraction and keep nothing of the pod spec.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use serde::Deserialize;

/// The kubelet sets this on a static pod: the UID it uses on the node (cgroups, `/pods`).
const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// The kubelet sets this on the API-server mirror of a static pod: the static pod's UID.
const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// A pod as exported: the `pod_id`, `pod_name` and `pod_namespace` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodMeta {
    /// The pod UID as the API reports it.
    pub uid: Arc<str>,
    /// Pod name.
    pub name: Arc<str>,
    /// Pod namespace.
    pub namespace: Arc<str>,
    /// The UID the node uses when it differs from `uid`: a static pod's config hash, which is
    /// what its cgroups are named after, while the API shows a mirror pod with another UID.
    pub node_uid: Option<Arc<str>>,
}

/// A container of a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerMeta {
    /// Container name within the pod (`container_name`).
    pub name: Arc<str>,
    /// Its pod.
    pub pod: Arc<PodMeta>,
}

/// One pod reduced to what the cache indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// The pod.
    pub pod: Arc<PodMeta>,
    /// (container id without the runtime prefix, container name) for every regular, init and
    /// ephemeral container that has or had an id, including the previous instance of a
    /// restarted container (its terminated processes are still exported for a while).
    pub containers: Vec<(Arc<str>, Arc<str>)>,
}

/// A pod decoded with only the fields kepler needs; unknown fields are skipped, missing ones
/// default, so a kubelet or API server of another version never fails the decode.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodObject {
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the pod asks for.
    #[serde(default)]
    pub spec: PodSpecLite,
    /// What the node reports.
    #[serde(default)]
    pub status: PodStatusLite,
}

/// The part of the pod spec kepler reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecLite {
    /// The node the pod is bound to.
    #[serde(default)]
    pub node_name: Option<String>,
}

/// The part of the pod status kepler reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusLite {
    /// Regular containers.
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatusLite>,
    /// Init containers.
    #[serde(default)]
    pub init_container_statuses: Vec<ContainerStatusLite>,
    /// Ephemeral (debug) containers.
    #[serde(default)]
    pub ephemeral_container_statuses: Vec<ContainerStatusLite>,
}

/// One container's status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatusLite {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// `<runtime>://<id>`; absent until the runtime created the container.
    #[serde(default, rename = "containerID")]
    pub container_id: Option<String>,
    /// The previous instance, after a restart.
    #[serde(default)]
    pub last_state: ContainerStateLite,
}

/// A container state; only the terminated one carries an id we need.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerStateLite {
    /// Set when the (previous) instance terminated.
    #[serde(default)]
    pub terminated: Option<TerminatedLite>,
}

/// A terminated container instance.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TerminatedLite {
    /// `<runtime>://<id>` of that instance.
    #[serde(default, rename = "containerID")]
    pub container_id: Option<String>,
}

/// The kubelet's `/pods` answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodObjectList {
    /// The pods.
    #[serde(default)]
    pub items: Vec<PodObject>,
}

impl kube::Resource for PodObject {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The bare id from a status `containerID` such as `containerd://<id>`, `cri-o://<id>` or
/// `docker://<id>`; `None` when empty. An id without a scheme is taken as is.
pub fn bare_container_id(id: &str) -> Option<&str> {
    let bare = match id.split_once("://") {
        Some((_, rest)) => rest,
        None => id,
    };
    (!bare.is_empty()).then_some(bare)
}

impl PodRecord {
    /// Reduces a decoded pod. `None` when it has no UID (never the case for a real pod).
    pub fn from_object(pod: &PodObject) -> Option<PodRecord> {
        let m = &pod.metadata;
        let uid = m.uid.as_deref().filter(|u| !u.is_empty())?;
        let annotations: Option<&BTreeMap<String, String>> = m.annotations.as_ref();
        let node_uid = annotations
            .and_then(|a| a.get(CONFIG_MIRROR).or_else(|| a.get(CONFIG_HASH)))
            .filter(|h| !h.is_empty() && h.as_str() != uid)
            .map(|h| Arc::from(h.as_str()));
        let meta = Arc::new(PodMeta {
            uid: Arc::from(uid),
            name: Arc::from(m.name.as_deref().unwrap_or("")),
            namespace: Arc::from(m.namespace.as_deref().unwrap_or("")),
            node_uid,
        });
        let s = &pod.status;
        let mut containers = Vec::new();
        for c in s
            .container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .chain(&s.ephemeral_container_statuses)
        {
            let name: Arc<str> = Arc::from(c.name.as_str());
            let previous = c
                .last_state
                .terminated
                .as_ref()
                .and_then(|t| t.container_id.as_deref());
            for id in [c.container_id.as_deref(), previous].into_iter().flatten() {
                if let Some(bare) = bare_container_id(id) {
                    if !containers
                        .iter()
                        .any(|(known, _): &(Arc<str>, _)| &**known == bare)
                    {
                        containers.push((Arc::from(bare), Arc::clone(&name)));
                    }
                }
            }
        }
        Some(PodRecord {
            pod: meta,
            containers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const ID_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const ID_D: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    #[test]
    fn strips_every_runtime_scheme() {
        assert_eq!(bare_container_id("containerd://abc"), Some("abc"));
        assert_eq!(bare_container_id("cri-o://abc"), Some("abc"));
        assert_eq!(bare_container_id("docker://abc"), Some("abc"));
        assert_eq!(bare_container_id("abc"), Some("abc"));
        assert_eq!(bare_container_id("containerd://"), None);
        assert_eq!(bare_container_id(""), None);
    }

    #[test]
    fn regular_init_ephemeral_and_restarted_containers_are_all_indexed() {
        let json = format!(
            r#"{{"metadata":{{"name":"web","namespace":"shop","uid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}},
            "spec":{{"nodeName":"n1","containers":[{{"name":"app","image":"x"}}]}},
            "status":{{"phase":"Running",
              "containerStatuses":[{{"name":"app","containerID":"containerd://{ID_A}",
                 "lastState":{{"terminated":{{"exitCode":1,"containerID":"containerd://{ID_B}"}}}}}},
                 {{"name":"waiting"}}],
              "initContainerStatuses":[{{"name":"init","containerID":"containerd://{ID_C}"}}],
              "ephemeralContainerStatuses":[{{"name":"debug","containerID":"containerd://{ID_D}"}}]}}}}"#
        );
        let pod: PodObject = serde_json::from_str(&json).unwrap();
        let r = PodRecord::from_object(&pod).unwrap();
        assert_eq!(&*r.pod.name, "web");
        assert_eq!(&*r.pod.namespace, "shop");
        assert_eq!(r.pod.node_uid, None);
        let got: Vec<(&str, &str)> = r.containers.iter().map(|(i, n)| (&**i, &**n)).collect();
        assert_eq!(
            got,
            vec![
                (ID_A, "app"),
                (ID_B, "app"),
                (ID_C, "init"),
                (ID_D, "debug")
            ]
        );
    }

    #[test]
    fn mirror_pod_carries_the_static_uid_the_node_uses() {
        let json = r#"{"metadata":{"name":"etcd-n1","namespace":"kube-system","uid":"0f0e0d0c-0000-0000-0000-000000000001",
            "annotations":{"kubernetes.io/config.mirror":"6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5","kubernetes.io/config.hash":"6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5"}}}"#;
        let pod: PodObject = serde_json::from_str(json).unwrap();
        let r = PodRecord::from_object(&pod).unwrap();
        assert_eq!(
            r.pod.node_uid.as_deref(),
            Some("6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5")
        );
        // The kubelet's own view of a static pod: uid == config.hash, nothing extra to index.
        let json = r#"{"metadata":{"name":"etcd-n1","namespace":"kube-system","uid":"6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5",
            "annotations":{"kubernetes.io/config.hash":"6b2f0d7ad1c5e4f3a2b1c0d9e8f7a6b5"}}}"#;
        let pod: PodObject = serde_json::from_str(json).unwrap();
        assert_eq!(PodRecord::from_object(&pod).unwrap().pod.node_uid, None);
    }

    #[test]
    fn a_pod_without_uid_is_skipped_and_garbage_is_an_error_not_a_panic() {
        let pod: PodObject = serde_json::from_str(r#"{"metadata":{"name":"x"}}"#).unwrap();
        assert!(PodRecord::from_object(&pod).is_none());
        assert!(serde_json::from_str::<PodObjectList>(r#"{"items":[{"status":7}]}"#).is_err());
    }
}
