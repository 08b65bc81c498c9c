//! Cgroup CPU accounting for 1,000 containers (issue 4; budget: 10 ms per tick).
//!
//! `cargo bench -p kepler-benches --bench cgroups`
//!
//! A fake procfs with 1,000 processes, each in its own container, scanned warm by the procfs
//! source without cgroup accounting and with it; the difference is the cost of reading the
//! 1,000 containers' counters. The counters live in a fake cgroup tree (`cpu.stat` files in
//! a temp dir) and, when this process may create cgroups (root with cgroup v2 mounted), in
//! 1,000 real cgroups, whose `cpu.stat` the kernel computes on each read.

use std::fs;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use kepler_core::{ActivityFrame, ActivitySource, Timestamp};
use kepler_sources::{ProcfsActivity, ProcfsOptions};

const CONTAINERS: usize = 1_000;

fn id(i: usize) -> String {
    format!("{i:064x}")
}

/// A procfs with one process per container, whose cgroup is `/kepler-bench/<id>`.
fn fake_procfs(dir: &Path, base: &str) {
    fs::write(
        dir.join("stat"),
        "cpu  1000 0 300 8000 100 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n",
    )
    .unwrap();
    for i in 0..CONTAINERS {
        let pid = 1000 + i;
        let p = dir.join(pid.to_string());
        fs::create_dir_all(&p).unwrap();
        fs::write(
            p.join("stat"),
            format!("{pid} (worker) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 4242 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"),
        )
        .unwrap();
        fs::write(p.join("cgroup"), format!("0::/{base}/{}\n", id(i))).unwrap();
        fs::write(p.join("cmdline"), "worker\0").unwrap();
    }
}

/// 1,000 real cgroups under a v2 mount, removed on drop.
struct RealCgroups(PathBuf);

impl RealCgroups {
    fn create(base: &str) -> Option<RealCgroups> {
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(PathBuf::from)
            .find(|r| r.join("cgroup.controllers").exists())?;
        let dir = root.join(base);
        fs::create_dir(&dir).ok()?;
        let made = RealCgroups(dir);
        for i in 0..CONTAINERS {
            fs::create_dir(made.0.join(id(i))).ok()?;
        }
        Some(made)
    }
}

impl Drop for RealCgroups {
    fn drop(&mut self) {
        for i in 0..CONTAINERS {
            let _ = fs::remove_dir(self.0.join(id(i)));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

fn bench(c: &mut Criterion) {
    let base = format!("kepler-bench-{}", std::process::id());
    let procfs = tempfile::tempdir().unwrap();
    fake_procfs(procfs.path(), &base);
    let fake_cg = tempfile::tempdir().unwrap();
    for i in 0..CONTAINERS {
        let d = fake_cg.path().join(&base).join(id(i));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("cpu.stat"),
            format!("usage_usec {}\nuser_usec 1\nsystem_usec 1\n", i * 1000),
        )
        .unwrap();
    }
    let real = RealCgroups::create(&base);
    if real.is_none() {
        eprintln!("real cgroups: skipped (needs root and a cgroup v2 mount)");
    }
    let mut cases: Vec<(&str, Option<PathBuf>)> = vec![
        ("without_cgroups", None),
        ("fake_cgroupfs", Some(fake_cg.path().to_path_buf())),
    ];
    if let Some(r) = &real {
        cases.push(("real_cgroupfs", r.0.parent().map(Path::to_path_buf)));
    }
    let mut group = c.benchmark_group("cgroups");
    for (name, cgroup_root) in cases {
        let mut source = ProcfsActivity::new(ProcfsOptions {
            user_hz: Some(100),
            max_open_files: Some(4096),
            cgroup_root,
            ..ProcfsOptions::new(procfs.path())
        })
        .unwrap();
        let mut frame = ActivityFrame::default();
        source.read(Timestamp(0), &mut frame).unwrap();
        assert_eq!(frame.processes.len(), CONTAINERS);
        eprintln!(
            "{name}: {} container counters read per scan",
            frame.containers.len()
        );
        let mut t = 0;
        group.bench_function(format!("warm_scan_{CONTAINERS}c/{name}"), |b| {
            b.iter(|| {
                t += 1;
                frame.clear();
                source.read(Timestamp(t), &mut frame).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
