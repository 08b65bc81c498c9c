//! Issue 20, section 3: carbon integrated per tick with the intensity of that tick.
//! <https://github.com/sustainable-computing-io/kepler-rs/issues/20> (local: ISSUE-20.md)

use std::sync::Arc;

use kepler_core::*;

const ZONE: ZoneKind = ZoneKind::Package;

/// A node with one package zone and two pods (one container each), stepped one second at a
/// time with energy and CPU time that change from tick to tick.
struct Node {
    engine: Attributor,
    ledger: CarbonLedger,
    zone: Arc<ZoneInfo>,
    power: PowerFrame,
    activity: ActivityFrame,
    tick: u64,
    energy_uj: u64,
    busy_ns: u64,
    cpu_ns: [u64; 2],
    infos: [Arc<ProcessInfo>; 2],
    /// Which pods still run.
    running: [bool; 2],
}

impl Node {
    fn new(config: AttributorConfig) -> Node {
        let info = |i: usize| {
            let pod = PodInfo::new(format!("pod-{i}"), format!("web-{i}"), "shop");
            Arc::new(ProcessInfo::new("srv", "/bin/srv").with_container(
                ContainerInfo::new(format!("{i:064x}"), "srv", Runtime::Containerd).with_pod(pod),
            ))
        };
        Node {
            engine: Attributor::new(config),
            ledger: CarbonLedger::new(),
            zone: Arc::new(
                ZoneInfo::builder("test:package-0", ZONE, SourceKind::Fake)
                    .energy_counter(None)
                    .build(),
            ),
            power: PowerFrame::default(),
            activity: ActivityFrame::default(),
            tick: 0,
            energy_uj: 0,
            busy_ns: 0,
            cpu_ns: [0; 2],
            infos: [info(0), info(1)],
            running: [true; 2],
        }
    }

    /// One tick: the zone gains an uneven amount of energy, the pods uneven CPU time.
    fn step(&mut self, intensity: Option<f64>) -> (Snapshot, CarbonSnapshot) {
        self.tick += 1;
        let n = self.tick;
        if n > 1 {
            self.energy_uj += 17_000_003 + n * 1_234_567;
            self.busy_ns += 600_000_000;
            self.cpu_ns[0] += 100_000_000 + n * 7_000_000;
            self.cpu_ns[1] += 250_000_000 - n * 3_000_000;
        }
        self.power.clear();
        self.power
            .push(&self.zone, Ok(Reading::Energy(MicroJoules(self.energy_uj))));
        self.activity.clear();
        self.activity.node = NodeCpu::new(Nanos(self.busy_ns), Nanos(n * 1_000_000_000));
        for i in 0..2 {
            if self.running[i] {
                self.activity.processes.push(ProcessSample::new(
                    100 + i as u32,
                    1,
                    Nanos(self.cpu_ns[i]),
                    self.infos[i].clone(),
                ));
            }
        }
        let snap = self.engine.step(
            &self.power,
            Some(&self.activity),
            Timestamp(n * 1_000_000_000),
        );
        let carbon = self.ledger.step(&snap, intensity);
        (snap, carbon)
    }
}

/// Energy per series: the node zone, then each pod, then each container (by position).
fn energies(s: &Snapshot) -> Vec<u64> {
    let mut v = vec![s.zones[0].total.0];
    v.extend(s.pods.iter().map(|p| p.energy.total.get(ZONE).0));
    v.extend(s.containers.iter().map(|c| c.energy.total.get(ZONE).0));
    v
}

fn grams(c: &CarbonSnapshot) -> Vec<f64> {
    let mut v = vec![c.zones[0]];
    v.extend(c.pods.iter().map(|p| p.get(ZONE)));
    v.extend(c.containers.iter().map(|c| c.get(ZONE)));
    v
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= want.abs() * 1e-12
}

/// The acceptance test of issue 20's carbon line: a step change of intensity mid-run.
/// Every series' total equals (energy before the change) × i1 + (energy after) × i2, to
/// rounding, while one intensity times the whole energy (what PromQL's
/// `increase(joules) * intensity` gives) is far from it.
#[test]
fn step_change_of_intensity_integrates_exactly_issue_20() {
    let (i1, i2) = (400.0, 123.456);
    let mut node = Node::new(AttributorConfig::default());
    let mut before = Vec::new();
    let mut last = None;
    for tick in 1..=20 {
        let intensity = if tick <= 10 { i1 } else { i2 };
        let (snap, carbon) = node.step(Some(intensity));
        assert_eq!(carbon.intensity, Some(intensity));
        assert_eq!(carbon.zones.len(), snap.zones.len());
        assert_eq!(carbon.pods.len(), snap.pods.len());
        assert_eq!(carbon.containers.len(), snap.containers.len());
        if tick == 10 {
            before = energies(&snap);
        }
        last = Some((snap, carbon));
    }
    let (snap, carbon) = last.unwrap();
    let after = energies(&snap);
    assert_eq!(after.len(), 5, "node, two pods, two containers");
    for (k, ((b, a), g)) in before.iter().zip(&after).zip(grams(&carbon)).enumerate() {
        assert!(*b > 0 && a > b, "series {k}: energy before {b}, after {a}");
        let want = *b as f64 * i1 / 3.6e12 + (a - b) as f64 * i2 / 3.6e12;
        assert!(close(g, want), "series {k}: {g} g, want {want} g");
        let one_intensity = *a as f64 * i2 / 3.6e12;
        assert!(
            (g - one_intensity).abs() > want * 0.1,
            "series {k}: the step must matter"
        );
    }
}

/// Ticks with no known intensity add nothing, and their energy is not charged later.
#[test]
fn unknown_intensity_adds_nothing_issue_20() {
    let mut node = Node::new(AttributorConfig::default());
    let mut at_first_value = Vec::new();
    let mut last = None;
    for tick in 1..=8 {
        let intensity = (tick > 3).then_some(250.0);
        let (snap, carbon) = node.step(intensity);
        if tick <= 3 {
            assert_eq!(carbon.intensity, None);
            assert!(grams(&carbon).iter().all(|g| *g == 0.0), "tick {tick}");
            at_first_value = energies(&snap);
        }
        last = Some((snap, carbon));
    }
    let (snap, carbon) = last.unwrap();
    for ((b, a), g) in at_first_value
        .iter()
        .zip(energies(&snap))
        .zip(grams(&carbon))
    {
        let want = (a - b) as f64 * 250.0 / 3.6e12;
        assert!(close(g, want), "{g} g, want {want} g");
    }
}

/// A value that is not a finite number >= 0 is treated as unknown, not integrated.
#[test]
fn invalid_intensity_counts_as_unknown_issue_20() {
    let mut node = Node::new(AttributorConfig::default());
    node.step(Some(100.0));
    let (_, good) = node.step(Some(100.0));
    assert!(good.zones[0] > 0.0);
    for bad in [f64::NAN, f64::INFINITY, -5.0] {
        let (_, c) = node.step(Some(bad));
        assert_eq!(c.intensity, None);
        assert_eq!(c.zones[0], good.zones[0]);
    }
}

/// Issue 20: an ended pod's carbon follows its energy's retention: frozen and exported
/// while the snapshot keeps the pod (terminated TTL), gone with it, and a pod of the same
/// id that comes back later starts again from zero, as its energy does.
#[test]
fn ended_pods_follow_energy_retention_issue_20() {
    let config = AttributorConfig::builder()
        .terminated_ttl(Nanos::from_secs(3))
        .build();
    let mut node = Node::new(config);
    for _ in 0..5 {
        node.step(Some(300.0));
    }
    node.running[1] = false;
    let (snap, carbon) = node.step(Some(300.0));
    let pos = |s: &Snapshot| s.pods.iter().position(|p| &*p.info.id == "pod-1");
    let i = pos(&snap).expect("terminated pod still listed");
    assert_eq!(snap.pods[i].state.label(), "terminated");
    let frozen = carbon.pods[i];
    assert!(frozen.get(ZONE) > 0.0);
    let mut gone = false;
    for _ in 0..6 {
        let (snap, carbon) = node.step(Some(900.0));
        assert_eq!(carbon.pods.len(), snap.pods.len());
        match pos(&snap) {
            Some(i) => {
                assert!(!gone, "the pod came back without running");
                assert_eq!(carbon.pods[i], frozen, "no carbon without energy");
            }
            None => gone = true,
        }
    }
    assert!(gone, "dropped after the TTL");
    node.running[1] = true;
    node.step(Some(300.0));
    let (snap, carbon) = node.step(Some(300.0));
    let i = pos(&snap).expect("running again");
    let want = snap.pods[i].energy.total.get(ZONE).0 as f64 * 300.0 / 3.6e12;
    assert!(close(carbon.pods[i].get(ZONE), want));
}
