//! Pod metadata lookups (issue 8): a container id resolved from a cache holding a full node
//! (110 pods x 3 containers), budget <= 100 ns; a cached miss; and the per-tick enrichment
//! of 330 containerised processes in steady state.
//!
//! `cargo bench -p kepler-benches --bench k8s`

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kepler_core::fakes::{FakeActivity, FakeProcess};
use kepler_core::{
    ActivityFrame, ActivitySource, ContainerInfo, PodInfo, ProcessInfo, Runtime, Timestamp,
};
use kepler_k8s::{CacheConfig, PodActivity, PodCache, PodMeta, PodRecord};

fn uid(p: usize) -> String {
    format!("{p:08x}-1b4c-4d5e-9f0a-7b6c5d4e3f21")
}

fn cid(p: usize, c: usize) -> String {
    format!("{:064x}", (p * 16 + c + 1) * 0x9e37_79b9)
}

fn full_node() -> PodCache {
    let records = (0..110)
        .map(|p| PodRecord {
            pod: Arc::new(PodMeta {
                uid: uid(p).into(),
                name: format!("frontend-7d9f8b6c5d-{p:05}").into(),
                namespace: format!("team-{}", p % 12).into(),
                node_uid: None,
            }),
            containers: (0..3)
                .map(|c| (cid(p, c).into(), format!("c{c}").into()))
                .collect(),
        })
        .collect();
    let cache = PodCache::new(CacheConfig::default());
    cache.replace_all(records, Instant::now());
    cache
}

fn lookups(c: &mut Criterion) {
    let cache = full_node();
    let ids: Vec<String> = (0..110)
        .flat_map(|p| (0..3).map(move |c| cid(p, c)))
        .collect();
    let misses: Vec<String> = (0..330)
        .map(|i| format!("{:064x}", 7_000_000 + i))
        .collect();
    let mut g = c.benchmark_group("k8s");
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("lookup_hit_330_ids", |b| {
        b.iter(|| {
            let mut v = cache.view();
            for id in &ids {
                std::hint::black_box(v.lookup(id, None, Timestamp(1)));
            }
        })
    });
    g.bench_function("lookup_negative_330_ids", |b| {
        b.iter(|| {
            let mut v = cache.view();
            for id in &misses {
                std::hint::black_box(v.lookup(id, None, Timestamp(1)));
            }
        })
    });

    // 330 processes, one per container, all in pods: the steady-state tick cost on top of
    // the activity read.
    let processes: Vec<FakeProcess> = (0..110)
        .flat_map(|p| (0..3).map(move |c| (p, c)))
        .enumerate()
        .map(|(i, (p, c))| FakeProcess {
            pid: 1000 + i as u32,
            start_time: 1,
            start: Timestamp(0),
            end: None,
            permille: 10,
            info: Arc::new(ProcessInfo::new("app", "/app").with_container(
                ContainerInfo::new(cid(p, c), "", Runtime::Containerd).with_pod(PodInfo::new(
                    uid(p),
                    "",
                    "",
                )),
            )),
        })
        .collect();
    let fake = || FakeActivity {
        cpus: 8,
        background_permille: 0,
        processes: processes.clone(),
        failing: false,
    };
    let mut plain = fake();
    let mut enriched = PodActivity::new(fake(), cache.clone());
    let mut frame = ActivityFrame::default();
    let mut t = 0u64;
    g.bench_function("tick_330_processes_without_pods", |b| {
        b.iter(|| {
            t += 1_000_000;
            frame.clear();
            plain.read(Timestamp(t), &mut frame).unwrap();
        })
    });
    g.bench_function("tick_330_processes_with_pods", |b| {
        b.iter(|| {
            t += 1_000_000;
            frame.clear();
            enriched.read(Timestamp(t), &mut frame).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
