//! Memory of the pod cache for a full node: 110 pods x 3 containers must stay <= 2 MiB
//! (issue 8). Counted with a counting global allocator: bytes live after the cache is built.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kepler_core::Timestamp;
use kepler_k8s::{CacheConfig, Lookup, PodCache, PodMeta, PodRecord};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A realistic node: pod names, namespaces, UIDs and 64-hex container ids.
pub fn node(pods: usize, containers: usize) -> Vec<PodRecord> {
    (0..pods)
        .map(|p| PodRecord {
            pod: Arc::new(PodMeta {
                uid: format!("{p:08x}-1b4c-4d5e-9f0a-7b6c5d4e3f21").into(),
                name: format!("frontend-deployment-7d9f8b6c5d-{p:05}").into(),
                namespace: format!("team-{}", p % 12).into(),
                node_uid: None,
            }),
            containers: (0..containers)
                .map(|c| {
                    (
                        format!("{:064x}", p * 16 + c + 1).into(),
                        format!("container-{c}").into(),
                    )
                })
                .collect(),
        })
        .collect()
}

#[test]
fn a_full_node_cached_takes_at_most_2_mib_issue_8() {
    let before = LIVE.load(Ordering::SeqCst);
    let cache = PodCache::new(CacheConfig::default());
    cache.replace_all(node(110, 3), Instant::now());
    // Every pause container looked up once: the negative cache is part of the footprint.
    {
        let mut v = cache.view();
        for p in 0..110 {
            assert_eq!(
                v.lookup(&format!("{:064x}", 1_000_000 + p), None, Timestamp(0)),
                Lookup::Miss
            );
        }
    }
    let bytes = LIVE.load(Ordering::SeqCst) - before;
    println!("pod cache, 110 pods x 3 containers + 110 negative entries: {bytes} bytes");
    assert_eq!(cache.stats().containers, 330);
    assert!(bytes <= 2 * 1024 * 1024, "{bytes} bytes");
    assert!(
        bytes > 330 * 64,
        "{bytes} bytes cannot hold 330 ids: the count is wrong"
    );
}
