//! `kepler run -- CMD` end to end: the real binary on a fake RAPL tree (the real cgroupfs
//! linked into it, so the command gets a real cgroup), real commands on the real /proc.
//!
//! The burner is this test binary started again with `KEPLER_RUN_BURN` set (see
//! [`burn_worker`]): it burns a known amount of CPU time (measured by its own `getrusage`),
//! starts children and grandchildren as asked, and writes each process's CPU time to a file,
//! the ground truth that `kepler run`'s report is checked against.
//!
//! Accounting by cgroup needs root and a writable cgroup mount: without it those checks skip,
//! or fail under `REQUIRE_CGROUPS=1`. The pseudo-terminal tests use util-linux `script` (skip
//! without it, fail under `REQUIRE_E2E=1`); the unprivileged test uses `setpriv` (skip, or
//! fail under `REQUIRE_SETPRIV=1`).

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::FakeRapl;

const BURN: &str = "KEPLER_RUN_BURN";
const PACKAGE_WATTS: f64 = 40.0;
const DRAM_WATTS: f64 = 6.0;

/// A burner process (not a test of its own when `KEPLER_RUN_BURN` is set). The value is
/// `ROLE:MS:N:DIR`: burn MS ms of CPU; `main` also starts N `child`ren and waits for them; a
/// `child` starts a `leaf` (80 ms, waited for) and an `orphan` (300 ms, not waited for: it
/// outlives its parent and is re-parented). Every process writes its own CPU time (ns) to
/// `DIR/<pid>.cpu` as it exits; the orphan also writes `DIR/orphan.done`.
///
/// Without the variable, it checks the burner itself: burning 50 ms of CPU time shows as at
/// least that much in `getrusage`.
#[test]
fn burn_worker() {
    let Ok(spec) = std::env::var(BURN) else {
        let before = self_cpu_ns();
        burn(Duration::from_millis(50), before);
        assert!(self_cpu_ns() - before >= 50_000_000);
        return;
    };
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let [role, ms, n, dir] = parts[..] else {
        panic!("bad {BURN}: {spec}");
    };
    let ms: u64 = ms.parse().unwrap();
    let n: usize = n.parse().unwrap();
    let dir = Path::new(dir);
    let spawn = |role: &str, ms: u64| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "burn_worker",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(BURN, format!("{role}:{ms}:0:{}", dir.display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    match role {
        "main" => {
            let children: Vec<_> = (0..n).map(|_| spawn("child", 100)).collect();
            burn(Duration::from_millis(ms), 0);
            for mut c in children {
                assert!(c.wait().unwrap().success());
            }
        }
        "child" => {
            let mut leaf = spawn("leaf", 80);
            // Deliberately not waited for: it outlives this process and is re-parented.
            #[allow(clippy::zombie_processes)]
            let _orphan = spawn("orphan", 300);
            burn(Duration::from_millis(ms), 0);
            leaf.wait().unwrap();
        }
        _ => burn(Duration::from_millis(ms), 0),
    }
    let pid = std::process::id();
    fs::write(dir.join(format!("{pid}.cpu")), self_cpu_ns().to_string()).unwrap();
    if role == "orphan" {
        fs::write(dir.join("orphan.done"), "").unwrap();
    }
}

/// Spins until this process's CPU time reaches `from + d` (CPU time, not wall time: the
/// amount is known however loaded the machine is).
fn burn(d: Duration, from: u64) {
    let target = from + d.as_nanos() as u64;
    let mut x = 0u64;
    while self_cpu_ns() < target {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
}

fn self_cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1000;
    ns(u.user_time()) + ns(u.system_time())
}

/// Sum of the CPU times the burner processes wrote.
fn ground_truth_ns(dir: &Path) -> (u64, usize) {
    let mut sum = 0;
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "cpu") {
            sum += fs::read_to_string(e.path())
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap();
            n += 1;
        }
    }
    (sum, n)
}

fn burner(role_ms_n: &str, dir: &Path) -> Vec<String> {
    vec![
        "env".into(),
        format!("{BURN}={role_ms_n}:{}", dir.display()),
        std::env::current_exe().unwrap().display().to_string(),
        "--exact".into(),
        "burn_worker".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
        "-q".into(),
    ]
}

/// A fake RAPL tree at known watts with the real cgroupfs linked in at `fs/cgroup`, where
/// the exporter's activity source reads cgroup counters.
fn rapl() -> FakeRapl {
    let r = rapl_without_cgroupfs();
    fs::create_dir_all(r.sysfs().join("fs")).unwrap();
    std::os::unix::fs::symlink("/sys/fs/cgroup", r.sysfs().join("fs/cgroup")).unwrap();
    r
}

/// The same tree without a cgroupfs: `kepler run` follows the process tree.
fn rapl_without_cgroupfs() -> FakeRapl {
    FakeRapl::start(
        &[("package-0", PACKAGE_WATTS), ("dram", DRAM_WATTS)],
        1 << 40,
    )
}

struct Run {
    out: Output,
    json: Value,
}

/// `kepler run --host.sysfs=SYSFS --cpu.preferred-meters=rapl --json=FILE EXTRA -- CMD`.
fn kepler_run(sysfs: &Path, extra: &[&str], cmd: &[String]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("run")
        .arg(format!("--host.sysfs={}", sysfs.display()))
        .arg("--cpu.preferred-meters=rapl")
        .arg(format!("--json={}", json_path.display()))
        .args(extra)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run kepler");
    let text = fs::read_to_string(&json_path).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let json = serde_json::from_str(&text).expect("the report is JSON");
    Run { out, json }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The run's accounting is by cgroup; false (skip) or a panic under `REQUIRE_CGROUPS=1`
/// when the machine gave a process tree.
fn has_cgroup(run: &Run) -> bool {
    let accounting = run.json["accounting"].as_str().unwrap();
    if accounting.starts_with("cgroup") {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_CGROUPS").as_deref() != Ok("1"),
        "REQUIRE_CGROUPS=1 but kepler run used {accounting}: {}",
        run.json["accounting_note"]
    );
    eprintln!(
        "SKIPPED (cgroup checks): no writable cgroup: {}",
        run.json["accounting_note"]
    );
    false
}

fn zone<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == name)
        .unwrap_or_else(|| panic!("no {name} zone in {json}"))
}

/// Node busy CPU time so far, ns (`/proc/stat`'s first line minus idle and iowait).
fn node_busy_ns() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    (total - v[3] - v[4]) * 10_000_000
}

#[test]
fn cpu_time_and_energy_share_of_a_known_burner() {
    let rapl = rapl();
    let work = tempfile::tempdir().unwrap();
    let busy_before = node_busy_ns();
    let run = kepler_run(
        rapl.sysfs(),
        &["--interval=500ms"],
        &burner("main:2000:0", work.path()),
    );
    let busy = node_busy_ns() - busy_before;
    assert!(
        run.out.status.success(),
        "{}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    let (truth, procs) = ground_truth_ns(work.path());
    assert_eq!(procs, 1);
    let cpu = f(&run.json, "cpu_seconds") * 1e9;
    assert!(
        (cpu - truth as f64).abs() <= 0.02 * truth as f64,
        "kepler run says {cpu} ns of CPU, the burner {truth} ns"
    );
    // Measured, by RAPL; node energy is the fake tree's rate over the run.
    let j = &run.json;
    assert_eq!(j["estimated"], false);
    assert_eq!(j["meter"], "rapl");
    assert!(f(j, "readings") >= 3.0, "{j}");
    let duration = f(j, "duration_seconds");
    let package = zone(j, "package");
    let node_watts = f(package, "node_joules") / duration;
    assert!(
        (node_watts - PACKAGE_WATTS).abs() < 0.2 * PACKAGE_WATTS,
        "node package {node_watts} W over {duration} s"
    );
    // The exporter's rules: node = active + idle; under idle policy none the command gets a
    // share of active energy only, never more than all of it.
    for z in j["zones"].as_array().unwrap() {
        let (joules, node, active, idle) = (
            f(z, "joules"),
            f(z, "node_joules"),
            f(z, "node_active_joules"),
            f(z, "node_idle_joules"),
        );
        assert!((active + idle - node).abs() < 1e-3, "{z}");
        assert!(joules > 0.0 && joules <= active + 1e-6, "{z}");
        assert!((f(z, "share") - joules / active).abs() < 1e-9, "{z}");
        assert!((f(z, "watts") - joules / duration).abs() < 1e-9, "{z}");
    }
    // Active energy is split by CPU time: the command's share is about its part of the
    // node's busy time over the run (the test's window is a little wider than the run's).
    let expected = truth as f64 / busy as f64;
    let share = f(package, "share");
    assert!(
        share > 0.6 * expected && share < 1.5 * expected,
        "share {share}, CPU-time share {expected} ({truth} of {busy} ns)"
    );
    assert!((f(zone(j, "dram"), "share") - share).abs() < 0.02, "{j}");
    let total = f(package, "joules") + f(zone(j, "dram"), "joules");
    assert!((f(j, "total_joules") - total).abs() < 1e-9);
}

/// What a burner-tree test expects of the report's `accounting`.
enum Accounting {
    /// Whatever the machine gives: a cgroup where one is writable, else the process tree.
    Any,
    /// `cgroup-v1`; skips (or fails under `REQUIRE_CGROUPS=1`) when kepler used another.
    CgroupV1,
    /// `process-tree`, always.
    ProcessTree,
}

/// Runs the burner tree `main:300:3` (main, 3 children, each with a short-lived leaf and an
/// orphan) under `kepler run` on `rapl` and checks what every accounting must get right:
/// the command succeeded, kepler waited for the orphans, and its CPU time is the ten
/// processes' own within 2 % + 10 ms. `None` when the test skipped (see [`Accounting`]).
fn run_burner_tree(rapl: &FakeRapl, accounting: Accounting) -> Option<Run> {
    let work = tempfile::tempdir().unwrap();
    let run = kepler_run(
        rapl.sysfs(),
        &["--interval=1s"],
        &burner("main:300:3", work.path()),
    );
    assert!(
        run.out.status.success(),
        "{}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    match accounting {
        Accounting::Any => {}
        Accounting::ProcessTree => assert_eq!(run.json["accounting"], "process-tree"),
        Accounting::CgroupV1 => {
            if run.json["accounting"] != "cgroup-v1" {
                assert!(
                    std::env::var("REQUIRE_CGROUPS").as_deref() != Ok("1"),
                    "REQUIRE_CGROUPS=1 but kepler run used {}: {}",
                    run.json["accounting"],
                    run.json["accounting_note"]
                );
                eprintln!(
                    "SKIPPED: cpuacct not writable: {}",
                    run.json["accounting_note"]
                );
                return None;
            }
        }
    }
    // kepler returned after the orphans (re-parented when their parents exited) finished.
    assert!(
        work.path().join("orphan.done").exists(),
        "kepler did not wait for the orphans"
    );
    let (truth, procs) = ground_truth_ns(work.path());
    assert_eq!(procs, 1 + 3 * 3, "main, 3 children, 3 leaves, 3 orphans");
    let cpu = f(&run.json, "cpu_seconds") * 1e9;
    assert!(
        (cpu - truth as f64).abs() <= 0.02 * truth as f64 + 10e6,
        "kepler run says {cpu} ns of CPU, the processes {truth} ns"
    );
    Some(run)
}

#[test]
fn children_and_short_lived_grandchildren_are_counted_and_waited_for() {
    let rapl = rapl();
    let run =
        run_burner_tree(&rapl, Accounting::Any).expect("no skip without an expected accounting");
    if has_cgroup(&run) {
        // The leaves live 80 ms of CPU, between two readings 1 s apart: only the cgroup
        // counter sees them, and the engine charges that time to the cgroup. The command's
        // energy follows its whole CPU time, not just what the scans saw.
        let package = zone(&run.json, "package");
        assert!(f(package, "joules") > 0.0);
    }
}

/// cgroup v1: a sysfs tree whose cgroupfs has only the real v1 `cpuacct` hierarchy (no v2
/// mount), so `kepler run` and the activity source both use `cpuacct`. Skips where the
/// machine has no v1 `cpuacct` hierarchy (pure cgroup v2).
#[test]
fn cgroup_v1_cpuacct_counts_children_grandchildren_and_orphans() {
    let cpuacct = ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cpuacct.usage").exists());
    let Some(cpuacct) = cpuacct else {
        eprintln!("SKIPPED: no cgroup v1 cpuacct hierarchy on this machine");
        return;
    };
    let rapl = rapl_without_cgroupfs();
    let cgroupfs = rapl.sysfs().join("fs/cgroup");
    fs::create_dir_all(&cgroupfs).unwrap();
    std::os::unix::fs::symlink(cpuacct, cgroupfs.join(cpuacct.file_name().unwrap())).unwrap();
    let Some(run) = run_burner_tree(&rapl, Accounting::CgroupV1) else {
        return;
    };
    assert!(f(zone(&run.json, "package"), "joules") > 0.0);
}

/// Without a cgroup: the process tree, with the reaped-children rule (a leaf's CPU time
/// reaches its parent when reaped) and orphans re-parented to kepler (a child subreaper).
#[test]
fn process_tree_counts_children_grandchildren_and_orphans() {
    let rapl = rapl_without_cgroupfs();
    let run = run_burner_tree(&rapl, Accounting::ProcessTree).expect("process tree never skips");
    let package = zone(&run.json, "package");
    assert!(f(package, "joules") > 0.0 && f(package, "share") <= 1.0);
}

#[test]
fn exit_codes_and_signals_are_the_commands() {
    let rapl = rapl();
    let run = kepler_run(rapl.sysfs(), &[], &sh("exit 7"));
    assert_eq!(run.out.status.code(), Some(7));
    assert_eq!(run.json["exit"]["code"], 7);
    assert_eq!(run.json["exit"]["status"], 7);

    let run = kepler_run(rapl.sysfs(), &[], &sh("kill -TERM $$"));
    assert_eq!(run.out.status.code(), Some(128 + 15));
    assert_eq!(run.json["exit"]["signal"], 15);
    assert_eq!(run.json["exit"]["code"], Value::Null);

    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .args(["run", "--", "/nonexistent/command"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run /nonexistent/command"), "{err}");
}

#[test]
fn a_signal_sent_to_kepler_reaches_the_command() {
    let rapl = rapl();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut kepler = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("run")
        .arg(format!("--host.sysfs={}", rapl.sysfs().display()))
        .arg(format!("--json={}", json.display()))
        .args(["--", "sh", "-c"])
        .arg("trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = read_until_ready(&mut kepler);
    let (out, rest) = terminate(kepler, &mut stdout);
    assert_eq!(
        rest,
        "got-term\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(42));
    let report: Value = serde_json::from_str(&fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(report["exit"]["code"], 42);
}

/// Reads `kepler run`'s stdout up to the command's `ready` line; the rest is left to read.
fn read_until_ready(
    kepler: &mut std::process::Child,
) -> std::io::BufReader<std::process::ChildStdout> {
    let mut stdout = std::io::BufReader::new(kepler.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    stdout
}

/// Sends SIGTERM to kepler (as `kill` would), waits for it, and returns its output and what
/// the command wrote to stdout after `ready`.
fn terminate(
    kepler: std::process::Child,
    stdout: &mut std::io::BufReader<std::process::ChildStdout>,
) -> (std::process::Output, String) {
    let killed = Command::new("kill")
        .args(["-TERM", &kepler.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = kepler.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(stdout, &mut rest).unwrap();
    (out, rest)
}

/// After CMD exits, kepler waits for what it left running; a signal then reaches those.
#[test]
fn a_signal_after_the_command_exited_reaches_its_orphans() {
    let rapl = rapl();
    let mut kepler = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("run")
        .arg(format!("--host.sysfs={}", rapl.sysfs().display()))
        .args(["--", "sh", "-c"])
        .arg("(trap 'echo orphan-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done) & exit 4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = read_until_ready(&mut kepler);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        kepler.try_wait().unwrap().is_none(),
        "kepler must wait for the orphan"
    );
    let (out, rest) = terminate(kepler, &mut stdout);
    assert_eq!(
        rest,
        "orphan-term\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "the command's code, not the orphan's"
    );
}

#[test]
fn stdout_is_untouched_and_the_report_is_on_stderr() {
    let rapl = rapl();
    let script = r#"printf 'line one\n\000binary\377\n'; printf 'to stderr\n' >&2"#;
    let direct = Command::new("sh").args(["-c", script]).output().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("run")
        .arg(format!("--host.sysfs={}", rapl.sysfs().display()))
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout, direct.stdout,
        "stdout must be the command's, byte for byte"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("to stderr\nkepler run: measured by rapl"),
        "{err}"
    );
    assert!(
        err.contains("package") && err.contains(" J ") && err.contains(" W "),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no progress line when stderr is not a terminal: {err:?}"
    );
}

#[test]
fn json_report_follows_the_schema() {
    let rapl = rapl();
    let run = kepler_run(
        rapl.sysfs(),
        &["--carbon-intensity=400", "--idle=cpu-share"],
        &sh("true"),
    );
    let j = &run.json;
    assert!(run.out.stdout.is_empty());
    let obj = j.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = vec![
        "schema",
        "command",
        "exit",
        "duration_seconds",
        "cpu_seconds",
        "accounting",
        "accounting_note",
        "meter",
        "estimated",
        "estimated_reason",
        "idle_policy",
        "interval_seconds",
        "readings",
        "zones",
        "total_joules",
        "total_watts",
        "gpu",
        "carbon",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(j["schema"], "kepler-run/v1");
    assert_eq!(j["command"], serde_json::json!(["sh", "-c", "true"]));
    assert_eq!(
        j["exit"],
        serde_json::json!({"code": 0, "signal": null, "status": 0})
    );
    assert!(["cgroup-v2", "cgroup-v1", "process-tree"].contains(&j["accounting"].as_str().unwrap()));
    assert_eq!(j["idle_policy"], "cpu-share");
    assert_eq!(
        j["interval_seconds"], 1.0,
        "default: the configured 5s, at most 1s"
    );
    // A command shorter than one interval is read at its start and at its exit.
    assert_eq!(j["readings"], 2);
    assert!(f(j, "duration_seconds") < 1.0);
    for z in j["zones"].as_array().unwrap() {
        for k in [
            "joules",
            "watts",
            "node_joules",
            "node_active_joules",
            "node_idle_joules",
            "share",
        ] {
            assert!(z[k].as_f64().is_some_and(|v| v >= 0.0), "{k} in {z}");
        }
        // Under cpu-share the command's energy includes idle: its share is of node total.
        if f(z, "node_joules") > 0.0 {
            assert!((f(z, "share") - f(z, "joules") / f(z, "node_joules")).abs() < 1e-9);
        }
    }
    let names: Vec<&str> = j["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zone"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["package", "dram"]);
    assert_eq!(j["gpu"], serde_json::json!([]));
    let grams = f(&j["carbon"], "grams");
    assert!((grams - f(j, "total_joules") / 3.6e6 * 400.0).abs() < 1e-12);
}

#[test]
fn without_rapl_the_model_estimates_and_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kepler"))
        .arg("run")
        .arg(format!("--host.sysfs={}", empty.path().display()))
        .arg(format!("--json={}", dir.path().join("r.json").display()))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(j["estimated"], true);
    assert_eq!(j["meter"], "model");
    assert!(
        j["estimated_reason"].as_str().unwrap().contains("no RAPL"),
        "{j}"
    );
    // No cgroupfs under that sysfs: the process tree, and why.
    assert_eq!(j["accounting"], "process-tree");
    assert!(
        j["accounting_note"].as_str().unwrap().contains("no cgroup"),
        "{j}"
    );
}

/// As `nobody` (RAPL's `energy_uj` is root-only since CVE-2020-8694, as on this fake tree):
/// the model, labelled with the reason, by process tree (no writable cgroup), and still the
/// command's exit code.
#[test]
fn unprivileged_falls_back_to_the_model_and_says_why() {
    let required = std::env::var("REQUIRE_SETPRIV").as_deref() == Ok("1");
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    let root = support::is_root();
    if !(setpriv && root) {
        assert!(
            !required,
            "REQUIRE_SETPRIV=1 but setpriv or root is missing"
        );
        eprintln!("SKIPPED: needs root and setpriv (util-linux)");
        return;
    }
    let rapl = rapl();
    let tree = rapl.sysfs();
    // Everyone may walk the tree and read the zone names; only root reads energy_uj.
    for dir in walk(tree) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    for zone in ["intel-rapl:0", "intel-rapl:0/intel-rapl:0:0"] {
        let energy = tree.join("class/powercap").join(zone).join("energy_uj");
        fs::set_permissions(&energy, fs::Permissions::from_mode(0o400)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_kepler"))
        .arg("run")
        .arg(format!("--host.sysfs={}", tree.display()))
        .args(["--", "sh", "-c", "exit 3"])
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    // Log lines (the RAPL source's warning) may come first; then the report.
    let first = err
        .lines()
        .find(|l| l.starts_with("kepler run: "))
        .unwrap_or_default();
    assert!(first.contains("ESTIMATED by the model meter"), "{err}");
    assert!(first.contains("CVE-2020-8694"), "{err}");
    assert!(first.contains("process-tree"), "{err}");
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Runs `kepler run ARGS` under a pseudo-terminal with util-linux `script`, typing `input`'s
/// bytes once the terminal shows its marker text; the terminal's output. `None` (skip) without
/// `script`.
fn under_pty(args: &str, input: Option<(&[u8], &str)>) -> Option<(String, Option<i32>)> {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("REQUIRE_E2E").as_deref() != Ok("1"),
            "REQUIRE_E2E=1 but util-linux script is missing"
        );
        eprintln!("SKIPPED: util-linux script is missing");
        return None;
    }
    // `exec`: script runs this through $SHELL, and dash (Debian's sh, what script picks when
    // SHELL is unset) neither execs a lone command nor survives the terminal's SIGINT; the
    // exit code would be the shell's 130, not kepler's.
    let cmdline = format!("exec {} run {args}", env!("CARGO_BIN_EXE_kepler"));
    let mut child = Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        // The same shell here as on CI.
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    if let Some((bytes, marker)) = input {
        // After the marker, not after a fixed delay: a loaded machine may take seconds to
        // start the command, and a signal before its trap is set would kill it instead.
        while !String::from_utf8_lossy(&screen.lock().unwrap()).contains(marker) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {marker:?} on the terminal: {:?}",
                String::from_utf8_lossy(&screen.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    let screen = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    Some((screen, status.code()))
}

#[test]
fn progress_line_on_a_terminal_erases_itself() {
    let rapl = rapl();
    let args = format!(
        "--host.sysfs={} --interval=200ms -- sh -c 'sleep 1.5; echo done'",
        rapl.sysfs().display()
    );
    let Some((screen, code)) = under_pty(&args, None) else {
        return;
    };
    assert_eq!(code, Some(0), "{screen:?}");
    // Rewritten in place each tick: carriage return, erase line, the line.
    let updates: Vec<&str> = screen.split("\r\x1b[2K").skip(1).collect();
    assert!(updates.len() >= 4, "{screen:?}");
    let progress = updates
        .iter()
        .filter(|u| {
            u.starts_with("kepler run: ")
                && u.contains(" s  ")
                && u.contains(" W  ")
                && u.ends_with(" J")
        })
        .count();
    assert!(progress >= 3, "{screen:?}");
    // Erased before the report: the report starts on a clean line.
    let last = updates.last().unwrap();
    assert!(last.starts_with("kepler run: measured by rapl"), "{last:?}");
    assert!(screen.contains("done\r\n"), "{screen:?}");
}

#[test]
fn ctrl_c_on_the_terminal_reaches_the_command_once() {
    let rapl = rapl();
    let args = format!(
        "--host.sysfs={} -- sh -c 'trap \"echo got-int; exit 5\" INT; echo armed; while :; do sleep 0.05; done'",
        rapl.sysfs().display()
    );
    let Some((screen, code)) = under_pty(&args, Some((b"\x03", "armed"))) else {
        return;
    };
    // The terminal sent SIGINT to the whole foreground group; kepler did not send another.
    assert_eq!(screen.matches("got-int\r\n").count(), 1, "{screen:?}");
    assert_eq!(code, Some(5), "{screen:?}");
    assert!(screen.contains("exited with 5"), "{screen:?}");
}
