//! Property tests of the energy rules (DESIGN.md §3) over random traces with counter wraps,
//! resets, failed reads, PID reuse, processes appearing and exiting, idle and missing ticks.

use std::collections::HashMap;
use std::sync::Arc;

use kepler_core::*;
use proptest::prelude::*;

const RANGE: u64 = 50_000_000; // small, so counters wrap often

#[derive(Debug, Clone)]
struct TickSpec {
    dt_ms: u64,
    /// Per zone: (watts, event) with event 0 = normal, 1 = reset to a lower value, 2 = read error.
    zones: [(u16, u8); 2],
    /// None = activity read failed this tick.
    activity: Option<Vec<ProcSpec>>,
    busy_extra_permille: u16,
}

#[derive(Debug, Clone)]
struct ProcSpec {
    pid: u32,
    /// 0 = keep running, 1 = exit, 2 = reuse the pid for a new process.
    event: u8,
    cpu_ms: u64,
    container: u8,
}

fn tick_strategy() -> impl Strategy<Value = TickSpec> {
    (
        1u64..3000,
        [(0u16..400, 0u8..12), (0u16..400, 0u8..12)],
        prop::option::weighted(
            0.9,
            prop::collection::vec(
                (1u32..12, 0u8..10, 0u64..2000, 0u8..4).prop_map(|(pid, ev, cpu_ms, c)| ProcSpec {
                    pid,
                    event: if ev == 0 {
                        1
                    } else if ev == 1 {
                        2
                    } else {
                        0
                    },
                    cpu_ms,
                    container: c,
                }),
                0..10,
            ),
        ),
        0u16..500,
    )
        .prop_map(|(dt_ms, z, activity, busy_extra_permille)| TickSpec {
            dt_ms,
            zones: [
                (
                    z[0].0,
                    if z[0].1 == 0 {
                        1
                    } else if z[0].1 == 1 {
                        2
                    } else {
                        0
                    },
                ),
                (
                    z[1].0,
                    if z[1].1 == 0 {
                        1
                    } else if z[1].1 == 1 {
                        2
                    } else {
                        0
                    },
                ),
            ],
            activity,
            busy_extra_permille,
        })
}

fn info_for(container: u8) -> Arc<ProcessInfo> {
    let container = (container > 0).then(|| ContainerInfo {
        id: format!("c{container}").into(),
        name: "".into(),
        runtime: Runtime::Containerd,
        pod: (container < 3).then(|| PodInfo {
            id: format!("pod{}", container % 2).into(),
            ..Default::default()
        }),
    });
    Arc::new(ProcessInfo {
        comm: "p".into(),
        exe: "".into(),
        container,
        vm: None,
    })
}

/// Replays a trace and returns the snapshots.
fn replay(trace: &[TickSpec], ttl: Nanos) -> Vec<Snapshot> {
    let zones = [
        fakes::counter_zone(ZoneKind::Package, 0, Some(RANGE)),
        fakes::counter_zone(ZoneKind::Dram, 0, Some(RANGE)),
    ];
    let mut engine = Attributor::new(
        AttributorConfig::builder()
            .terminated_ttl(ttl)
            .max_terminated(Some(5))
            .build(),
    );
    let mut counters = [0u64; 2];
    let mut at = 0u64;
    let mut busy = 0u64;
    let mut total = 0u64;
    // pid -> (start_time, cpu ns, info)
    let mut live: HashMap<u32, (u64, u64, Arc<ProcessInfo>)> = HashMap::new();
    let mut next_start = 1u64;
    let mut out = Vec::new();
    for t in trace {
        let dt = t.dt_ms * 1_000_000;
        at += dt;
        let mut power = PowerFrame::default();
        for (i, &(w, ev)) in t.zones.iter().enumerate() {
            let reading = match ev {
                2 => Err(ReadError::Io {
                    what: "zone".into(),
                    detail: "injected".into(),
                }),
                1 => {
                    counters[i] /= 3;
                    Ok(Reading::Energy(MicroJoules(counters[i])))
                }
                _ => {
                    counters[i] = (counters[i] + w as u64 * dt / 1000) % RANGE;
                    Ok(Reading::Energy(MicroJoules(counters[i])))
                }
            };
            power.push(&zones[i], Timestamp(at), reading);
        }
        let frame = t.activity.as_ref().map(|procs| {
            let mut sum = 0;
            for p in procs {
                match p.event {
                    1 => {
                        live.remove(&p.pid);
                    }
                    2 => {
                        live.insert(
                            p.pid,
                            (next_start, p.cpu_ms * 1_000_000, info_for(p.container)),
                        );
                        next_start += 1;
                        sum += p.cpu_ms * 1_000_000;
                    }
                    _ => {
                        let e = live.entry(p.pid).or_insert_with(|| {
                            next_start += 1;
                            (next_start, 0, info_for(p.container))
                        });
                        e.1 += p.cpu_ms * 1_000_000;
                        sum += p.cpu_ms * 1_000_000;
                    }
                }
            }
            busy += sum + t.busy_extra_permille as u64 * dt / 1000;
            total += (busy - total.min(busy)).max(dt * 4) + dt;
            let mut f = ActivityFrame {
                at: Timestamp(at),
                node: NodeCpu {
                    busy: Nanos(busy),
                    total: Nanos(total),
                },
                processes: Vec::new(),
            };
            let mut pids: Vec<_> = live.keys().copied().collect();
            pids.sort();
            for pid in pids {
                let (start, cpu, info) = &live[&pid];
                f.processes.push(ProcessSample {
                    pid,
                    start_time: *start,
                    cpu_time: Nanos(*cpu),
                    info: info.clone(),
                });
            }
            f
        });
        out.push(engine.step(&power, frame.as_ref(), Timestamp(at)));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn energy_rules_hold(trace in prop::collection::vec(tick_strategy(), 1..40), ttl_ms in 0u64..8000) {
        let snaps = replay(&trace, Nanos::from_millis(ttl_ms));
        let mut prev: Option<&Snapshot> = None;
        for s in &snaps {
            // Rule 4: node = active + idle, per zone, cumulative.
            for z in &s.zones {
                prop_assert_eq!(z.total, z.active + z.idle);
            }
            for kind in [ZoneKind::Package, ZoneKind::Dram] {
                let (_, active, _) = s.node_energy(kind);
                let prev_active = prev.map_or(MicroJoules(0), |p| p.node_energy(kind).1);
                let tick_active = active.0 - prev_active.0;
                // Rule 4: this tick's active = Σ workloads + unattributed, exactly.
                let procs: u64 = s.processes.iter().map(|p| p.energy.last.get(kind).0).sum();
                prop_assert_eq!(procs + s.unattributed.last.get(kind).0, tick_active);
                // Containers are the sums of their members this tick; pods of their containers'.
                let containers: u64 = s.containers.iter().map(|c| c.energy.last.get(kind).0).sum();
                let in_containers: u64 = s.processes.iter().filter(|p| p.info.container.is_some())
                    .map(|p| p.energy.last.get(kind).0).sum();
                prop_assert_eq!(containers, in_containers);
                let pods: u64 = s.pods.iter().map(|c| c.energy.last.get(kind).0).sum();
                let in_pods: u64 = s.processes.iter()
                    .filter(|p| p.info.container.as_ref().is_some_and(|c| c.pod.is_some()))
                    .map(|p| p.energy.last.get(kind).0).sum();
                prop_assert_eq!(pods, in_pods);
            }
            if let Some(p) = prev {
                // Rule 1: monotonic cumulative values.
                for (a, b) in p.zones.iter().zip(&s.zones) {
                    prop_assert!(b.total >= a.total && b.active >= a.active && b.idle >= a.idle);
                }
                let before: HashMap<(u32, u64), &ProcessEntry> =
                    p.processes.iter().map(|e| ((e.pid, e.start_time), e)).collect();
                for e in &s.processes {
                    if let Some(old) = before.get(&(e.pid, e.start_time)) {
                        for k in ZoneKind::ALL {
                            prop_assert!(e.energy.total.get(k) >= old.energy.total.get(k));
                        }
                        // Rule 5: a terminated workload gains nothing.
                        if matches!(old.state, State::Terminated { .. }) {
                            prop_assert_eq!(e.energy.total, old.energy.total);
                            prop_assert_eq!(e.state, old.state);
                        }
                    }
                }
                for e in &s.containers {
                    if let Some(old) = p.containers.iter().find(|c| c.info.id == e.info.id) {
                        prop_assert!(e.energy.total.sum() >= old.energy.total.sum());
                    }
                }
                prop_assert!(s.unattributed.total.sum() >= p.unattributed.total.sum());
            }
            // Rule 5: the cap on terminated workloads holds.
            let terminated = s.processes.iter().filter(|p| p.state != State::Running).count();
            prop_assert!(terminated <= 5);
            prev = Some(s);
        }
        // Determinism: the same trace gives the same snapshots.
        prop_assert_eq!(replay(&trace, Nanos::from_millis(ttl_ms)), snaps);
    }
}

/// Rule 5: PID reuse is a new workload, and the old one's energy stays with it.
#[test]
fn pid_reuse_is_a_new_workload() {
    let zone = fakes::counter_zone(ZoneKind::Package, 0, None);
    let mut engine = Attributor::default();
    let info = fakes::process_info("a");
    let frame = |at: u64, start: u64, cpu: u64| ActivityFrame {
        at: Timestamp(at),
        node: NodeCpu {
            busy: Nanos(at),
            total: Nanos(at),
        },
        processes: vec![ProcessSample {
            pid: 1,
            start_time: start,
            cpu_time: Nanos(cpu),
            info: info.clone(),
        }],
    };
    let mut power = PowerFrame::default();
    let s = 1_000_000_000;
    for (t, start, cpu) in [(0, 1, 0), (1, 1, s), (2, 2, s / 2)] {
        power.clear();
        power.push(
            &zone,
            Timestamp(t * s),
            Ok(Reading::Energy(MicroJoules(t * 10_000_000))),
        );
        let snap = engine.step(&power, Some(&frame(t * s, start, cpu)), Timestamp(t * s));
        if t == 2 {
            let old = snap.processes.iter().find(|p| p.start_time == 1).unwrap();
            let new = snap.processes.iter().find(|p| p.start_time == 2).unwrap();
            assert_eq!(
                old.energy.total.get(ZoneKind::Package),
                MicroJoules(10_000_000)
            );
            assert!(matches!(old.state, State::Terminated { .. }));
            // The newcomer used half the busy time; the rest is unattributed, not the old one's.
            assert_eq!(
                new.energy.total.get(ZoneKind::Package),
                MicroJoules(5_000_000)
            );
            assert_eq!(
                snap.unattributed.total.get(ZoneKind::Package),
                MicroJoules(5_000_000)
            );
        }
    }
}

/// Rule 5: terminated workloads stay for the TTL, then go.
#[test]
fn terminated_workloads_expire_after_ttl() {
    let mut power = fakes::FakePower::constant(&[(ZoneKind::Package, 0, 10.0)], u64::MAX);
    let mut activity = fakes::FakeActivity {
        cpus: 1,
        background_permille: 0,
        processes: vec![fakes::FakeProcess {
            pid: 5,
            start_time: 1,
            start: Timestamp(0),
            end: Some(Timestamp(2_500_000_000)),
            permille: 1000,
            info: fakes::process_info("short"),
        }],
        failing: false,
    };
    let mut engine = Attributor::new(
        AttributorConfig::builder()
            .terminated_ttl(Nanos::from_secs(2))
            .build(),
    );
    let mut pf = PowerFrame::default();
    let mut af = ActivityFrame::default();
    let mut states = Vec::new();
    for t in 0..7u64 {
        let at = Timestamp(t * 1_000_000_000);
        pf.clear();
        power.read(at, &mut pf);
        activity.read(at, &mut af).unwrap();
        let snap = engine.step(&pf, Some(&af), at);
        states.push(snap.processes.first().map(|p| p.state.label()));
    }
    assert_eq!(
        states,
        vec![
            Some("running"),
            Some("running"),
            Some("running"),
            Some("terminated"), // gone at t=3
            Some("terminated"), // t=4: 1 s after
            None,               // t=5: TTL of 2 s reached
            None
        ]
    );
}

/// Rule 6: one failing zone degrades only itself.
#[test]
fn failing_zone_does_not_spoil_others() {
    let mut power = fakes::FakePower::constant(
        &[(ZoneKind::Package, 0, 10.0), (ZoneKind::Dram, 0, 2.0)],
        u64::MAX,
    );
    power.failing[1] = true;
    let mut engine = Attributor::default();
    let mut pf = PowerFrame::default();
    let mut snap = None;
    for t in 0..3u64 {
        let at = Timestamp(t * 1_000_000_000);
        pf.clear();
        power.read(at, &mut pf);
        snap = Some(engine.step(&pf, None, at));
    }
    let snap = snap.unwrap();
    assert_eq!(snap.zones[0].total, MicroJoules(20_000_000));
    assert_eq!(snap.zones[1].read_errors, 3);
    assert!(snap.zones[1].last_error.is_some());
}
