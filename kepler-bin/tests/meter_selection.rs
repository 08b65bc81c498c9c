//! `cpu.preferredMeters` with the meters of issue 7: on a machine without RAPL but with an
//! hwmon CPU chip, the default order `[rapl, hwmon, trained, model]` picks hwmon; platform meters are
//! found next to it; and an explicit order is honoured.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use clap::Parser;
use kepler_bin::config::{Config, Flags};
use kepler_bin::run::runtime_options;
use kepler_core::{SourceKind, ZoneKind};
use kepler_runtime::{platform_sources, MeterChoice, NamedSource};

/// The runtime's CPU meter choice under `c`, as the binary makes it.
fn select_meter(c: &Config) -> (Option<NamedSource>, Vec<(String, String)>) {
    let o = runtime_options(c);
    let MeterChoice { meter, skipped } =
        kepler_runtime::select_meter(&o.meters, &o.preferred_meters);
    (meter, skipped)
}

/// A sysfs with an Ampere-style CPU chip and an ACPI power meter, no powercap; a procfs with
/// a `stat` so the model could run too.
fn machine(root: &Path) {
    let dev = root.join("sys/devices/platform/smpro-hwmon.0");
    let hw = dev.join("hwmon/hwmon0");
    fs::create_dir_all(&hw).unwrap();
    fs::create_dir_all(root.join("sys/class/hwmon")).unwrap();
    fs::write(hw.join("name"), "smpro\n").unwrap();
    fs::write(hw.join("power1_input"), "95000000\n").unwrap();
    fs::write(hw.join("power1_label"), "CPU power\n").unwrap();
    fs::write(hw.join("power2_input"), "9000000\n").unwrap();
    fs::write(hw.join("power2_label"), "DIMM power\n").unwrap();
    symlink(&dev, hw.join("device")).unwrap();
    symlink(&hw, root.join("sys/class/hwmon/hwmon0")).unwrap();
    let acpi = root.join("sys/devices/LNXSYSTM:00/ACPI000D:00/hwmon/hwmon1");
    fs::create_dir_all(&acpi).unwrap();
    fs::write(acpi.join("name"), "power_meter\n").unwrap();
    fs::write(acpi.join("power1_average"), "250000000\n").unwrap();
    symlink(&acpi, root.join("sys/class/hwmon/hwmon1")).unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("proc/stat"),
        "cpu  1 0 1 8 0 0 0 0 0 0\ncpu0 1 0 1 8 0 0 0 0 0 0\n",
    )
    .unwrap();
}

fn config(root: &Path, extra: &[&str]) -> Config {
    let sys = format!("--host.sysfs={}", root.join("sys").display());
    let proc = format!("--host.procfs={}", root.join("proc").display());
    let mut argv = vec!["kepler", &sys, &proc];
    argv.extend_from_slice(extra);
    Config::build(&Flags::try_parse_from(argv).unwrap(), None, None, || {
        "n".into()
    })
    .unwrap()
}

#[test]
fn default_order_picks_hwmon_without_rapl_issue_7() {
    let dir = tempfile::tempdir().unwrap();
    machine(dir.path());
    let c = config(dir.path(), &[]);
    assert_eq!(c.preferred_meters, ["rapl", "hwmon", "trained", "model"]);
    let (meter, skipped) = select_meter(&c);
    let meter = meter.expect("a meter");
    assert_eq!(meter.name, "hwmon");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, "rapl");
    let kinds: Vec<(ZoneKind, SourceKind, bool)> = meter
        .source
        .zones()
        .iter()
        .map(|z| (z.kind, z.source, z.estimated))
        .collect();
    assert_eq!(
        kinds,
        [
            (ZoneKind::Package, SourceKind::Hwmon, false),
            (ZoneKind::Dram, SourceKind::Hwmon, false)
        ]
    );
    // The ACPI meter is a platform zone next to it; the hwmon chip has no platform channel.
    let platform = platform_sources(&runtime_options(&c).meters);
    let names: Vec<&str> = platform.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["acpi-platform"]);
    assert_eq!(platform[0].source.zones()[0].kind, ZoneKind::Platform);
}

#[test]
fn explicit_order_and_switches() {
    let dir = tempfile::tempdir().unwrap();
    machine(dir.path());
    let (meter, _) = select_meter(&config(dir.path(), &["--cpu.preferred-meters=model,hwmon"]));
    assert_eq!(meter.unwrap().name, "model");
    // experimental.hwmon.enabled=false: the hwmon meter is skipped with a reason.
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), "experimental:\n  hwmon:\n    enabled: false\n").unwrap();
    let text = fs::read_to_string(file.path()).unwrap();
    let sys = format!("--host.sysfs={}", dir.path().join("sys").display());
    let proc = format!("--host.procfs={}", dir.path().join("proc").display());
    let flags = Flags::try_parse_from(["kepler", &sys, &proc]).unwrap();
    let c = Config::build(&flags, Some(("k.yaml", &text)), None, || "n".into()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let (meter, skipped) = select_meter(&c);
    assert_eq!(meter.unwrap().name, "model");
    let why = &skipped.iter().find(|(n, _)| n == "hwmon").unwrap().1;
    assert!(why.contains("experimental.hwmon.enabled"), "{why}");
}
