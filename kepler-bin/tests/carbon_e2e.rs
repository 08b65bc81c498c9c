//! Issue 20, section 3, through the real binary: kepler on a fake RAPL package whose energy
//! the test moves in steps, with `--carbon.intensity` pointing at a file the test rewrites
//! mid-run. After each step the node's `kepler_node_co2e_grams_total` must equal the energy
//! of each step times the intensity in force while it was spent; a file with an old
//! timestamp makes the value stale (still used, and `kepler_carbon_intensity_stale` says
//! so), and a missing file keeps the last value and counts a read error.

mod support;

#[path = "../../kepler-export/tests/promtool/mod.rs"]
mod promtool;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{parse_exposition, scrape, value, FakeRapl, Kepler};

const PACKAGE: [(&str, &str); 1] = [("zone", "package")];

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// `kepler_node_cpu_joules_total{zone="package"}`, in µJ.
    uj: u64,
    grams: f64,
    intensity: Option<f64>,
    stale: f64,
    age: Option<f64>,
    errors: f64,
}

fn seen(port: u16) -> Option<(Seen, String)> {
    let body = scrape(port, "/metrics").ok()?;
    let s = parse_exposition(&body);
    let joules = value(&s, "kepler_node_cpu_joules_total", &PACKAGE)?;
    let seen = Seen {
        uj: (joules * 1e6).round() as u64,
        grams: value(&s, "kepler_node_co2e_grams_total", &PACKAGE)?,
        intensity: value(&s, "kepler_carbon_intensity_grams_per_kwh", &[]),
        stale: value(&s, "kepler_carbon_intensity_stale", &[])?,
        age: value(&s, "kepler_carbon_intensity_age_seconds", &[]),
        errors: value(&s, "kepler_carbon_intensity_read_errors_total", &[])?,
    };
    Some((seen, body))
}

/// Scrapes until `pred` holds (up to 15 s).
fn wait(k: &Kepler, what: &str, pred: impl Fn(&Seen) -> bool) -> (Seen, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((s, body)) = seen(k.port()) {
            if pred(&s) {
                return (s, body);
            }
            last = Some(s);
        }
        sleep(Duration::from_millis(50));
    }
    panic!("{what}: last seen {last:?}\n{}", k.log());
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn grams(uj: u64, g_per_kwh: f64) -> f64 {
    uj as f64 * g_per_kwh / 3.6e12
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= want.abs() * 1e-12 + 1e-15,
        "{what}: {got} g, want {want} g"
    );
}

#[test]
fn intensity_changed_mid_run_is_integrated_per_tick_issue_20() {
    let energy = Arc::new(AtomicU64::new(1_000_000_000));
    let e = energy.clone();
    let rapl = FakeRapl::driven(262_143_328_850, Duration::from_millis(5), move || {
        e.load(Ordering::SeqCst)
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carbon-intensity.json");
    write_atomically(&file, r#"{"intensity": 400}"#);
    let k = Kepler::start(&[
        &format!("--host.sysfs={}", rapl.sysfs().display()),
        "--cpu.preferred-meters=rapl",
        "--monitor.interval=200ms",
        &format!("--carbon.intensity={}", file.display()),
        "--carbon.refresh-interval=1s",
        "--carbon.stale-after=1h",
    ]);

    let (s0, _) = wait(&k, "the first intensity", |s| s.intensity == Some(400.0));
    assert_close(s0.grams, grams(s0.uj, 400.0), "before any step");
    assert_eq!((s0.stale, s0.errors), (0.0, 0.0));
    assert!(s0.age.is_some_and(|a| (0.0..60.0).contains(&a)), "{s0:?}");

    // 50 J at 400 g/kWh.
    energy.fetch_add(50_000_000, Ordering::SeqCst);
    let (s1, _) = wait(&k, "the first step", |s| s.uj == s0.uj + 50_000_000);
    let want1 = s0.grams + grams(50_000_000, 400.0);
    assert_close(s1.grams, want1, "50 J at 400");

    // The intensity changes mid-run, with no energy spent meanwhile: nothing is added.
    write_atomically(&file, "150\n");
    let (s2, _) = wait(&k, "the new intensity", |s| s.intensity == Some(150.0));
    assert_eq!(s2.uj, s1.uj);
    assert_close(s2.grams, want1, "no energy, no carbon");

    // 30 J at 150 g/kWh: not at 400, and not the whole 80 J at either.
    energy.fetch_add(30_000_000, Ordering::SeqCst);
    let (s3, _) = wait(&k, "the second step", |s| s.uj == s0.uj + 80_000_000);
    let want3 = want1 + grams(30_000_000, 150.0);
    assert_close(s3.grams, want3, "50 J at 400 + 30 J at 150");
    assert!((s3.grams - (s0.grams + grams(80_000_000, 150.0))).abs() > 1e-4);

    // A value from 2020: stale, yet still the one in use.
    write_atomically(
        &file,
        r#"{"intensity": 150, "timestamp": "2020-01-01T00:00:00Z"}"#,
    );
    let (s4, _) = wait(&k, "stale", |s| s.stale == 1.0);
    assert_eq!(s4.intensity, Some(150.0));
    assert!(s4.age.unwrap() > 86_400.0 * 300.0, "{s4:?}");
    energy.fetch_add(10_000_000, Ordering::SeqCst);
    let (s5, _) = wait(&k, "a step while stale", |s| s.uj == s0.uj + 90_000_000);
    let want5 = want3 + grams(10_000_000, 150.0);
    assert_close(s5.grams, want5, "10 J at the stale 150");

    // The file goes: read errors, the last value stays.
    std::fs::remove_file(&file).unwrap();
    let (s6, body) = wait(&k, "a read error", |s| s.errors >= 1.0);
    assert_eq!((s6.intensity, s6.stale), (Some(150.0), 1.0));
    assert_close(s6.grams, want5, "unchanged");
    promtool::check_metrics(
        "intensity_changed_mid_run_is_integrated_per_tick_issue_20",
        &body,
    );
    assert!(
        k.log().contains("carbon intensity read failed"),
        "{}",
        k.log()
    );
}

/// `carbon.intensity: 400` as the issue writes it, in a config file: a constant, never
/// stale, no age; and no carbon families at all without the key.
#[test]
fn constant_from_the_config_file_and_off_by_default_issue_20() {
    let rapl = FakeRapl::start(&[("package-0", 20.0)], 262_143_328_850);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kepler.yaml");
    std::fs::write(&config, "carbon:\n  intensity: 400\n").unwrap();
    let sysfs = format!("--host.sysfs={}", rapl.sysfs().display());
    let k = Kepler::start(&[
        &sysfs,
        "--cpu.preferred-meters=rapl",
        "--monitor.interval=200ms",
        &format!("--config.file={}", config.display()),
    ]);
    let (s, _) = wait(&k, "carbon counted", |s| s.uj > 0 && s.grams > 0.0);
    assert_eq!((s.intensity, s.stale, s.age), (Some(400.0), 0.0, None));
    // Every tick at 400: grams are exactly the joules' worth (to rounding).
    assert_close(s.grams, grams(s.uj, 400.0), "a constant 400");

    let off = Kepler::start(&[
        &sysfs,
        "--cpu.preferred-meters=rapl",
        "--monitor.interval=200ms",
    ]);
    let body = support::wait_for_metric(off.port(), "kepler_node_cpu_joules_total");
    assert!(
        !body.contains("co2e") && !body.contains("kepler_carbon"),
        "carbon is off unless configured"
    );
}
