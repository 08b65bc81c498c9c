//! Issue 22: the host's VM passthrough writer and the guest's `passthrough` meter over a
//! real directory: the guest's node energy equals the host's VM energy to the microjoule,
//! across counter wraps and a host restart; a tree its host stops writing goes stale; bad
//! trees (torn, non-numeric, vanished, symlinked outside the mount) give named errors and
//! nothing outside the mount is read.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kepler_core::fakes::{FakeActivity, FakePower, FakeProcess};
use kepler_core::{
    ActivityFrame, ActivitySource, Attributor, AttributorConfig, IdlePolicy, MicroJoules,
    PowerFrame, PowerSource, ProcessInfo, ReadError, Reading, Snapshot, SourceKind, Timestamp,
    VmInfo, ZoneKind,
};
use kepler_sources::passthrough::{
    dir_name, Passthrough, PassthroughOptions, PassthroughWriter, PassthroughWriterOptions,
};

const SEC: u64 = 1_000_000_000;
const VM_ID: &str = "5f1c2b9e-3d4a-4e6f-8a7b-9c0d1e2f3a4b";

/// A host: 60 W package and 6 W dram on 4 CPUs, a qemu process of VM `g1` burning 1.5 CPUs
/// and another process burning 0.5.
struct Host {
    engine: Attributor,
    power: FakePower,
    activity: FakeActivity,
    writer: PassthroughWriter,
}

impl Host {
    fn start(dir: &Path, range: u64, since: Timestamp) -> Host {
        let vm = VmInfo::new(Arc::from(VM_ID), Arc::from("g1"), Arc::from("kvm"));
        let qemu = FakeProcess {
            pid: 100,
            start_time: 1,
            start: since,
            end: None,
            permille: 1500,
            info: Arc::new(
                ProcessInfo::new("qemu-system-x86", "/usr/bin/qemu-system-x86_64").with_vm(vm),
            ),
        };
        let other = FakeProcess {
            pid: 101,
            start_time: 2,
            start: since,
            end: None,
            permille: 500,
            info: kepler_core::fakes::process_info("other"),
        };
        let config = AttributorConfig::builder()
            .idle(IdlePolicy::CpuShare)
            .build();
        Host {
            engine: Attributor::new(config),
            power: FakePower::constant(
                &[(ZoneKind::Package, 0, 60.0), (ZoneKind::Dram, 0, 6.0)],
                1 << 40,
            ),
            activity: FakeActivity {
                cpus: 4,
                background_permille: 0,
                processes: vec![qemu, other],
                failing: false,
            },
            writer: PassthroughWriter::new(PassthroughWriterOptions {
                max_energy_range: MicroJoules(range),
                ..PassthroughWriterOptions::new(dir)
            })
            .unwrap(),
        }
    }

    fn tick(&mut self, at: Timestamp) -> Snapshot {
        let mut power = PowerFrame::default();
        self.power.read(at, &mut power);
        let mut act = ActivityFrame::default();
        self.activity.read(at, &mut act).unwrap();
        let snap = self.engine.step(&power, Some(&act), at);
        self.writer.write(&snap);
        snap
    }
}

fn vm_total(snap: &Snapshot, kind: ZoneKind) -> u64 {
    snap.vms
        .iter()
        .find(|v| &*v.info.id == VM_ID)
        .map_or(0, |v| v.energy.total.get(kind).0)
}

fn guest_opts(path: &Path, stale_secs: u64) -> PassthroughOptions {
    PassthroughOptions {
        path: path.to_path_buf(),
        stale_after: Duration::from_secs(stale_secs),
    }
}

/// Steps the guest engine with only its passthrough meter (no activity: all of it is
/// unattributed, which does not matter for node energy).
fn guest_tick(engine: &mut Attributor, meter: &mut Passthrough, at: Timestamp) -> Snapshot {
    let mut power = PowerFrame::default();
    meter.read(at, &mut power);
    engine.step(&power, None, at)
}

#[test]
fn guest_node_energy_equals_host_vm_energy_across_wraps_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    // 100 J range: the VM draws 45 W here, so the package counter wraps every other tick.
    let range = 100_000_000;
    let mut host = Host::start(tmp.path(), range, Timestamp(0));
    host.tick(Timestamp(SEC));
    let vm_dir = tmp.path().join(dir_name(VM_ID).unwrap());
    assert_eq!(
        fs::read_to_string(vm_dir.join("intel-rapl:0/name")).unwrap(),
        "package-0\n"
    );
    assert_eq!(
        fs::read_to_string(vm_dir.join("intel-rapl:0/intel-rapl:0:0/name")).unwrap(),
        "dram\n"
    );
    assert_eq!(
        fs::read_to_string(vm_dir.join("idle_policy")).unwrap(),
        "cpu-share\n"
    );
    // The host's FakePower zones are measured, so the guest's are too.
    assert_eq!(
        fs::read_to_string(vm_dir.join("estimated")).unwrap(),
        "false\n"
    );

    let mut meter = Passthrough::discover(&guest_opts(&vm_dir, 30)).unwrap();
    let kinds: Vec<ZoneKind> = meter.zones().iter().map(|z| z.kind).collect();
    assert_eq!(kinds, [ZoneKind::Package, ZoneKind::Dram]);
    assert!(meter
        .zones()
        .iter()
        .all(|z| z.source == SourceKind::Passthrough && !z.estimated));
    let mut guest = Attributor::default();
    let first = host.tick(Timestamp(2 * SEC));
    let base = (
        vm_total(&first, ZoneKind::Package),
        vm_total(&first, ZoneKind::Dram),
    );
    guest_tick(&mut guest, &mut meter, Timestamp(2 * SEC));

    let mut host_cum = base;
    let mut host_offset = (0, 0);
    let mut wraps_seen = 0;
    let mut t = 2;
    for round in 0..2 {
        if round == 1 {
            // Host restart: a new engine and writer on the same directory; the VM's totals
            // start again at 0 and the files continue from where they were.
            host_offset = host_cum;
            host = Host::start(tmp.path(), range, Timestamp(t * SEC));
            t += 1;
            host.tick(Timestamp(t * SEC));
        }
        for _ in 0..12 {
            t += 1;
            let at = Timestamp(t * SEC);
            let snap = host.tick(at);
            host_cum = (
                host_offset.0 + vm_total(&snap, ZoneKind::Package),
                host_offset.1 + vm_total(&snap, ZoneKind::Dram),
            );
            let g = guest_tick(&mut guest, &mut meter, at);
            let (pkg, _, _) = g.node_energy(ZoneKind::Package);
            let (dram, _, _) = g.node_energy(ZoneKind::Dram);
            assert_eq!(pkg.0, host_cum.0 - base.0, "package at tick {t}");
            assert_eq!(dram.0, host_cum.1 - base.1, "dram at tick {t}");
            wraps_seen = g.zones.iter().map(|z| z.wraps).sum::<u64>();
            assert!(g.zones.iter().all(|z| z.dropped_deltas == 0));
        }
    }
    assert!(host_cum.0 - base.0 > 3 * range, "the test must cross wraps");
    assert!(wraps_seen >= 3, "{wraps_seen} wraps");
}

#[test]
fn a_tree_the_host_stops_writing_goes_stale_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path(), 1 << 40, Timestamp(0));
    host.tick(Timestamp(SEC));
    let vm_dir = tmp.path().join(dir_name(VM_ID).unwrap());
    let mut meter = Passthrough::discover(&guest_opts(&vm_dir, 3)).unwrap();
    let mut guest = Attributor::default();
    for t in 1..=3 {
        host.tick(Timestamp(t * SEC));
        guest_tick(&mut guest, &mut meter, Timestamp(t * SEC));
    }
    // The host stops: within the limit the zone still reads, past it it is stale.
    let mut frame = PowerFrame::default();
    meter.read(Timestamp(6 * SEC), &mut frame);
    assert!(frame.samples.iter().all(|s| s.reading.is_ok()));
    frame.clear();
    meter.read(Timestamp(7 * SEC), &mut frame);
    assert!(frame
        .samples
        .iter()
        .all(|s| matches!(s.reading, Err(ReadError::Stale { .. }))));
    let snap = guest_tick(&mut guest, &mut meter, Timestamp(8 * SEC));
    assert!(snap
        .zones
        .iter()
        .all(|z| matches!(z.last_error, Some(ReadError::Stale { .. }))));
    // Back: readings again, and the energy of the gap is counted once.
    host.tick(Timestamp(9 * SEC));
    let snap = guest_tick(&mut guest, &mut meter, Timestamp(9 * SEC));
    assert!(snap.zones.iter().all(|z| z.last_error.is_none()));
}

/// A hand-made tree: one package zone with `energy` as the counter's content.
fn tree(root: &Path, energy: &[u8]) {
    let z = root.join("intel-rapl:0");
    fs::create_dir_all(&z).unwrap();
    fs::write(z.join("name"), "package-0\n").unwrap();
    fs::write(z.join("max_energy_range_uj"), "1000000000\n").unwrap();
    fs::write(z.join("energy_uj"), energy).unwrap();
    fs::write(root.join("idle_policy"), "none\n").unwrap();
}

fn read_one(meter: &mut Passthrough) -> Result<Reading, ReadError> {
    let mut frame = PowerFrame::default();
    meter.read(Timestamp(SEC), &mut frame);
    assert_eq!(frame.samples.len(), 1);
    frame.samples.remove(0).reading
}

#[test]
fn torn_truncated_and_non_numeric_values_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), b"12345\n");
    let mut meter = Passthrough::discover(&guest_opts(tmp.path(), 30)).unwrap();
    assert_eq!(
        read_one(&mut meter),
        Ok(Reading::Energy(MicroJoules(12345)))
    );
    let energy = tmp.path().join("intel-rapl:0/energy_uj");
    for (content, expect) in [
        (&b"123"[..], "truncated value (no trailing newline)"),
        (b"", "empty file"),
        (b"12a4\n", "not a decimal number"),
        (b"-5\n", "not a decimal number"),
        (b"99999999999999999999999\n", "exceeds u64"),
        (b"1000000000\n", "not below max_energy_range_uj"),
    ] {
        fs::write(&energy, content).unwrap();
        match read_one(&mut meter) {
            Err(ReadError::Parse { what, detail }) => {
                assert!(what.ends_with("intel-rapl:0/energy_uj"), "{what}");
                assert!(detail.contains(expect), "{content:?}: {detail}");
            }
            other => panic!("{content:?}: {other:?}"),
        }
    }
}

#[test]
fn a_vanished_directory_is_missing_then_found_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mnt");
    tree(&root, b"7\n");
    let mut meter = Passthrough::discover(&guest_opts(&root, 30)).unwrap();
    assert!(read_one(&mut meter).is_ok());
    fs::remove_dir_all(&root).unwrap();
    match read_one(&mut meter) {
        Err(ReadError::Missing { what }) => assert!(what.ends_with("energy_uj"), "{what}"),
        other => panic!("{other:?}"),
    }
    tree(&root, b"9\n");
    // The first read after a miss opens the mount point again by its path.
    assert_eq!(read_one(&mut meter), Ok(Reading::Energy(MicroJoules(9))));

    let gone = tmp.path().join("never");
    let e = Passthrough::discover(&guest_opts(&gone, 30)).unwrap_err();
    assert!(e.to_string().contains("never"), "{e}");
}

#[test]
fn symlinks_pointing_outside_the_mount_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    // Outside the mount: a valid-looking tree and a counter with a recognisable value.
    let outside = tmp.path().join("outside");
    tree(&outside, b"424242\n");
    let root = tmp.path().join("mnt");

    // A zone directory that is a symlink: skipped at discovery, so no zone at all.
    fs::create_dir_all(&root).unwrap();
    symlink(outside.join("intel-rapl:0"), root.join("intel-rapl:0")).unwrap();
    let e = Passthrough::discover(&guest_opts(&root, 30)).unwrap_err();
    assert!(e.to_string().contains("no usable intel-rapl zone"), "{e}");

    // A counter that is a symlink: named at discovery.
    fs::remove_file(root.join("intel-rapl:0")).unwrap();
    tree(&root, b"1\n");
    let energy = root.join("intel-rapl:0/energy_uj");
    fs::remove_file(&energy).unwrap();
    symlink(outside.join("intel-rapl:0/energy_uj"), &energy).unwrap();
    assert!(Passthrough::discover(&guest_opts(&root, 30)).is_err());

    // A counter replaced by a symlink after discovery: a named error, never the value.
    fs::remove_file(&energy).unwrap();
    fs::write(&energy, "1\n").unwrap();
    let mut meter = Passthrough::discover(&guest_opts(&root, 30)).unwrap();
    assert!(read_one(&mut meter).is_ok());
    fs::remove_file(&energy).unwrap();
    symlink(outside.join("intel-rapl:0/energy_uj"), &energy).unwrap();
    match read_one(&mut meter) {
        Err(ReadError::Io { what, detail }) => {
            assert!(what.ends_with("energy_uj"), "{what}");
            assert!(detail.contains("symbolic link, not followed"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // Same for the zone directory swapped for a symlink.
    fs::remove_dir_all(root.join("intel-rapl:0")).unwrap();
    symlink(outside.join("intel-rapl:0"), root.join("intel-rapl:0")).unwrap();
    match read_one(&mut meter) {
        Err(ReadError::Io { detail, .. }) => {
            assert!(detail.contains("symbolic link, not followed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_new_vm_identity_starts_at_zero_and_the_same_one_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path(), 1 << 40, Timestamp(0));
    for t in 1..=3 {
        host.tick(Timestamp(t * SEC));
    }
    let file = tmp
        .path()
        .join(dir_name(VM_ID).unwrap())
        .join("intel-rapl:0/energy_uj");
    let before: u64 = fs::read_to_string(&file).unwrap().trim().parse().unwrap();
    assert!(before > 0);
    // Same uuid after a host restart: continues from the file.
    let mut host = Host::start(tmp.path(), 1 << 40, Timestamp(3 * SEC));
    host.tick(Timestamp(4 * SEC));
    let after: u64 = fs::read_to_string(&file).unwrap().trim().parse().unwrap();
    assert_eq!(after, before, "first tick of the new run adds nothing");
    host.tick(Timestamp(5 * SEC));
    let later: u64 = fs::read_to_string(&file).unwrap().trim().parse().unwrap();
    assert!(later > after);
    // Only the VM's own directory, nothing else, and no temporary file left behind.
    let names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [VM_ID]);
    assert!(!file.with_file_name("energy_uj.tmp").exists());
}
