//! RAPL discovery and reading on fake powercap trees (issue 3).

#![cfg(feature = "rapl")]

use std::fs;
use std::path::{Path, PathBuf};

use kepler_core::{
    Metering, MicroJoules, MicroWatts, PowerFrame, PowerSource, ReadError, Reading, SourceKind,
    Timestamp, ZoneKind,
};
use kepler_sources::{ErrorKind, Rapl, RaplOptions};
use tempfile::TempDir;

const RANGE: u64 = 262_143_328_850;

/// A fake sysfs root with an empty `class/powercap`.
fn tree() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("class/powercap")).unwrap();
    dir
}

/// Adds zone directory `dir` named `name` with counter value `energy`.
fn zone(root: &Path, dir: &str, name: &str, energy: u64) -> PathBuf {
    let z = root.join("class/powercap").join(dir);
    fs::create_dir_all(&z).unwrap();
    fs::write(z.join("name"), format!("{name}\n")).unwrap();
    fs::write(z.join("energy_uj"), format!("{energy}\n")).unwrap();
    fs::write(z.join("max_energy_range_uj"), format!("{RANGE}\n")).unwrap();
    fs::write(z.join("enabled"), "1\n").unwrap();
    z
}

fn discover(root: &Path) -> Rapl {
    Rapl::discover(&RaplOptions::new(root)).unwrap()
}

fn layout(r: &Rapl) -> Vec<(ZoneKind, u32)> {
    r.zones().iter().map(|z| (z.kind, z.index)).collect()
}

fn read(r: &mut Rapl, t: u64) -> PowerFrame {
    let mut frame = PowerFrame::default();
    r.read(Timestamp(t), &mut frame);
    assert_eq!(frame.samples.len(), r.zones().len());
    frame
}

fn energies(frame: &PowerFrame) -> Vec<Result<u64, String>> {
    frame
        .samples
        .iter()
        .map(|s| match &s.reading {
            Ok(Reading::Energy(MicroJoules(v))) => Ok(*v),
            Ok(other) => panic!("not an energy reading: {other:?}"),
            Err(e) => Err(e.kind_label().to_owned()),
        })
        .collect()
}

#[test]
fn single_socket_package_core_uncore_dram() {
    let t = tree();
    let root = t.path();
    let pkg = zone(root, "intel-rapl:0", "package-0", 1000);
    zone(root, "intel-rapl:0:0", "core", 400);
    zone(root, "intel-rapl:0:1", "uncore", 50);
    zone(root, "intel-rapl:0:2", "dram", 300);
    let mut r = discover(root);
    assert_eq!(
        layout(&r),
        [
            (ZoneKind::Package, 0),
            (ZoneKind::Core, 0),
            (ZoneKind::Uncore, 0),
            (ZoneKind::Dram, 0)
        ]
    );
    let z = &r.zones()[0];
    assert_eq!(z.path, pkg.display().to_string());
    assert_eq!(z.id, format!("rapl:{}", pkg.display()));
    assert_eq!(z.source, SourceKind::Rapl);
    assert!(!z.estimated);
    assert_eq!(
        z.metering,
        Metering::EnergyCounter {
            max_range: Some(MicroJoules(RANGE))
        }
    );
    assert_eq!(
        energies(&read(&mut r, 1)),
        [Ok(1000), Ok(400), Ok(50), Ok(300)]
    );
}

#[test]
fn two_sockets_have_one_zone_per_socket_and_kind() {
    let t = tree();
    let root = t.path();
    // Directory numbers deliberately do not follow socket numbers, to check that sub-zones
    // take their parent's socket from its name.
    zone(root, "intel-rapl:1", "package-0", 10);
    zone(root, "intel-rapl:1:0", "dram", 11);
    zone(root, "intel-rapl:0", "package-1", 20);
    zone(root, "intel-rapl:0:0", "dram", 21);
    zone(root, "intel-rapl:0:1", "core", 22);
    let mut r = discover(root);
    assert_eq!(
        layout(&r),
        [
            (ZoneKind::Package, 0),
            (ZoneKind::Dram, 0),
            (ZoneKind::Package, 1),
            (ZoneKind::Core, 1),
            (ZoneKind::Dram, 1)
        ]
    );
    assert_eq!(
        energies(&read(&mut r, 1)),
        [Ok(10), Ok(11), Ok(20), Ok(22), Ok(21)]
    );
}

#[test]
fn psys_is_a_top_level_zone() {
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 1);
    zone(root, "intel-rapl:0:0", "core", 2);
    zone(root, "intel-rapl:1", "psys", 3);
    let mut r = discover(root);
    assert_eq!(
        layout(&r),
        [
            (ZoneKind::Package, 0),
            (ZoneKind::Core, 0),
            (ZoneKind::Psys, 0)
        ]
    );
    assert_eq!(energies(&read(&mut r, 1)), [Ok(1), Ok(2), Ok(3)]);
}

#[test]
fn mmio_duplicate_and_other_entries_are_ignored() {
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 1);
    zone(root, "intel-rapl-mmio:0", "package-0", 999);
    zone(root, "intel-rapl-mmio:0:0", "dram", 999);
    zone(root, "dtpm:0", "package-0", 999);
    fs::create_dir_all(root.join("class/powercap/intel-rapl")).unwrap();
    let mut r = discover(root);
    assert_eq!(layout(&r), [(ZoneKind::Package, 0)]);
    assert_eq!(energies(&read(&mut r, 1)), [Ok(1)]);
}

#[test]
fn amd_shape_package_and_core() {
    // AMD Zen registers with the intel-rapl names: package and core, no dram, and often no
    // power-limit constraints.
    let t = tree();
    let root = t.path();
    for s in 0..2u64 {
        let z = zone(
            root,
            &format!("intel-rapl:{s}"),
            &format!("package-{s}"),
            100 + s,
        );
        fs::remove_file(z.join("enabled")).unwrap();
        zone(root, &format!("intel-rapl:{s}:0"), "core", 200 + s);
    }
    let mut r = discover(root);
    assert_eq!(
        layout(&r),
        [
            (ZoneKind::Package, 0),
            (ZoneKind::Core, 0),
            (ZoneKind::Package, 1),
            (ZoneKind::Core, 1)
        ]
    );
    assert!(r.zones().iter().all(|z| z.max_power.is_none()));
    assert_eq!(
        energies(&read(&mut r, 1)),
        [Ok(100), Ok(200), Ok(101), Ok(201)]
    );
}

#[test]
fn zone_filter_keeps_named_kinds() {
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 1);
    zone(root, "intel-rapl:0:0", "core", 2);
    zone(root, "intel-rapl:0:1", "dram", 3);
    zone(root, "intel-rapl:1", "package-1", 4);
    let opts = RaplOptions {
        sysfs_root: root.to_path_buf(),
        zones: vec!["package".into(), "DRAM".into()],
    };
    let mut r = Rapl::discover(&opts).unwrap();
    assert_eq!(
        layout(&r),
        [
            (ZoneKind::Package, 0),
            (ZoneKind::Dram, 0),
            (ZoneKind::Package, 1)
        ]
    );
    assert_eq!(energies(&read(&mut r, 1)), [Ok(1), Ok(3), Ok(4)]);

    let none = RaplOptions {
        sysfs_root: root.to_path_buf(),
        zones: vec!["uncore".into()],
    };
    assert_eq!(
        Rapl::discover(&none).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn counter_advances_between_reads_without_reopen() {
    let t = tree();
    let root = t.path();
    let z = zone(root, "intel-rapl:0", "package-0", 1_000);
    let mut r = discover(root);
    assert_eq!(energies(&read(&mut r, 1)), [Ok(1_000)]);
    // Rewriting in place keeps the inode, so the open file sees the new content at offset 0,
    // as a sysfs attribute would. A shorter value checks that stale bytes are not kept.
    fs::write(z.join("energy_uj"), "2500000\n").unwrap();
    assert_eq!(energies(&read(&mut r, 2)), [Ok(2_500_000)]);
    fs::write(z.join("energy_uj"), "7\n").unwrap();
    let frame = read(&mut r, 3);
    assert_eq!(energies(&frame), [Ok(7)]);
    assert_eq!(
        frame.samples[0].sampled_at, None,
        "read at the tick's instant"
    );
}

#[test]
fn garbage_energy_is_an_error_for_that_zone_only() {
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 10);
    let core = zone(root, "intel-rapl:0:0", "core", 20);
    zone(root, "intel-rapl:0:1", "dram", 30);
    fs::write(core.join("energy_uj"), "12ab\n").unwrap();
    let mut r = discover(root);
    let frame = read(&mut r, 1);
    assert_eq!(energies(&frame), [Ok(10), Err("parse".into()), Ok(30)]);
    match &frame.samples[1].reading {
        Err(ReadError::Parse { what, .. }) => assert!(what.ends_with("intel-rapl:0:0/energy_uj")),
        other => panic!("unexpected {other:?}"),
    }
    // An over-long value is refused, not truncated into a number.
    fs::write(core.join("energy_uj"), format!("1{}\n", " ".repeat(100))).unwrap();
    assert_eq!(
        energies(&read(&mut r, 2)),
        [Ok(10), Err("parse".into()), Ok(30)]
    );
    // And the zone recovers when the value does.
    fs::write(core.join("energy_uj"), "21\n").unwrap();
    assert_eq!(energies(&read(&mut r, 3)), [Ok(10), Ok(21), Ok(30)]);
}

#[test]
fn unreadable_counter_drops_only_that_zone() {
    // A directory opens but cannot be read (EISDIR): an I/O failure found at discovery.
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 10);
    let dram = zone(root, "intel-rapl:0:0", "dram", 20);
    fs::remove_file(dram.join("energy_uj")).unwrap();
    fs::create_dir(dram.join("energy_uj")).unwrap();
    let mut r = discover(root);
    assert_eq!(layout(&r), [(ZoneKind::Package, 0)]);
    assert_eq!(energies(&read(&mut r, 1)), [Ok(10)]);
}

#[test]
fn unreadable_counters_everywhere_is_an_error() {
    let t = tree();
    let root = t.path();
    let z = zone(root, "intel-rapl:0", "package-0", 10);
    fs::remove_file(z.join("energy_uj")).unwrap();
    fs::create_dir(z.join("energy_uj")).unwrap();
    let err = Rapl::discover(&RaplOptions::new(root)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.path().unwrap().ends_with("energy_uj"));
}

#[test]
fn zone_without_counter_is_skipped() {
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 10);
    let core = zone(root, "intel-rapl:0:0", "core", 20);
    fs::remove_file(core.join("energy_uj")).unwrap();
    assert_eq!(layout(&discover(root)), [(ZoneKind::Package, 0)]);
}

/// Set, to the two tree roots, when `permission_denied_when_no_counter_is_readable` runs
/// again as `nobody`.
const UNPRIVILEGED_ROOTS: &str = "KEPLER_TEST_RAPL_UNPRIVILEGED_ROOTS";

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid() == 0
}

/// What an unprivileged kepler sees since CVE-2020-8694: `locked` has one zone whose
/// `energy_uj` it cannot read, `mixed` has that zone and a readable one.
fn assert_unreadable_counters(locked: &Path, mixed: &Path) {
    let energy = locked.join("class/powercap/intel-rapl:0/energy_uj");
    assert!(
        fs::File::open(&energy).is_err(),
        "{} is readable",
        energy.display()
    );
    let err = Rapl::discover(&RaplOptions::new(locked)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(err.path(), Some(energy.as_path()));
    assert!(err.to_string().contains("CVE-2020-8694"));

    // With one readable zone the source starts and keeps it.
    assert_eq!(layout(&discover(mixed)), [(ZoneKind::Package, 1)]);
}

/// CVE-2020-8694 made `energy_uj` readable by root only (mode 0400). Root reads any file
/// whatever its mode, so as root (CI) the trees get the kernel's owner and mode and the
/// assertions run in a copy of this test binary that `setpriv` (util-linux) starts as
/// `nobody`; without setpriv the test skips, or fails under `REQUIRE_SETPRIV=1` (issue 14).
/// Any other user runs them itself, on counters of mode 000.
#[test]
fn permission_denied_when_no_counter_is_readable() {
    use std::os::unix::fs::PermissionsExt;
    if let Some(roots) = std::env::var_os(UNPRIVILEGED_ROOTS) {
        let roots: Vec<PathBuf> = std::env::split_paths(&roots).collect();
        return assert_unreadable_counters(&roots[0], &roots[1]);
    }
    let root = is_root();
    let (locked, mixed) = (tree(), tree());
    for t in [&locked, &mixed] {
        let z = zone(t.path(), "intel-rapl:0", "package-0", 10);
        let mode = if root { 0o400 } else { 0o000 };
        fs::set_permissions(z.join("energy_uj"), fs::Permissions::from_mode(mode)).unwrap();
    }
    zone(mixed.path(), "intel-rapl:1", "package-1", 5);
    if !root {
        return assert_unreadable_counters(locked.path(), mixed.path());
    }

    // The trees and a copy of this binary where `nobody` can reach them: the binary may
    // live under a home directory closed to other users.
    let bin = tempfile::tempdir().unwrap();
    for dir in [locked.path(), mixed.path(), bin.path()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let exe = bin.path().join("rapl_tree");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let roots = std::env::join_paths([locked.path(), mixed.path()]).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "permission_denied_when_no_counter_is_readable"])
        .args(["--test-threads=1", "--nocapture"])
        .env(UNPRIVILEGED_ROOTS, &roots)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) if std::env::var("REQUIRE_SETPRIV").as_deref() == Ok("1") => {
            panic!("REQUIRE_SETPRIV=1 but setpriv cannot run ({e}; Debian package util-linux)")
        }
        Err(e) => {
            eprintln!("skipping: running as root and setpriv cannot run ({e}); REQUIRE_SETPRIV=1 makes this fail");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "as nobody: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_powercap_dir_is_not_found() {
    let t = tempfile::tempdir().unwrap();
    let err = Rapl::discover(&RaplOptions::new(t.path())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.path(), Some(t.path().join("class/powercap").as_path()));
}

#[test]
fn powercap_without_rapl_zones_is_not_found() {
    let t = tree();
    zone(t.path(), "intel-rapl-mmio:0", "package-0", 1);
    let err = Rapl::discover(&RaplOptions::new(t.path())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn power_limit_gives_a_generous_bound() {
    let t = tree();
    let root = t.path();
    let pkg = zone(root, "intel-rapl:0", "package-0", 1);
    fs::write(pkg.join("constraint_0_max_power_uw"), "125000000\n").unwrap();
    fs::write(pkg.join("constraint_1_max_power_uw"), "250000000\n").unwrap();
    let dram = zone(root, "intel-rapl:0:0", "dram", 2);
    fs::write(dram.join("constraint_0_max_power_uw"), "0\n").unwrap();
    let core = zone(root, "intel-rapl:0:1", "core", 3);
    fs::write(core.join("constraint_0_max_power_uw"), "40000000\n").unwrap();
    let r = discover(root);
    let bounds: Vec<_> = r.zones().iter().map(|z| (z.kind, z.max_power)).collect();
    assert_eq!(
        bounds,
        [
            (ZoneKind::Package, Some(MicroWatts(500_000_000))),
            (ZoneKind::Core, Some(MicroWatts(80_000_000))),
            (ZoneKind::Dram, None)
        ]
    );
}

#[test]
fn disabled_zone_is_kept_and_bad_range_is_unknown() {
    let t = tree();
    let root = t.path();
    zone(root, "intel-rapl:0", "package-0", 1);
    let core = zone(root, "intel-rapl:0:0", "core", 2);
    fs::write(core.join("enabled"), "0\n").unwrap();
    fs::write(core.join("max_energy_range_uj"), "lots\n").unwrap();
    let mut r = discover(root);
    assert_eq!(layout(&r), [(ZoneKind::Package, 0), (ZoneKind::Core, 0)]);
    assert_eq!(
        r.zones()[1].metering,
        Metering::EnergyCounter { max_range: None }
    );
    assert_eq!(energies(&read(&mut r, 1)), [Ok(1), Ok(2)]);
}
