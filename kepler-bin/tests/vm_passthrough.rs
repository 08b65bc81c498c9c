//! Issue 22, host and guest on one machine: a host kepler on a fake RAPL tree and the real
//! /proc, where a process whose command line is a QEMU guest's (`qemu-system-x86_64 -name
//! guest=g1 -uuid ...`) burns a CPU, writes that VM's energy under `vm.passthrough.dir`; a
//! second kepler with the `passthrough` meter reads the VM's directory. Every tick of the
//! guest, its node energy equals the host's `kepler_vm_*` energy of g1 (as the host's JSON
//! output gives it, per tick) since the guest started, to the microjoule, across counter
//! wraps and a host restart; while the host is down the guest's zone goes stale and leaves
//! its exposition.

mod support;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{parse_exposition, scrape, FakeRapl, Kepler, KillOnDrop};

const UUID: &str = "0b7e6a52-2c4f-4d7e-9a31-6f5e2d1c0a99";
/// The VM trees' range: small, so the counters wrap during the test, yet above the most the
/// VM can draw in one host tick (the fake tree's 22 W over 1 s, were the VM all of it), so a
/// guest reading ten times per host tick never sees an ambiguous wrap.
const RANGE_UJ: u64 = 25_000_000;

/// µJ from a JSON joules value (written as µJ / 1e6).
fn uj(v: &Value) -> u64 {
    (v.as_f64().expect("joules") * 1e6).round() as u64
}

fn docs(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// g1's package energy in each host tick where g1 is listed.
fn host_vm_series(path: &Path) -> Vec<u64> {
    docs(path)
        .iter()
        .filter_map(|d| {
            d["vms"]
                .as_array()?
                .iter()
                .find(|v| v["id"] == UUID)
                .map(|v| uj(&v["joules"]["package"]))
        })
        .collect()
}

/// The guest's passthrough package zone energy, per guest tick.
fn guest_series(path: &Path) -> Vec<u64> {
    docs(path)
        .iter()
        .filter_map(|d| {
            d["zones"]
                .as_array()?
                .iter()
                .find(|z| z["source"] == "passthrough" && z["zone"] == "package")
                .map(|z| {
                    assert_eq!(z["estimated"], false, "{z}");
                    uj(&z["joules"])
                })
        })
        .collect()
}

fn host_config(dir: &Path, sysfs: &Path, json: &Path) -> String {
    format!(
        "host:\n  sysfs: {}\ncpu:\n  preferredMeters: [rapl]\nmonitor:\n  interval: 1s\n\
         attribution:\n  idle: cpu-share\nvm:\n  passthrough:\n    enabled: true\n    dir: {}\n    \
         maxEnergyRangeUJ: {RANGE_UJ}\nexporter:\n  json:\n    path: {}\n",
        sysfs.display(),
        dir.display(),
        json.display()
    )
}

fn start_host(work: &Path, rapl: &FakeRapl, run: u32) -> Kepler {
    let config = work.join(format!("host{run}.yaml"));
    std::fs::write(
        &config,
        host_config(
            &work.join("vms"),
            rapl.sysfs(),
            &work.join(format!("host{run}.jsonl")),
        ),
    )
    .unwrap();
    Kepler::start(&[&format!("--config.file={}", config.display())])
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn passthrough_series(port: u16) -> usize {
    let body = scrape(port, "/metrics").unwrap_or_default();
    parse_exposition(&body)
        .iter()
        .filter(|s| {
            s.name == "kepler_node_cpu_joules_total"
                && s.label("path").is_some_and(|p| p.contains(UUID))
        })
        .count()
}

#[test]
fn guest_node_energy_equals_host_vm_energy_per_tick() {
    let rapl = FakeRapl::start(&[("package-0", 20.0), ("dram", 2.0)], 1 << 40);
    let work = tempfile::tempdir().unwrap();
    // The "VM": a shell busy loop whose argv[0] and arguments are a libvirt QEMU's.
    let _vm = KillOnDrop(
        Command::new("sh")
            .arg0("qemu-system-x86_64")
            .args([
                "-c",
                "while :; do :; done",
                "-name",
                "guest=g1,debug-threads=on",
                "-uuid",
                UUID,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let mut host = start_host(work.path(), &rapl, 1);
    let vm_dir = work.path().join("vms").join(UUID);
    wait_for("the VM tree", || {
        vm_dir.join("intel-rapl:0/energy_uj").exists()
    });

    let guest_json = work.path().join("guest.jsonl");
    let mut guest = Kepler::start(&[
        "--cpu.preferred-meters=passthrough",
        &format!("--passthrough.path={}", vm_dir.display()),
        "--passthrough.stale-after=3s",
        "--monitor.interval=100ms",
        &format!("--exporter.json={}", guest_json.display()),
    ]);
    wait_for("the guest's passthrough zone", || {
        passthrough_series(guest.port()) > 0
    });
    let info = scrape(guest.port(), "/metrics").unwrap();
    let info = parse_exposition(&info);
    assert!(
        info.iter()
            .any(|s| s.name == "kepler_node_power_source_info"
                && s.label("source") == Some("passthrough")
                && s.label("estimated") == Some("false")
                && s.label("idle_policy") == Some("cpu-share")
                && s.label("zone") == Some("package")),
        "{info:?}"
    );

    sleep(Duration::from_secs(7));
    assert_eq!(host.terminate().code(), Some(0), "{}", host.log());
    // The guest keeps the last value a little, then marks the zone stale and drops it.
    sleep(Duration::from_millis(800));
    assert!(passthrough_series(guest.port()) > 0);
    wait_for("the stale zone to leave the exposition", || {
        passthrough_series(guest.port()) == 0
    });

    let mut host = start_host(work.path(), &rapl, 2);
    wait_for("the zone back after the host restart", || {
        passthrough_series(guest.port()) > 0
    });
    sleep(Duration::from_secs(7));
    assert_eq!(host.terminate().code(), Some(0), "{}", host.log());
    sleep(Duration::from_millis(800));
    assert_eq!(guest.terminate().code(), Some(0), "{}", guest.log());
    let log = guest.log();
    assert_eq!(
        log.matches("passthrough zone stale").count(),
        2,
        "once per zone (package, dram):\n{log}"
    );

    // The host's cumulative VM energy over both runs: the second run's totals start at 0
    // and continue the first run's last value, as its tree does.
    let run1 = host_vm_series(&work.path().join("host1.jsonl"));
    let run2 = host_vm_series(&work.path().join("host2.jsonl"));
    assert!(run1.len() > 4 && run2.len() > 4, "{run1:?} {run2:?}");
    let end1 = *run1.last().unwrap();
    let host: Vec<u64> = run1
        .iter()
        .copied()
        .chain(run2.iter().map(|v| end1 + v))
        .collect();
    assert!(host.windows(2).all(|w| w[0] <= w[1]), "{host:?}");
    let guest = guest_series(&guest_json);
    assert!(guest.len() > 20, "{guest:?}");
    assert!(
        guest.windows(2).all(|w| w[0] <= w[1]),
        "guest not monotonic: {guest:?}"
    );
    // The host value when the guest took its baseline: the one that puts every guest tick
    // on a host tick.
    let known: HashSet<u64> = host.iter().copied().collect();
    let base = host
        .iter()
        .copied()
        .find(|b| guest.iter().all(|g| known.contains(&(b + g))))
        .unwrap_or_else(|| {
            panic!("no host tick explains the guest's values\nhost {host:?}\nguest {guest:?}")
        });
    assert_eq!(
        base + guest.last().unwrap(),
        *host.last().unwrap(),
        "the guest read the host's last value"
    );
    let moved = host.last().unwrap() - base;
    assert!(
        moved > 2 * RANGE_UJ,
        "{moved} µJ: the test must cross wraps"
    );
    let distinct: HashSet<u64> = guest.iter().copied().collect();
    assert!(distinct.len() > 10, "{distinct:?}");
}
