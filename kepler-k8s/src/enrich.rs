//! An [`ActivitySource`] wrapper that fills container and pod names from the [`PodCache`].
//!
//! The inner source (procfs, eBPF) knows container ids and pod UIDs from cgroup paths only.
//! After each read, every containerised process gets a [`ProcessInfo`] with the container name
//! and the pod's name and namespace. The result is memoised per process and reused as long as
//! neither the process's own info nor the cache changed, so a steady node costs one hash probe
//! per process per tick and allocates nothing.

use std::collections::HashMap;
use std::sync::Arc;

use kepler_core::{
    ActivityFrame, ActivitySource, ContainerInfo, PodInfo, ProcessInfo, SourceError, Timestamp,
};

use crate::cache::{Lookup, PodCache};

struct ContainerMemo {
    source: ContainerInfo,
    generation: u64,
    out: ContainerInfo,
    seen: u64,
}

struct Memo {
    source: Arc<ProcessInfo>,
    generation: u64,
    out: Arc<ProcessInfo>,
    seen: u64,
}

/// Wraps an activity source and adds pod metadata to what it reads.
pub struct PodActivity<A> {
    inner: A,
    cache: PodCache,
    memo: HashMap<(u32, u64), Memo>,
    container_memo: HashMap<Arc<str>, ContainerMemo>,
    tick: u64,
}

impl<A: ActivitySource> PodActivity<A> {
    /// Wraps `inner`; lookups read `cache`, which the informer fills in the background.
    pub fn new(inner: A, cache: PodCache) -> PodActivity<A> {
        PodActivity {
            inner,
            cache,
            memo: HashMap::new(),
            container_memo: HashMap::new(),
            tick: 0,
        }
    }

    /// The wrapped source.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn enrich(&mut self, at: Timestamp, out: &mut ActivityFrame) {
        self.tick += 1;
        let tick = self.tick;
        let mut view = self.cache.view();
        let generation = view.generation();
        for sample in &mut out.processes {
            let Some(container) = &sample.info.container else {
                continue;
            };
            let key = (sample.pid, sample.start_time);
            if let Some(m) = self.memo.get_mut(&key) {
                if Arc::ptr_eq(&m.source, &sample.info) && m.generation == generation {
                    m.seen = tick;
                    sample.info = Arc::clone(&m.out);
                    continue;
                }
            }
            let hint = container.pod.as_ref().map(|p| &*p.id);
            let found = view.lookup(&container.id, hint, at);
            let enriched = enrich_container(container, found).map(|c| {
                let mut v =
                    ProcessInfo::new(Arc::clone(&sample.info.comm), Arc::clone(&sample.info.exe))
                        .with_container(c);
                v.vm = sample.info.vm.clone();
                v
            });
            let out_info = match enriched {
                Some(info) => Arc::new(info),
                // A pod that left the cache keeps the names it had for the rest of its
                // processes' lives (they are still exported, then kept as terminated).
                None => match self.memo.get(&key) {
                    Some(m) if Arc::ptr_eq(&m.source, &sample.info) => Arc::clone(&m.out),
                    _ => Arc::clone(&sample.info),
                },
            };
            self.memo.insert(
                key,
                Memo {
                    source: Arc::clone(&sample.info),
                    generation,
                    out: Arc::clone(&out_info),
                    seen: tick,
                },
            );
            sample.info = out_info;
        }
        // Containers' cgroup CPU accounting carries the same identity: enrich it the same way
        // so a container's info is the same whichever path charged it this tick.
        for usage in &mut out.containers {
            let id = Arc::clone(&usage.info.id);
            if let Some(m) = self.container_memo.get_mut(&id) {
                if m.source == usage.info && m.generation == generation {
                    m.seen = tick;
                    usage.info = m.out.clone();
                    continue;
                }
            }
            let hint = usage.info.pod.as_ref().map(|p| &*p.id);
            let found = view.lookup(&usage.info.id, hint, at);
            let out_info = match enrich_container(&usage.info, found) {
                Some(c) => c,
                None => match self.container_memo.get(&id) {
                    Some(m) if m.source == usage.info => m.out.clone(),
                    _ => usage.info.clone(),
                },
            };
            self.container_memo.insert(
                id,
                ContainerMemo {
                    source: usage.info.clone(),
                    generation,
                    out: out_info.clone(),
                    seen: tick,
                },
            );
            usage.info = out_info;
        }
        drop(view);
        self.memo.retain(|_, m| m.seen == tick);
        self.container_memo.retain(|_, m| m.seen == tick);
    }
}

/// The container with its name (when known) and its pod's identity, or `None` on a miss.
fn enrich_container(container: &ContainerInfo, found: Lookup) -> Option<ContainerInfo> {
    match found {
        Lookup::Container(meta) => Some(with_pod(
            container,
            Some(meta.name),
            &meta.pod.uid,
            &meta.pod.name,
            &meta.pod.namespace,
        )),
        Lookup::Pod(pod) => Some(with_pod(
            container,
            None,
            &pod.uid,
            &pod.name,
            &pod.namespace,
        )),
        Lookup::Miss => None,
    }
}

/// The container with its name (when known) and its pod's identity. The pod id from the
/// cgroup path wins over the API's when both exist: for a static pod the node's UID (its
/// config hash) names the cgroups, and keeping it keeps the series stable across modes.
fn with_pod(
    container: &ContainerInfo,
    container_name: Option<Arc<str>>,
    api_uid: &Arc<str>,
    name: &Arc<str>,
    namespace: &Arc<str>,
) -> ContainerInfo {
    let id = match &container.pod {
        Some(p) if !p.id.is_empty() => Arc::clone(&p.id),
        _ => Arc::clone(api_uid),
    };
    ContainerInfo::new(
        Arc::clone(&container.id),
        container_name.unwrap_or_else(|| Arc::clone(&container.name)),
        container.runtime,
    )
    .with_pod(PodInfo::new(id, Arc::clone(name), Arc::clone(namespace)))
}

impl<A: ActivitySource> ActivitySource for PodActivity<A> {
    fn read(&mut self, at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
        self.inner.read(at, out)?;
        self.enrich(at, out);
        Ok(())
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::meta::{PodMeta, PodRecord};
    use kepler_core::{Nanos, NodeCpu, ProcessSample, Runtime};
    use std::time::Instant;

    /// Returns the same frame every read, like a steady node.
    struct Steady(Vec<ProcessSample>);

    impl ActivitySource for Steady {
        fn read(&mut self, _at: Timestamp, out: &mut ActivityFrame) -> Result<(), SourceError> {
            out.node = NodeCpu {
                busy: Nanos(1),
                total: Nanos(2),
            };
            out.processes.extend(self.0.iter().cloned());
            Ok(())
        }
        fn name(&self) -> &'static str {
            "steady"
        }
    }

    fn proc_in(pid: u32, container: &str, pod_uid: Option<&str>) -> ProcessSample {
        ProcessSample::new(
            pid,
            1,
            Nanos(0),
            Arc::new(ProcessInfo::new("sh", "").with_container({
                let mut v = ContainerInfo::new(container, "", Runtime::Containerd);
                v.pod = pod_uid.map(|u| PodInfo::new(u, "", ""));
                v
            })),
        )
    }

    fn record(uid: &str, name: &str, containers: &[(&str, &str)]) -> PodRecord {
        PodRecord {
            pod: Arc::new(PodMeta {
                uid: uid.into(),
                name: name.into(),
                namespace: "ns".into(),
                node_uid: None,
            }),
            containers: containers
                .iter()
                .map(|(i, n)| (Arc::from(*i), Arc::from(*n)))
                .collect(),
        }
    }

    fn pod_of(frame: &ActivityFrame, pid: u32) -> (String, String, String) {
        let s = frame.processes.iter().find(|p| p.pid == pid).unwrap();
        let c = s.info.container.as_ref().unwrap();
        let p = c.pod.clone().unwrap_or_default();
        (c.name.to_string(), p.id.to_string(), p.name.to_string())
    }

    #[test]
    fn fills_names_reuses_them_and_keeps_them_after_the_pod_goes() {
        let cache = PodCache::new(CacheConfig {
            deleted_retention: std::time::Duration::ZERO,
            ..CacheConfig::default()
        });
        let mut src = PodActivity::new(
            Steady(vec![
                proc_in(1, "c1", Some("u1")),
                proc_in(2, "pause", Some("u1")),
                proc_in(3, "docker-only", None),
            ]),
            cache.clone(),
        );
        let mut frame = ActivityFrame::default();
        // Before the first poll: nothing known, nothing invented.
        src.read(Timestamp(1), &mut frame).unwrap();
        assert_eq!(pod_of(&frame, 1), ("".into(), "u1".into(), "".into()));

        cache.replace_all(vec![record("u1", "web", &[("c1", "app")])], Instant::now());
        frame.clear();
        src.read(Timestamp(2), &mut frame).unwrap();
        assert_eq!(pod_of(&frame, 1), ("app".into(), "u1".into(), "web".into()));
        assert_eq!(pod_of(&frame, 2), ("".into(), "u1".into(), "web".into()));
        assert_eq!(pod_of(&frame, 3), ("".into(), "".into(), "".into()));
        let first = Arc::clone(&frame.processes[0].info);

        // Steady state: the same Arc comes back, no new lookup, no new miss.
        let misses = cache.stats().misses;
        frame.clear();
        src.read(Timestamp(3), &mut frame).unwrap();
        assert!(Arc::ptr_eq(&first, &frame.processes[0].info));
        assert_eq!(cache.stats().misses, misses);

        // The pod is deleted and swept: its still-running processes keep their names.
        let t = Instant::now();
        cache.replace_all(vec![], t);
        cache.sweep(t + std::time::Duration::from_secs(1));
        frame.clear();
        src.read(Timestamp(4), &mut frame).unwrap();
        assert_eq!(pod_of(&frame, 1), ("app".into(), "u1".into(), "web".into()));
    }

    #[test]
    fn memo_forgets_exited_processes() {
        let cache = PodCache::new(CacheConfig::default());
        let mut src = PodActivity::new(Steady(vec![proc_in(1, "c1", None)]), cache);
        let mut frame = ActivityFrame::default();
        src.read(Timestamp(1), &mut frame).unwrap();
        assert_eq!(src.memo.len(), 1);
        src.inner.0.clear();
        frame.clear();
        src.read(Timestamp(2), &mut frame).unwrap();
        assert!(src.memo.is_empty());
    }

    #[test]
    fn read_appends_to_what_the_caller_put_in_the_frame() {
        let cache = PodCache::new(CacheConfig::default());
        let mut src = PodActivity::new(Steady(vec![proc_in(1, "c1", None)]), cache);
        let mut frame = ActivityFrame::default();
        let sentinel =
            ProcessSample::new(u32::MAX, 7, Nanos(42), Arc::new(ProcessInfo::new("x", "")));
        frame.processes.push(sentinel.clone());
        src.read(Timestamp(1), &mut frame).unwrap();
        assert_eq!(frame.processes.len(), 2);
        assert_eq!(frame.processes[0], sentinel, "kept, untouched");
        assert_eq!(frame.processes[1].pid, 1);
    }
}
