//! Pod metadata flows through the real engine: names that arrive after a container was first
//! seen reach its container and pod entries, and stay on them once the pod is terminated
//! (issue 8).

use std::sync::Arc;
use std::time::Instant;

use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, AttributorConfig, ContainerInfo, Nanos, PodInfo,
    PowerFrame, PowerSource, ProcessInfo, Runtime, State, Timestamp, ZoneKind,
};
use kepler_k8s::{CacheConfig, PodActivity, PodCache, PodMeta, PodRecord};

const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "5f0c9a56-1c1e-4b8a-9a57-6b1d3c2e4f10";

fn secs(s: u64) -> Timestamp {
    Timestamp(s * 1_000_000_000)
}

#[test]
fn names_reach_container_and_pod_entries_and_survive_termination_issue_8() {
    let info = Arc::new(ProcessInfo::new("nginx", "/usr/sbin/nginx").with_container(
        ContainerInfo::new(CID, "", Runtime::Containerd).with_pod(PodInfo::new(UID, "", "")),
    ));
    let activity = FakeActivity {
        cpus: 2,
        background_permille: 0,
        processes: vec![FakeProcess {
            pid: 42,
            start_time: 7,
            start: secs(0),
            end: Some(secs(25)),
            permille: 500,
            info,
        }],
        failing: false,
    };
    let cache = PodCache::new(CacheConfig::default());
    let mut source = PodActivity::new(activity, cache.clone());
    let mut power = FakePower::constant(&[(ZoneKind::Package, 0, 50.0)], u64::MAX);
    let mut engine = Attributor::new(
        AttributorConfig::builder()
            .terminated_ttl(Nanos(60_000_000_000))
            .build(),
    );
    let mut pf = PowerFrame::default();
    let mut af = ActivityFrame::default();
    let mut step = |t: u64| {
        pf.clear();
        power.read(secs(t), &mut pf);
        af.clear();
        source.read(secs(t), &mut af).unwrap();
        engine.step(&pf, Some(&af), secs(t))
    };
    let snap = step(5);
    assert_eq!(
        &*snap.pods[0].info.name, "",
        "nothing known before the first list"
    );

    cache.replace_all(
        vec![PodRecord {
            pod: Arc::new(PodMeta {
                uid: UID.into(),
                name: "web-0".into(),
                namespace: "shop".into(),
                node_uid: None,
            }),
            containers: vec![(CID.into(), "nginx".into())],
        }],
        Instant::now(),
    );
    step(10);
    let snap = step(15);
    assert_eq!(snap.containers.len(), 1);
    assert_eq!(&*snap.containers[0].info.name, "nginx");
    let pod = &snap.pods[0];
    assert_eq!(
        (&*pod.info.id, &*pod.info.name, &*pod.info.namespace),
        (UID, "web-0", "shop")
    );
    assert!(snap.pods[0].energy.total.sum() > 0);

    // The pod is deleted and its process exits: it stays exported as terminated, named.
    cache.replace_all(vec![], Instant::now());
    let snap = step(30);
    assert!(matches!(snap.pods[0].state, State::Terminated { .. }));
    assert_eq!(&*snap.pods[0].info.name, "web-0");
    assert_eq!(&*snap.containers[0].info.name, "nginx");
}
