//! hwmon and ACPI power meter sources on fake sysfs trees (issue 7): the six chip shapes the
//! issue lists, the ACPI meter reached two ways, per-channel errors and the meter table.

#![cfg(all(feature = "hwmon", feature = "acpi"))]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use kepler_core::{Metering, PowerFrame, PowerSource, Reading, SourceKind, Timestamp, ZoneKind};
use kepler_sources::{
    AcpiPowerMeter, ErrorKind, Hwmon, HwmonOptions, HwmonRole, MeterContext, PLATFORM_METERS,
};

/// A sysfs root with `class/hwmon` and `devices/platform`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(t.root().join("class/hwmon")).unwrap();
        t
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A chip as modern drivers lay it out: the real directory under the device, a
    /// `class/hwmon/hwmonN` link to it, a `device` link back, attributes in `hwmonN`.
    fn chip(&self, n: u32, device: &str, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dev = self.root().join("devices/platform").join(device);
        let dir = dev.join(format!("hwmon/hwmon{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        symlink(&dev, dir.join("device")).unwrap();
        symlink(&dir, self.root().join(format!("class/hwmon/hwmon{n}"))).unwrap();
        self.write(&dir, files);
        dir
    }

    fn write(&self, dir: &Path, files: &[(&str, &str)]) {
        for (f, v) in files {
            fs::write(dir.join(f), format!("{v}\n")).unwrap();
        }
    }

    fn discover(&self, role: HwmonRole) -> Result<Hwmon, kepler_sources::Error> {
        Hwmon::discover(&HwmonOptions::new(self.root(), role))
    }
}

fn read(src: &mut dyn PowerSource, t: u64) -> PowerFrame {
    let mut f = PowerFrame::default();
    src.read(Timestamp(t * 1_000_000_000), &mut f);
    f
}

fn value(f: &PowerFrame, i: usize) -> Reading {
    f.samples[i].reading.clone().expect("reading")
}

#[test]
fn energy_counters_amd_energy_sockets_only() {
    let t = Tree::new();
    let dir = t.chip(
        0,
        "amd_energy.0",
        "amd_energy",
        &[
            ("energy1_input", "1000000"),
            ("energy1_label", "Ecore000"),
            ("energy17_input", "5000000"),
            ("energy17_label", "Esocket0"),
            ("energy18_input", "7000000"),
            ("energy18_label", "Esocket1"),
        ],
    );
    let mut h = t.discover(HwmonRole::Cpu).unwrap();
    let zones = h.zones().to_vec();
    assert_eq!(zones.len(), 2, "cores are not CPU zones: {zones:?}");
    for (z, socket) in zones.iter().zip([0, 1]) {
        assert_eq!(z.kind, ZoneKind::Package);
        assert_eq!(z.index, socket);
        assert_eq!(z.source, SourceKind::Hwmon);
        assert_eq!(z.metering, Metering::EnergyCounter { max_range: None });
        assert!(!z.estimated);
    }
    // The stable path is the device's, not hwmonN's.
    assert!(zones[0]
        .path
        .ends_with("devices/platform/amd_energy.0/energy17"));
    let f = read(&mut h, 1);
    assert_eq!(
        value(&f, 0),
        Reading::Energy(kepler_core::MicroJoules(5_000_000))
    );
    // Values are re-read from the open file every tick.
    t.write(&dir, &[("energy17_input", "5500000")]);
    let f = read(&mut h, 2);
    assert_eq!(
        value(&f, 0),
        Reading::Energy(kepler_core::MicroJoules(5_500_000))
    );
    assert_eq!(
        value(&f, 1),
        Reading::Energy(kepler_core::MicroJoules(7_000_000))
    );
    // No platform channel on this chip.
    assert_eq!(
        t.discover(HwmonRole::Platform).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn power_only_board_rail() {
    let t = Tree::new();
    t.chip(
        1,
        "i2c-1-0040",
        "ina226",
        &[("power1_input", "12500000"), ("power1_label", "VDD_CPU")],
    );
    t.chip(
        2,
        "i2c-1-0041",
        "ina226",
        &[
            ("power1_input", "3000000"),
            ("power1_label", "VDD_GPU_SOC_IO"),
        ],
    );
    let mut h = t.discover(HwmonRole::Cpu).unwrap();
    // "VDD_GPU_SOC_IO" matches no rule and is ignored.
    assert_eq!(h.zones().len(), 1);
    assert_eq!(h.zones()[0].metering, Metering::PowerGauge);
    assert_eq!(
        value(&read(&mut h, 1), 0),
        Reading::Power(kepler_core::MicroWatts(12_500_000))
    );
}

#[test]
fn averaged_psu_is_a_platform_zone_and_average_wins() {
    let t = Tree::new();
    t.chip(
        3,
        "i2c-7-0058",
        "pmbus",
        &[
            ("power1_input", "400000000"),
            ("power1_average", "350000000"),
            ("power1_average_interval", "1000"),
            ("power1_label", "PSU1 input"),
            ("power1_cap", "1200000000"),
        ],
    );
    assert_eq!(
        t.discover(HwmonRole::Cpu).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let mut h = t.discover(HwmonRole::Platform).unwrap();
    let z = &h.zones()[0];
    assert_eq!(z.kind, ZoneKind::Platform);
    assert_eq!(z.max_power, Some(kepler_core::MicroWatts(2_400_000_000)));
    assert_eq!(
        value(&read(&mut h, 1), 0),
        Reading::Power(kepler_core::MicroWatts(350_000_000))
    );
}

#[test]
fn disabled_channel_is_skipped() {
    let t = Tree::new();
    t.chip(
        0,
        "smpro-hwmon.0",
        "smpro",
        &[
            ("power1_input", "90000000"),
            ("power1_label", "CPU power"),
            ("power1_enable", "0"),
            ("power2_input", "80000000"),
            ("power2_label", "CPU1 power"),
            ("power2_enable", "1"),
            ("power3_input", "10000000"),
            ("power3_label", "IO power"),
        ],
    );
    let h = t.discover(HwmonRole::Cpu).unwrap();
    assert_eq!(h.zones().len(), 1);
    assert!(h.zones()[0].path.ends_with("/power2"));
    assert_eq!(h.zones()[0].index, 1);
}

#[test]
fn duplicate_labels_are_kept_apart_and_one_rail_counts_once() {
    let t = Tree::new();
    // The same label on two chips: two zones with their own ids and paths.
    t.chip(
        0,
        "i2c-2-0040",
        "ina230",
        &[("power1_input", "5000000"), ("power1_label", "CPU power")],
    );
    t.chip(
        1,
        "i2c-2-0041",
        "ina230",
        &[("power1_input", "6000000"), ("power1_label", "CPU power")],
    );
    // One rail seen as an energy counter and a power gauge with the same label: counted once.
    t.chip(
        2,
        "peci-cpupower.0",
        "peci_cpupower",
        &[
            ("energy1_input", "100"),
            ("energy1_label", "cpu energy"),
            ("power1_average", "70000000"),
            ("power1_label", "cpu energy"),
        ],
    );
    let mut h = t.discover(HwmonRole::Cpu).unwrap();
    let zones = h.zones().to_vec();
    assert_eq!(zones.len(), 3, "{zones:#?}");
    let mut ids: Vec<&str> = zones.iter().map(|z| z.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        (zones[0].index, zones[1].index),
        (0, 1),
        "same kind, no number in the label: numbered in order"
    );
    assert!(matches!(zones[2].metering, Metering::EnergyCounter { .. }));
    let f = read(&mut h, 1);
    assert_eq!(
        value(&f, 0),
        Reading::Power(kepler_core::MicroWatts(5_000_000))
    );
    assert_eq!(
        value(&f, 1),
        Reading::Power(kepler_core::MicroWatts(6_000_000))
    );
}

#[test]
fn device_path_fallback_for_old_drivers() {
    let t = Tree::new();
    // Attributes (and the name) under hwmonN/device, as older kernels and drivers did.
    let dev = t.root().join("devices/platform/it87.552");
    fs::create_dir_all(&dev).unwrap();
    t.write(
        &dev,
        &[
            ("name", "it8721"),
            ("power1_input", "45000000"),
            ("power1_label", "CPU package"),
        ],
    );
    let hw = t.root().join("devices/virtual/hwmon/hwmon4");
    fs::create_dir_all(&hw).unwrap();
    symlink(&dev, hw.join("device")).unwrap();
    symlink(&hw, t.root().join("class/hwmon/hwmon4")).unwrap();
    let mut h = t.discover(HwmonRole::Cpu).unwrap();
    assert_eq!(h.zones().len(), 1);
    assert!(h.zones()[0]
        .path
        .ends_with("devices/platform/it87.552/power1"));
    assert_eq!(
        value(&read(&mut h, 1), 0),
        Reading::Power(kepler_core::MicroWatts(45_000_000))
    );
}

#[test]
fn a_bad_value_fails_its_channel_only() {
    let t = Tree::new();
    let dir = t.chip(
        0,
        "smpro-hwmon.0",
        "smpro",
        &[
            ("power1_input", "1000"),
            ("power1_label", "CPU0 power"),
            ("power2_input", "2000"),
            ("power2_label", "CPU1 power"),
        ],
    );
    let mut h = t.discover(HwmonRole::Cpu).unwrap();
    t.write(&dir, &[("power1_input", "garbage")]);
    let f = read(&mut h, 1);
    let err = f.samples[0].reading.clone().unwrap_err();
    assert_eq!(err.kind_label(), "parse");
    assert!(err.to_string().contains("power1_input"), "{err}");
    assert_eq!(value(&f, 1), Reading::Power(kepler_core::MicroWatts(2000)));
}

#[test]
fn zones_filter_and_custom_rules() {
    let t = Tree::new();
    t.chip(
        0,
        "board",
        "myboard",
        &[
            ("power1_input", "1000"),
            ("power1_label", "rail_a"),
            ("power2_input", "2000"),
            ("power2_label", "rail_b"),
        ],
    );
    assert!(t.discover(HwmonRole::Cpu).is_err());
    let mut opts = HwmonOptions::new(t.root(), HwmonRole::Cpu);
    opts.rules.cpu.push("rail_".into());
    assert_eq!(Hwmon::discover(&opts).unwrap().zones().len(), 2);
    opts.zones = vec!["RAIL_B".into()];
    let h = Hwmon::discover(&opts).unwrap();
    assert_eq!(h.zones().len(), 1);
    assert!(h.zones()[0].path.ends_with("/power2"));
}

#[test]
fn no_hwmon_class_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let e = Hwmon::discover(&HwmonOptions::new(dir.path(), HwmonRole::Cpu)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = AcpiPowerMeter::discover(dir.path()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// The ACPI meter as Linux lays it out: the ACPI device, its hwmon chip `power_meter`, the
/// `class/hwmon` link and the driver's link to the device.
fn acpi_tree(t: &Tree) -> PathBuf {
    let dev = t.root().join("devices/LNXSYSTM:00/LNXSYBUS:00/ACPI000D:00");
    let hw = dev.join("hwmon/hwmon5");
    fs::create_dir_all(&hw).unwrap();
    t.write(
        &hw,
        &[
            ("name", "power_meter"),
            ("power1_average", "212000000"),
            ("power1_average_interval", "1000"),
            ("power1_cap", "750000000"),
        ],
    );
    symlink(&dev, hw.join("device")).unwrap();
    symlink(&hw, t.root().join("class/hwmon/hwmon5")).unwrap();
    let drv = t.root().join("bus/acpi/drivers/power_meter");
    fs::create_dir_all(&drv).unwrap();
    fs::write(drv.join("uevent"), "").unwrap();
    symlink(&dev, drv.join("ACPI000D:00")).unwrap();
    hw
}

#[test]
fn acpi_power_meter_is_one_platform_zone() {
    let t = Tree::new();
    let hw = acpi_tree(&t);
    let mut m = AcpiPowerMeter::discover(t.root()).unwrap();
    assert_eq!(m.zones().len(), 1, "reached twice, read once");
    let z = &m.zones()[0];
    assert_eq!(
        (z.kind, z.source, z.metering, z.estimated),
        (
            ZoneKind::Platform,
            SourceKind::Acpi,
            Metering::PowerGauge,
            false
        )
    );
    assert_eq!(z.max_power, Some(kepler_core::MicroWatts(1_500_000_000)));
    assert_eq!(
        value(&read(&mut m, 1), 0),
        Reading::Power(kepler_core::MicroWatts(212_000_000))
    );
    t.write(&hw, &[("power1_average", "230500000")]);
    assert_eq!(
        value(&read(&mut m, 2), 0),
        Reading::Power(kepler_core::MicroWatts(230_500_000))
    );
    // The hwmon source leaves the ACPI chip alone, so it is never counted twice.
    assert_eq!(
        t.discover(HwmonRole::Platform).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn acpi_attributes_on_the_device_itself() {
    // Older kernels put power1_average on the ACPI device, reached only through the driver.
    let t = Tree::new();
    let dev = t.root().join("devices/LNXSYSTM:00/ACPI000D:01");
    fs::create_dir_all(&dev).unwrap();
    t.write(&dev, &[("power1_average", "99000000")]);
    let drv = t.root().join("bus/acpi/drivers/power_meter");
    fs::create_dir_all(&drv).unwrap();
    symlink(&dev, drv.join("ACPI000D:01")).unwrap();
    let mut m = AcpiPowerMeter::discover(t.root()).unwrap();
    assert_eq!(
        value(&read(&mut m, 1), 0),
        Reading::Power(kepler_core::MicroWatts(99_000_000))
    );
}

#[test]
fn platform_table_builds_acpi_and_hwmon_platform_chips() {
    let t = Tree::new();
    acpi_tree(&t);
    t.chip(
        0,
        "i2c-7-0058",
        "pmbus",
        &[
            ("power1_input", "300000000"),
            ("power1_label", "PSU1 input"),
        ],
    );
    let ctx = MeterContext::new(t.root(), "/nonexistent");
    let built: Vec<(&str, Vec<SourceKind>)> = PLATFORM_METERS
        .iter()
        .filter_map(|m| {
            let s = (m.build)(&ctx).ok()?;
            Some((m.name, s.zones().iter().map(|z| z.source).collect()))
        })
        .collect();
    assert_eq!(
        built,
        vec![
            ("acpi", vec![SourceKind::Acpi]),
            ("hwmon", vec![SourceKind::Hwmon])
        ]
    );
    // experimental.hwmon.enabled=false switches the hwmon rows off.
    let mut off = MeterContext::new(t.root(), "/nonexistent");
    off.hwmon_enabled = false;
    let hwmon = PLATFORM_METERS.iter().find(|m| m.name == "hwmon").unwrap();
    assert!((hwmon.build)(&off).is_err());
}
