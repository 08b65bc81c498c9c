//! The process fold (issue 21, "The Prometheus bill"): top-N / minimum-energy folding into
//! `type="other"` series. Random sequences of ticks through the real engine check the two
//! rules the fold promises: every exported counter is monotonic (a process promoted later
//! never makes `other` go down), and per container, VM and host, per zone, in integer µJ,
//! `other + Σ process series (final values of those no longer shown included)` equals the
//! group's energy.

mod common;
mod promtool;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kepler_core::fakes::FakePower;
use kepler_core::{
    ActivityFrame, Attributor, AttributorConfig, ContainerInfo, ContainerUsage, Nanos, NodeCpu,
    PerKind, PowerFrame, PowerSource, ProcessInfo, ProcessSample, Runtime, Snapshot, State,
    Timestamp, VmInfo, ZoneKind,
};
use kepler_export::{
    Exposition, FoldConfig, FoldGroup, FoldedProcesses, MetricsLevel, ProcessFold,
};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

/// One scripted process: its group, when it runs, and its CPU per tick (ms).
#[derive(Debug, Clone)]
struct Script {
    /// 0: host; 1..=3: containers; 4: the VM.
    group: u8,
    start: u64,
    end: Option<u64>,
    /// CPU milliseconds used in each tick it runs (cycled).
    ms: Vec<u64>,
}

fn container(n: u8) -> ContainerInfo {
    ContainerInfo::new(format!("ctr-{n}"), format!("c{n}"), Runtime::Containerd)
}

fn info(s: &Script, pid: u32) -> Arc<ProcessInfo> {
    let mut i = ProcessInfo::new(format!("p{pid}"), format!("/bin/p{pid}"));
    match s.group {
        0 => {}
        4 => i.vm = Some(VmInfo::new("vm-1", "guest", "qemu")),
        n => i.container = Some(container(n)),
    }
    Arc::new(i)
}

/// Steps the engine and the fold through `ticks` one-second ticks of `scripts`, calling
/// `each` with every snapshot and its fold result. Containers also report cgroup usage that
/// includes `exited_ms` of processes that came and went between ticks.
fn run(
    scripts: &[Script],
    ticks: u64,
    exited_ms: &[u64],
    config: FoldConfig,
    mut each: impl FnMut(&Snapshot, &FoldedProcesses),
) {
    let mut power = FakePower::constant(
        &[(ZoneKind::Package, 0, 90.0), (ZoneKind::Dram, 0, 7.0)],
        1 << 40,
    );
    let engine_config = AttributorConfig::builder()
        .terminated_ttl(Nanos(2 * SEC))
        .build();
    let mut engine = Attributor::new(engine_config);
    let mut fold = ProcessFold::new(config);
    let infos: Vec<_> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| info(s, 100 + i as u32))
        .collect();
    let mut cpu = vec![0u64; scripts.len()];
    let mut cgroup = [0u64; 4];
    let (mut pf, mut af) = (PowerFrame::default(), ActivityFrame::default());
    for t in 0..ticks {
        let at = Timestamp(t * SEC);
        pf.clear();
        power.read(at, &mut pf);
        af.clear();
        let mut busy = 0;
        for (i, s) in scripts.iter().enumerate() {
            let running = s.start <= t && s.end.is_none_or(|e| t < e);
            if !running {
                continue;
            }
            if t > s.start {
                let ms = s.ms[(t as usize) % s.ms.len()];
                cpu[i] += ms * 1_000_000;
                if (1..=3).contains(&s.group) {
                    cgroup[s.group as usize] += ms * 1_000_000;
                }
            }
            busy += cpu[i];
            af.processes.push(ProcessSample::new(
                100 + i as u32,
                1000 + i as u64,
                Nanos(cpu[i]),
                infos[i].clone(),
            ));
        }
        for n in 1..=3u8 {
            cgroup[n as usize] +=
                exited_ms[(t as usize + n as usize) % exited_ms.len()] * 1_000_000;
            if af.processes.iter().any(|p| {
                p.info
                    .container
                    .as_ref()
                    .is_some_and(|c| *c.id == *format!("ctr-{n}"))
            }) {
                af.containers
                    .push(ContainerUsage::new(container(n), Nanos(cgroup[n as usize])));
            }
        }
        // 4 CPUs; the node is busier than the listed processes.
        af.node = NodeCpu::new(Nanos(busy + t * SEC / 2), Nanos(4 * t * SEC));
        let snap = engine.step(&pf, Some(&af), at);
        let folded = fold.step(&snap);
        each(&snap, folded);
    }
}

/// What the checker remembers across ticks.
#[derive(Default)]
struct Checker {
    /// Latest exported counter of every process series ever shown, by identity.
    exported: HashMap<(u32, u64), (FoldGroup, PerKind)>,
    /// Latest `other` counter by group.
    other: BTreeMap<FoldGroup, PerKind>,
    /// Latest energy total of every host process ever seen (host processes have no group
    /// counter of their own to compare with).
    host_energy: HashMap<(u32, u64), PerKind>,
    /// Shown (running) in the previous tick.
    shown_before: HashMap<(u32, u64), bool>,
}

fn ge(a: &PerKind, b: &PerKind) -> bool {
    a.0.iter().zip(b.0.iter()).all(|(x, y)| x >= y)
}

fn sum<'a>(it: impl Iterator<Item = &'a PerKind>) -> PerKind {
    let mut s = PerKind::default();
    for x in it {
        s.add(x);
    }
    s
}

impl Checker {
    fn check(&mut self, snap: &Snapshot, f: &FoldedProcesses, config: FoldConfig) {
        // Monotonic: every exported counter is at least its previous value, even when the
        // series was absent in between.
        let mut shown_now: HashMap<(u32, u64), bool> = HashMap::new();
        for &(i, total) in f.shown() {
            let p = &snap.processes[i];
            let id = (p.pid, p.start_time);
            if let Some((_, before)) = self.exported.get(&id) {
                assert!(
                    ge(&total, before),
                    "process {id:?} went from {before:?} to {total:?}"
                );
            }
            assert!(
                ge(&p.energy.total, &total),
                "exported more than the process used"
            );
            self.exported.insert(id, (FoldGroup::of(p), total));
            shown_now.insert(id, p.state == State::Running);
        }
        for o in f.others() {
            if let Some(before) = self.other.get(&o.group) {
                assert!(
                    ge(&o.total, before),
                    "other {:?} went from {before:?} to {:?}",
                    o.group,
                    o.total
                );
            }
            self.other.insert(o.group.clone(), o.total);
        }
        for p in &snap.processes {
            if FoldGroup::of(p) == FoldGroup::Host {
                self.host_energy
                    .insert((p.pid, p.start_time), p.energy.total);
            }
        }

        // A container or VM the engine no longer holds (terminated, past its TTL) starts
        // from 0 if its id comes back: forget what was exported for it.
        let live: Vec<FoldGroup> = snap
            .containers
            .iter()
            .map(|c| FoldGroup::Container(c.info.id.clone()))
            .chain(snap.vms.iter().map(|v| FoldGroup::Vm(v.info.id.clone())))
            .chain(snap.processes.iter().map(FoldGroup::of))
            .collect();
        let gone = |g: &FoldGroup| *g != FoldGroup::Host && !live.contains(g);
        self.exported.retain(|_, (g, _)| !gone(g));
        self.other.retain(|g, _| !gone(g));

        // Conservation per group, exact.
        let of_group = |g: &FoldGroup| {
            let procs = sum(self
                .exported
                .values()
                .filter(|(pg, _)| pg == g)
                .map(|(_, e)| e));
            let mut s = self.other.get(g).copied().unwrap_or_default();
            s.add(&procs);
            s
        };
        for c in &snap.containers {
            let g = FoldGroup::Container(c.info.id.clone());
            assert_eq!(of_group(&g), c.energy.total, "container {}", c.info.id);
        }
        for v in &snap.vms {
            let g = FoldGroup::Vm(v.info.id.clone());
            assert_eq!(of_group(&g), v.energy.total, "vm {}", v.info.id);
        }
        assert_eq!(
            of_group(&FoldGroup::Host),
            sum(self.host_energy.values()),
            "host"
        );

        // Selection: the top N with energy >= min are shown; at most 2N running are shown;
        // a process newly shown had at least min.
        let mut running: Vec<_> = snap
            .processes
            .iter()
            .filter(|p| p.state == State::Running)
            .collect();
        running.sort_by_key(|p| (std::cmp::Reverse(p.energy.last.max()), p.pid, p.start_time));
        let limit = if config.top_n == 0 {
            usize::MAX
        } else {
            config.top_n
        };
        for p in running.iter().take(limit) {
            let e = p.energy.last.max();
            if e > 0 && e >= config.min_uj {
                assert_eq!(
                    shown_now.get(&(p.pid, p.start_time)),
                    Some(&true),
                    "top process {} not shown",
                    p.pid
                );
            }
        }
        let shown_running = shown_now.values().filter(|r| **r).count();
        if config.top_n > 0 {
            assert!(
                shown_running <= 2 * config.top_n,
                "{shown_running} shown > 2 x {}",
                config.top_n
            );
        }
        for p in &running {
            let id = (p.pid, p.start_time);
            if shown_now.get(&id) == Some(&true) && self.shown_before.get(&id) != Some(&true) {
                let e = p.energy.last.max();
                assert!(
                    e > 0 && e >= config.min_uj,
                    "process {} promoted with {e} µJ",
                    p.pid
                );
            }
        }
        self.shown_before = shown_now;
    }
}

fn script() -> impl Strategy<Value = Script> {
    (
        0u8..5,
        0u64..12,
        proptest::option::of(1u64..16),
        proptest::collection::vec(
            prop_oneof![Just(0u64), Just(0), 1u64..50, 200u64..900],
            1..5,
        ),
    )
        .prop_map(|(group, start, len, ms)| Script {
            group,
            start,
            end: len.map(|l| start + l),
            ms,
        })
}

fn fold_config() -> impl Strategy<Value = FoldConfig> {
    prop_oneof![
        (1usize..5).prop_map(|n| FoldConfig {
            top_n: n,
            min_uj: 0
        }),
        (1u64..3_000_000).prop_map(|m| FoldConfig {
            top_n: 0,
            min_uj: m
        }),
        (1usize..5, 1u64..3_000_000).prop_map(|(n, m)| FoldConfig {
            top_n: n,
            min_uj: m
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Issue 21: monotonic counters and exact conservation over random ticks.
    #[test]
    fn fold_is_monotonic_and_conserves_energy_issue_21(
        scripts in proptest::collection::vec(script(), 1..24),
        exited_ms in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..300], 1..4),
        config in fold_config(),
        ticks in 2u64..30,
    ) {
        let mut checker = Checker::default();
        run(&scripts, ticks, &exited_ms, config, |snap, f| checker.check(snap, f, config));
    }
}

/// A process that sleeps, then becomes the busiest: its energy before promotion stays in
/// `other` (which never goes down), and its own series counts from the tick it is shown.
#[test]
fn late_promotion_keeps_other_monotonic_issue_21() {
    let busy = Script {
        group: 1,
        start: 0,
        end: None,
        ms: vec![500],
    };
    // Light until tick 6, then far busier than `busy`.
    let late = Script {
        group: 1,
        start: 0,
        end: None,
        ms: vec![10, 10, 10, 10, 10, 10, 900, 900, 900, 900],
    };
    let config = FoldConfig {
        top_n: 1,
        min_uj: 0,
    };
    let mut others = Vec::new();
    let mut late_shown_at = None;
    let mut checker = Checker::default();
    run(&[busy, late], 9, &[0], config, |snap, f| {
        checker.check(snap, f, config);
        let g = FoldGroup::Container("ctr-1".into());
        others.push(
            f.others()
                .iter()
                .find(|o| o.group == g)
                .map(|o| o.total.get(ZoneKind::Package).0)
                .unwrap_or(0),
        );
        if late_shown_at.is_none() && f.shown().iter().any(|&(i, _)| snap.processes[i].pid == 101) {
            late_shown_at = Some(snap.at);
            let (_, exported) = f
                .shown()
                .iter()
                .find(|&&(i, _)| snap.processes[i].pid == 101)
                .unwrap();
            let p = snap.processes.iter().find(|p| p.pid == 101).unwrap();
            // Its series starts with this tick's energy, not its history.
            assert_eq!(*exported, p.energy.last);
            assert!(p.energy.total.get(ZoneKind::Package) > p.energy.last.get(ZoneKind::Package));
        }
    });
    assert_eq!(late_shown_at, Some(Timestamp(6 * SEC)), "{others:?}");
    assert!(others.windows(2).all(|w| w[0] <= w[1]), "{others:?}");
    assert!(
        others[5] > 0,
        "the light process's energy was folded: {others:?}"
    );
}

/// The rendered families: shown processes keep their labels, `other` series have
/// `type="other"` and empty pid/comm/exe, and over the process series of a container the
/// joules add up to the container's series.
#[test]
fn folded_exposition_adds_up_issue_21() {
    let scripts: Vec<Script> = (0..6)
        .map(|i| Script {
            group: if i < 4 { 1 } else { 0 },
            start: 0,
            end: None,
            ms: vec![100 * (i + 1)],
        })
        .collect();
    let config = FoldConfig {
        top_n: 2,
        min_uj: 0,
    };
    let mut last = None;
    run(&scripts, 5, &[40], config, |snap, f| {
        last = Some((snap.clone(), f.clone()))
    });
    let (snap, f) = last.unwrap();
    let ctx = common::context(MetricsLevel::all());
    let e = Exposition::render_folded(&snap, None, Some(&f), &ctx, &common::stats());
    let text = String::from_utf8(e.text().to_vec()).unwrap();
    let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    let process_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("kepler_process_cpu_joules_total{"))
        .collect();
    // Two shown processes (the busiest, pids 105 and 104, both host processes) and the
    // `other` of ctr-1, two zones each; the host's `other` has folded nothing, so it has no
    // series.
    assert_eq!(process_lines.len(), 6, "{process_lines:#?}");
    assert!(text.contains(r#"kepler_process_cpu_joules_total{node_name="test-node",pid="",comm="",exe="",type="other",container_id="ctr-1",vm_id="",state="running",zone="package"}"#), "{text}");
    assert!(text.contains(r#"pid="105",comm="p105""#));
    assert!(
        !text.contains(r#"pid="100""#),
        "a folded process has a series"
    );
    let in_ctr: f64 = process_lines
        .iter()
        .filter(|l| l.contains(r#"container_id="ctr-1""#) && l.contains(r#"zone="package""#))
        .map(|l| value(l))
        .sum();
    let ctr = text
        .lines()
        .find(|l| {
            l.starts_with("kepler_container_cpu_joules_total{") && l.contains(r#"zone="package""#)
        })
        .map(value)
        .unwrap();
    assert!(ctr > 0.0);
    assert!((in_ctr - ctr).abs() < 1e-9, "{in_ctr} != {ctr}");
    promtool::check_metrics("folded_exposition_adds_up_issue_21", &text);
    // Without the fold, every process has its series.
    let full = Exposition::render(&snap, None, &ctx, &common::stats());
    let full = String::from_utf8(full.text().to_vec()).unwrap();
    assert_eq!(
        full.lines()
            .filter(|l| l.starts_with("kepler_process_cpu_joules_total{"))
            .count(),
        12
    );
    assert!(!full.contains(r#"type="other""#));
}
