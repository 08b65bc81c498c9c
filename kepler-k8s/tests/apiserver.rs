//! `apiserver` mode against a real kube-apiserver (Debian's kubernetes 1.20.2 source, built by
//! `scripts/kube-apiserver.sh`) and Debian's etcd. Skips when they are not available, fails
//! instead when REQUIRE_K8S=1 (issue 8).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kepler_core::Timestamp;
use kepler_k8s::{
    CacheConfig, InformerConfig, InformerMode, Lookup, PodCache, PodInformer, RequestKind,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{eventually, Cluster, Proxy};

const NODE: &str = "node-a";

fn cid(n: u32) -> String {
    format!("{n:064x}")
}

fn pod(name: &str, node: &str, containers: &[&str]) -> Pod {
    let cs: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "registry.invalid/app:1"}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": cs},
    }))
    .unwrap()
}

/// What a kubelet would report: running containers with these ids.
async fn set_status(
    api: &Api<Pod>,
    name: &str,
    containers: &[(&str, String)],
    init: &[(&str, String)],
) {
    let status = |list: &[(&str, String)]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|(n, id)| {
                json!({"name": n, "containerID": format!("containerd://{id}"), "ready": true,
                       "restartCount": 0, "image": "registry.invalid/app:1", "imageID": "",
                       "state": {"running": {"startedAt": "2026-11-24T10:00:00Z"}}})
            })
            .collect()
    };
    let mut s = json!({"phase": "Running", "containerStatuses": status(containers)});
    if !init.is_empty() {
        s["initContainerStatuses"] = json!(status(init));
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": s })),
    )
    .await
    .unwrap();
}

async fn delete_now(api: &Api<Pod>, name: &str) {
    api.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
}

fn container_of(cache: &PodCache, id: &str) -> Option<(String, String, String)> {
    match cache.view().lookup(id, None, Timestamp(0)) {
        Lookup::Container(c) => Some((
            c.name.to_string(),
            c.pod.name.to_string(),
            c.pod.namespace.to_string(),
        )),
        _ => None,
    }
}

fn informer_config(kubeconfig: std::path::PathBuf) -> InformerConfig {
    let mut cfg = InformerConfig::new(NODE);
    cfg.mode = InformerMode::ApiServer;
    cfg.kubeconfig = Some(kubeconfig);
    cfg.cache = CacheConfig {
        negative_ttl: Duration::from_secs(60),
        deleted_retention: Duration::from_millis(300),
    };
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_this_node_map_updates_and_deletes_are_seen_issue_8() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    cluster.ready().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Before the informer starts: one pod here, one on another node.
    pods.create(
        &PostParams::default(),
        &pod("web", NODE, &["app", "sidecar"]),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("elsewhere", "node-b", &["app"]),
    )
    .await
    .unwrap();
    set_status(&pods, "web", &[("app", cid(1)), ("sidecar", cid(2))], &[]).await;
    set_status(&pods, "elsewhere", &[("app", cid(9))], &[]).await;

    let cfg = informer_config(cluster.kubeconfig(cluster.port, "kepler.kubeconfig"));
    let informer = PodInformer::start(&cfg).await.unwrap();
    let cache = informer.cache().clone();
    eventually(20, "the initial list", || cache.stats().synced).await;
    assert_eq!(
        container_of(&cache, &cid(1)),
        Some(("app".into(), "web".into(), "default".into()))
    );
    assert_eq!(container_of(&cache, &cid(2)).unwrap().0, "sidecar");
    assert_eq!(
        container_of(&cache, &cid(9)),
        None,
        "a pod of node-b leaked in"
    );

    // A pod created after the list, with an init container: seen through the watch.
    pods.create(&PostParams::default(), &pod("job", NODE, &["work"]))
        .await
        .unwrap();
    set_status(&pods, "job", &[("work", cid(3))], &[("setup", cid(4))]).await;
    eventually(10, "the new pod", || {
        container_of(&cache, &cid(4)).is_some()
    })
    .await;
    assert_eq!(container_of(&cache, &cid(3)).unwrap().1, "job");
    assert_eq!(container_of(&cache, &cid(4)).unwrap().0, "setup");

    // A container restarts with a new id: the new id maps, the old one still does.
    set_status(&pods, "web", &[("app", cid(5)), ("sidecar", cid(2))], &[]).await;
    eventually(10, "the update", || container_of(&cache, &cid(5)).is_some()).await;
    assert_eq!(
        container_of(&cache, &cid(1)),
        None,
        "replaced status, old id gone"
    );

    // An id in no pod is a miss, cached: the second lookup is a negative-cache hit and no
    // request is sent for it.
    let before = cache.stats();
    let unknown = cid(77);
    assert_eq!(
        cache.view().lookup(&unknown, None, Timestamp(1)),
        Lookup::Miss
    );
    assert_eq!(
        cache.view().lookup(&unknown, None, Timestamp(2)),
        Lookup::Miss
    );
    let after = cache.stats();
    assert_eq!(after.misses, before.misses + 1);
    assert_eq!(after.negative_hits, before.negative_hits + 1);
    assert_eq!(after.negative_entries, before.negative_entries + 1);
    // The id shows up in a pod later: found at once, the negative entry does not hide it.
    set_status(
        &pods,
        "job",
        &[("work", cid(3)), ("late", unknown.clone())],
        &[("setup", cid(4))],
    )
    .await;
    eventually(10, "the late container", || {
        container_of(&cache, &unknown).is_some()
    })
    .await;

    // Delete with grace period 0 (no kubelet): kept for the retention, then gone.
    delete_now(&pods, "job").await;
    eventually(10, "the deleted pod to expire", || {
        container_of(&cache, &cid(3)).is_none()
    })
    .await;
    assert!(container_of(&cache, &cid(5)).is_some());

    // One list and one watch per node, whatever happened above.
    let st = cache.stats();
    let count = |k: RequestKind| st.requests.iter().find(|(kind, _)| *kind == k).unwrap().1;
    assert_eq!(count(RequestKind::List).ok, 1, "{st:?}");
    assert_eq!(count(RequestKind::Watch).ok, 1, "{st:?}");
    assert_eq!(count(RequestKind::KubeletPods).ok, 0);
    assert_eq!(st.relists, 0);
    drop(informer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_restart_and_relists_after_410_gone_issue_8() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    cluster.ready().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a", NODE, &["app"]))
        .await
        .unwrap();
    set_status(&pods, "a", &[("app", cid(1))], &[]).await;

    // The informer talks through a proxy the test can cut.
    let proxy = Proxy::start(cluster.port).await;
    let cfg = informer_config(cluster.kubeconfig(proxy.port, "kepler.kubeconfig"));
    let informer = PodInformer::start(&cfg).await.unwrap();
    let cache = informer.cache().clone();
    eventually(20, "the initial list", || {
        container_of(&cache, &cid(1)).is_some()
    })
    .await;

    // 1. The API server restarts: the watch resumes and sees what changed after.
    cluster.restart_apiserver();
    cluster.ready().await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("b", NODE, &["app"]))
        .await
        .unwrap();
    set_status(&pods, "b", &[("app", cid(2))], &[]).await;
    eventually(60, "a pod created after the restart", || {
        container_of(&cache, &cid(2)).is_some()
    })
    .await;
    assert!(cache.stats().watch_errors >= 1 || cache.stats().requests[2].1.ok >= 2);
    assert!(
        container_of(&cache, &cid(1)).is_some(),
        "kept across the restart"
    );

    // 2. Partition: while the informer is cut off, pods change and etcd compacts its history,
    // so the watch's resourceVersion is gone: 410 Gone, a relist, and the cache is replaced.
    let relists = cache.stats().relists;
    proxy.unplug();
    delete_now(&pods, "a").await;
    pods.create(&PostParams::default(), &pod("c", NODE, &["app"]))
        .await
        .unwrap();
    set_status(&pods, "c", &[("app", cid(3))], &[]).await;
    cluster.etcd_compact();
    proxy.plug();
    eventually(60, "the relist after 410 Gone", || {
        cache.stats().relists > relists && container_of(&cache, &cid(3)).is_some()
    })
    .await;
    eventually(10, "the pod deleted during the partition to expire", || {
        container_of(&cache, &cid(1)).is_none()
    })
    .await;
    assert!(container_of(&cache, &cid(2)).is_some());
    drop(informer);
}
