//! The container id -> pod index that lookups read, and the negative cache.
//!
//! Background tasks (kubelet poller or API-server watcher) write it; the monitor loop reads it
//! once per tick through a [`CacheView`]. A lookup never does I/O: an id in no pod is a miss,
//! remembered in the negative cache until its expiry so that repeated lookups of pause,
//! sandbox and system containers cost one hash probe and are counted once. An id that later
//! shows up in a pod (a container whose status was not yet reported) leaves the negative cache
//! at that moment, so a negative entry never hides a pod.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kepler_core::{Nanos, Timestamp};

use crate::meta::{ContainerMeta, PodMeta, PodRecord};
use crate::stats::{InformerStats, Stats};

/// FxHash: container ids and pod UIDs are random hex, so a fast non-keyed hash is safe and
/// keeps a lookup well under the 100 ns budget (SipHash over 64 bytes costs most of it).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<Arc<str>, V, BuildHasherDefault<IdHasher>>;

/// How long things stay cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an id that is in no pod stays a cached miss.
    pub negative_ttl: Duration,
    /// How long a pod that left the node (deleted, or absent from a poll) stays resolvable, so
    /// processes still winding down and workloads exported as terminated keep their names.
    pub deleted_retention: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            negative_ttl: Duration::from_secs(60),
            deleted_retention: Duration::from_secs(120),
        }
    }
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The id is a container of a pod.
    Container(ContainerMeta),
    /// The id is in no pod's container list, but the pod UID from the cgroup path is known
    /// (a pod's sandbox/pause container): the pod's name is known, the container's is not.
    Pod(Arc<PodMeta>),
    /// Neither is known.
    Miss,
}

struct PodSlot {
    record: PodRecord,
    gone_since: Option<Instant>,
}

struct Store {
    config: CacheConfig,
    pods: IdMap<PodSlot>,
    by_container: IdMap<ContainerMeta>,
    by_pod_uid: IdMap<Arc<PodMeta>>,
    negative: IdMap<Timestamp>,
    next_negative_sweep: Timestamp,
    generation: u64,
}

impl Store {
    /// Rebuilds the lookup maps from the pods. O(containers); pods on one node number in the
    /// hundreds, so this costs microseconds and keeps every update path trivially right.
    fn reindex(&mut self) {
        self.by_container.clear();
        self.by_pod_uid.clear();
        for slot in self.pods.values() {
            let pod = &slot.record.pod;
            self.by_pod_uid
                .insert(Arc::clone(&pod.uid), Arc::clone(pod));
            if let Some(node_uid) = &pod.node_uid {
                self.by_pod_uid
                    .insert(Arc::clone(node_uid), Arc::clone(pod));
            }
            for (id, name) in &slot.record.containers {
                self.negative.remove(&**id);
                self.by_container.insert(
                    Arc::clone(id),
                    ContainerMeta {
                        name: Arc::clone(name),
                        pod: Arc::clone(pod),
                    },
                );
            }
        }
        self.generation += 1;
    }

    fn put(&mut self, record: PodRecord) -> bool {
        let uid = Arc::clone(&record.pod.uid);
        match self.pods.get_mut(&uid) {
            Some(slot) if slot.record == record && slot.gone_since.is_none() => false,
            Some(slot) => {
                slot.record = record;
                slot.gone_since = None;
                true
            }
            None => {
                self.pods.insert(
                    uid,
                    PodSlot {
                        record,
                        gone_since: None,
                    },
                );
                true
            }
        }
    }
}

/// The shared pod cache. Cloning shares it.
#[derive(Clone)]
pub struct PodCache {
    store: Arc<Mutex<Store>>,
    pub(crate) stats: Arc<Stats>,
}

impl std::fmt::Debug for PodCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCache").finish_non_exhaustive()
    }
}

impl PodCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> PodCache {
        PodCache {
            store: Arc::new(Mutex::new(Store {
                config,
                pods: IdMap::default(),
                by_container: IdMap::default(),
                by_pod_uid: IdMap::default(),
                negative: IdMap::default(),
                next_negative_sweep: Timestamp(0),
                generation: 0,
            })),
            stats: Arc::new(Stats::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the maps half-built in a way that
        // matters more than losing pod names, so a poisoned lock is used as is.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces one pod (a watch event).
    pub fn apply(&self, record: PodRecord) {
        let mut s = self.lock();
        if s.put(record) {
            s.reindex();
        }
    }

    /// Marks the pod with this UID as gone; it stays resolvable for `deleted_retention`.
    pub fn remove(&self, uid: &str, now: Instant) {
        let mut s = self.lock();
        if let Some(slot) = s.pods.get_mut(uid) {
            slot.gone_since.get_or_insert(now);
        }
    }

    /// Replaces the whole set (a kubelet poll or a relist): pods absent from `records` are
    /// marked gone at `now`. Marks the cache synced.
    pub fn replace_all(&self, records: Vec<PodRecord>, now: Instant) {
        let mut s = self.lock();
        let mut changed = false;
        let mut present: IdMap<()> = IdMap::default();
        for r in records {
            present.insert(Arc::clone(&r.pod.uid), ());
            changed |= s.put(r);
        }
        for (uid, slot) in s.pods.iter_mut() {
            if !present.contains_key(uid) && slot.gone_since.is_none() {
                slot.gone_since = Some(now);
            }
        }
        if changed {
            s.reindex();
        }
        self.stats.synced.store(true, Ordering::Relaxed);
    }

    /// Drops pods gone for longer than the retention.
    pub fn sweep(&self, now: Instant) {
        let mut s = self.lock();
        let keep = s.config.deleted_retention;
        let before = s.pods.len();
        s.pods.retain(|_, slot| {
            slot.gone_since
                .is_none_or(|at| now.saturating_duration_since(at) < keep)
        });
        if s.pods.len() != before {
            s.reindex();
        }
    }

    /// Locks the cache for a batch of lookups (one tick). Hold it briefly: writers wait.
    pub fn view(&self) -> CacheView<'_> {
        CacheView {
            store: self.lock(),
            stats: &self.stats,
        }
    }

    /// The self-metrics.
    pub fn stats(&self) -> InformerStats {
        let (pods, containers, negative) = {
            let s = self.lock();
            (s.pods.len(), s.by_container.len(), s.negative.len())
        };
        let st = &self.stats;
        InformerStats {
            pods: pods as u64,
            containers: containers as u64,
            negative_entries: negative as u64,
            misses: st.misses.load(Ordering::Relaxed),
            negative_hits: st.negative_hits.load(Ordering::Relaxed),
            relists: st.relists.load(Ordering::Relaxed),
            watch_errors: st.watch_errors.load(Ordering::Relaxed),
            poll_errors: st.poll_errors.load(Ordering::Relaxed),
            synced: st.synced.load(Ordering::Relaxed),
            requests: st.requests(),
        }
    }
}

/// The cache locked for lookups.
pub struct CacheView<'a> {
    store: MutexGuard<'a, Store>,
    stats: &'a Stats,
}

impl CacheView<'_> {
    /// Changes whenever the index changes; equal generations give equal answers (but for
    /// negative-cache expiry, which only affects counting).
    pub fn generation(&self) -> u64 {
        self.store.generation
    }

    /// Resolves a container id, with the pod UID from its cgroup path as a fallback for
    /// containers that are in no status (sandboxes). `now` is the reading's timestamp; it
    /// only ages the negative cache.
    pub fn lookup(&mut self, container_id: &str, pod_uid: Option<&str>, now: Timestamp) -> Lookup {
        let s = &mut *self.store;
        if let Some(c) = s.by_container.get(container_id) {
            return Lookup::Container(c.clone());
        }
        if now >= s.next_negative_sweep {
            s.negative.retain(|_, expiry| *expiry > now);
            s.next_negative_sweep = add(now, s.config.negative_ttl);
        }
        match s.negative.get(container_id) {
            Some(expiry) if *expiry > now => {
                self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                let expiry = add(now, s.config.negative_ttl);
                s.negative.insert(Arc::from(container_id), expiry);
            }
        }
        match pod_uid.and_then(|uid| s.by_pod_uid.get(uid)) {
            Some(pod) => Lookup::Pod(Arc::clone(pod)),
            None => Lookup::Miss,
        }
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp(t.0.saturating_add(Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, containers: &[(&str, &str)]) -> PodRecord {
        PodRecord {
            pod: Arc::new(PodMeta {
                uid: uid.into(),
                name: name.into(),
                namespace: "default".into(),
                node_uid: None,
            }),
            containers: containers
                .iter()
                .map(|(id, n)| (Arc::from(*id), Arc::from(*n)))
                .collect(),
        }
    }

    fn secs(s: u64) -> Timestamp {
        Timestamp(s * 1_000_000_000)
    }

    #[test]
    fn finds_containers_and_falls_back_to_the_pod_uid() {
        let cache = PodCache::new(CacheConfig::default());
        cache.replace_all(vec![pod("u1", "web", &[("c1", "app")])], Instant::now());
        let mut v = cache.view();
        match v.lookup("c1", None, secs(1)) {
            Lookup::Container(c) => {
                assert_eq!(&*c.name, "app");
                assert_eq!(&*c.pod.name, "web");
            }
            other => panic!("{other:?}"),
        }
        // The pause container: id unknown, pod known from the cgroup path.
        match v.lookup("pause", Some("u1"), secs(1)) {
            Lookup::Pod(p) => assert_eq!(&*p.name, "web"),
            other => panic!("{other:?}"),
        }
        assert_eq!(v.lookup("other", None, secs(1)), Lookup::Miss);
    }

    #[test]
    fn negative_cache_counts_a_miss_once_per_ttl_and_never_hides_a_new_pod() {
        let cache = PodCache::new(CacheConfig {
            negative_ttl: Duration::from_secs(10),
            ..CacheConfig::default()
        });
        {
            let mut v = cache.view();
            for t in 0..5 {
                assert_eq!(v.lookup("sys", None, secs(t)), Lookup::Miss);
            }
        }
        let st = cache.stats();
        assert_eq!(
            (st.misses, st.negative_hits, st.negative_entries),
            (1, 4, 1)
        );
        // After the TTL it is a fresh miss again.
        assert_eq!(cache.view().lookup("sys", None, secs(11)), Lookup::Miss);
        assert_eq!(cache.stats().misses, 2);
        // The id appears in a pod: found at once, and out of the negative cache.
        cache.apply(pod("u2", "late", &[("sys", "c")]));
        assert!(matches!(
            cache.view().lookup("sys", None, secs(12)),
            Lookup::Container(_)
        ));
        assert_eq!(cache.stats().negative_entries, 0);
    }

    #[test]
    fn expired_negative_entries_are_swept() {
        let cache = PodCache::new(CacheConfig {
            negative_ttl: Duration::from_secs(10),
            ..CacheConfig::default()
        });
        let mut v = cache.view();
        for i in 0..100 {
            v.lookup(&format!("id{i}"), None, secs(0));
        }
        drop(v);
        assert_eq!(cache.stats().negative_entries, 100);
        cache.view().lookup("fresh", None, secs(30));
        assert_eq!(cache.stats().negative_entries, 1);
    }

    #[test]
    fn gone_pods_stay_resolvable_for_the_retention_then_go() {
        let cache = PodCache::new(CacheConfig {
            deleted_retention: Duration::from_secs(60),
            ..CacheConfig::default()
        });
        let t0 = Instant::now();
        cache.replace_all(
            vec![
                pod("u1", "a", &[("c1", "x")]),
                pod("u2", "b", &[("c2", "y")]),
            ],
            t0,
        );
        // A poll without u2, then a watch delete of u1.
        cache.replace_all(vec![pod("u1", "a", &[("c1", "x")])], t0);
        cache.remove("u1", t0);
        cache.sweep(t0 + Duration::from_secs(59));
        assert!(matches!(
            cache.view().lookup("c2", None, secs(0)),
            Lookup::Container(_)
        ));
        cache.sweep(t0 + Duration::from_secs(61));
        assert_eq!(cache.view().lookup("c1", None, secs(0)), Lookup::Miss);
        assert_eq!(cache.view().lookup("c2", None, secs(0)), Lookup::Miss);
        assert_eq!(cache.stats().pods, 0);
    }

    #[test]
    fn a_pod_that_comes_back_is_no_longer_gone() {
        let cache = PodCache::new(CacheConfig::default());
        let t0 = Instant::now();
        cache.apply(pod("u1", "a", &[("c1", "x")]));
        cache.remove("u1", t0);
        cache.apply(pod("u1", "a", &[("c1", "x")]));
        cache.sweep(t0 + Duration::from_secs(3600));
        assert!(matches!(
            cache.view().lookup("c1", None, secs(0)),
            Lookup::Container(_)
        ));
    }

    #[test]
    fn static_pods_resolve_by_their_node_uid() {
        let cache = PodCache::new(CacheConfig::default());
        let mut rec = pod("mirror-uid", "etcd-n1", &[]);
        Arc::get_mut(&mut rec.pod).unwrap().node_uid = Some("confighash".into());
        cache.apply(rec);
        match cache.view().lookup("x", Some("confighash"), secs(0)) {
            Lookup::Pod(p) => assert_eq!(&*p.name, "etcd-n1"),
            other => panic!("{other:?}"),
        };
    }

    #[test]
    fn generation_changes_only_when_the_index_does() {
        let cache = PodCache::new(CacheConfig::default());
        let g0 = cache.view().generation();
        cache.apply(pod("u1", "a", &[("c1", "x")]));
        let g1 = cache.view().generation();
        assert_ne!(g0, g1);
        cache.apply(pod("u1", "a", &[("c1", "x")]));
        cache.replace_all(vec![pod("u1", "a", &[("c1", "x")])], Instant::now());
        assert_eq!(cache.view().generation(), g1);
    }
}
