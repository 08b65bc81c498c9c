//! `loadgen` spawns the processes it is asked for, in the cgroups it is asked for, and leaves
//! nothing behind on SIGTERM or at the end of its run (issue 9).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// PIDs whose parent is `parent`, with their command lines.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let mut f = rest.split_whitespace();
        let state = f.next();
        if f.next() == Some(&parent.to_string()) && state != Some("Z") {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the comm.
    f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn spawns_sleeping_busy_and_churn_then_cleans_up_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut lg = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--sleeping",
            "6",
            "--busy",
            "2",
            "--duty",
            "0.3",
            "--churn",
            "40",
        ])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = lg.id();
    wait_for("ready file", Duration::from_secs(20), || ready.exists());
    assert_eq!(fs::read_to_string(&ready).unwrap().trim(), "8");
    let kids = children(pid);
    let count = |mode: &str| {
        kids.iter()
            .filter(|(_, c)| c.contains(&format!("--worker {mode}")))
            .count()
    };
    assert_eq!(count("sleep"), 6, "{kids:?}");
    assert_eq!(count("busy"), 2, "{kids:?}");
    // Churn children come and go: some are seen within a second.
    let mut churned = std::collections::HashSet::new();
    wait_for("churn children", Duration::from_secs(5), || {
        for (p, c) in children(pid) {
            if c.contains("--worker churn") {
                churned.insert(p);
            }
        }
        churned.len() >= 5
    });
    // The busy workers burn CPU; the sleeping ones do not.
    let busy: Vec<u32> = kids
        .iter()
        .filter(|(_, c)| c.contains("--worker busy"))
        .map(|(p, _)| *p)
        .collect();
    let before = cpu_ticks(busy[0]);
    thread::sleep(Duration::from_millis(1500));
    assert!(cpu_ticks(busy[0]) > before, "busy worker did not run");

    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = lg.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for (p, _) in &kids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "worker {p} survived SIGTERM"
        );
    }
}

#[test]
fn duration_ends_the_run_and_bad_flags_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--sleeping", "3", "--duration", "0.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 processes"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--duty", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duty"));
}

/// Skips with `why` printed, or fails when `REQUIRE_CGROUPS=1` says cgroups must be usable
/// (CI runs as root with a cgroup v2 mount; issue 14 made this skip honest).
fn skip_unless_required(why: &str) {
    if std::env::var_os("REQUIRE_CGROUPS").is_some_and(|v| v == "1") {
        panic!("REQUIRE_CGROUPS=1 but {why}");
    }
    eprintln!("skipping: {why} (REQUIRE_CGROUPS=1 makes this fail)");
}

/// cgroup placement needs writable hierarchies (root); skipped with a reason otherwise,
/// unless `REQUIRE_CGROUPS=1`.
#[test]
fn workers_land_in_docker_named_cgroups_which_are_removed_after() {
    let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists());
    let Some(root) = v2 else {
        return skip_unless_required("no cgroup v2 hierarchy is mounted");
    };
    let probe = root.join(format!("kepler-loadgen-probe-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&probe) {
        return skip_unless_required(&format!(
            "{} is not writable ({e}; needs root)",
            root.display()
        ));
    }
    fs::remove_dir(&probe).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut lg = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        // No --cgroup-root: every mounted hierarchy, v1 and v2.
        .args(["--sleeping", "4", "--cgroups", "2"])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = lg.id();
    wait_for("ready file", Duration::from_secs(20), || ready.exists());
    let parent = root.join(format!("kepler-loadgen-{pid}"));
    let mut leaves: Vec<String> = fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    leaves.sort();
    assert_eq!(leaves.len(), 2, "{leaves:?}");
    for leaf in &leaves {
        let id = leaf
            .strip_prefix("docker-")
            .and_then(|l| l.strip_suffix(".scope"))
            .unwrap();
        assert_eq!(id.len(), 64, "{leaf}");
        let procs = fs::read_to_string(parent.join(leaf).join("cgroup.procs")).unwrap();
        assert_eq!(procs.lines().count(), 2, "{leaf}: {procs}");
        for p in procs.lines() {
            let cg = fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
            // In that leaf in every hierarchy (cgroup v1 cpuset included).
            for line in cg.lines() {
                assert!(line.ends_with(leaf.as_str()), "{p}: {line}");
            }
        }
    }
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(lg.wait().unwrap().success());
    assert!(!parent.exists(), "{} left behind", parent.display());
}

/// `/proc/<pid>/schedstat` run count: how many times the process has been put on a CPU.
fn run_count(pid: u32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sleeping workers really sleep (they are never put on a CPU again), unless asked to wake
/// on a timer; and they die with a SIGKILLed loadgen, which has no chance to clean up.
#[test]
fn sleeping_workers_never_wake_and_die_with_a_killed_loadgen() {
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, extra: &[&str]| {
        let ready = dir.path().join(name);
        let lg = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--sleeping", "3"])
            .args(extra)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("ready file", Duration::from_secs(20), || ready.exists());
        lg
    };
    let mut quiet = start("quiet", &[]);
    let mut waking = start("waking", &["--wake-every", "100"]);
    let workers = |lg: &std::process::Child| -> Vec<u32> {
        children(lg.id()).into_iter().map(|(p, _)| p).collect()
    };
    let (q, w) = (workers(&quiet), workers(&waking));
    assert_eq!((q.len(), w.len()), (3, 3));
    thread::sleep(Duration::from_millis(200));
    let before: Vec<u64> = q.iter().chain(&w).map(|&p| run_count(p)).collect();
    thread::sleep(Duration::from_millis(1000));
    let after: Vec<u64> = q.iter().chain(&w).map(|&p| run_count(p)).collect();
    assert_eq!(after[..3], before[..3], "sleeping workers ran");
    assert!(
        after[3..]
            .iter()
            .zip(&before[3..])
            .all(|(a, b)| a >= &(b + 5)),
        "workers woken every 100 ms ran about 10 times: {before:?} -> {after:?}"
    );

    for lg in [&mut quiet, &mut waking] {
        lg.kill().unwrap();
        lg.wait().unwrap();
    }
    wait_for(
        "workers to die with loadgen",
        Duration::from_secs(5),
        || {
            q.iter()
                .chain(&w)
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        },
    );
}
