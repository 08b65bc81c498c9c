//! Accuracy harness (issue 4): the real `kepler` binary against ground truth taken from the
//! kernel, under churn.
//!
//! Four workloads run in four cgroup v2 leaves named like containers: three real processes
//! holding a 10%, 30% and 60% duty cycle of one core, and a "storm" parent that starts
//! hundreds of children per second, each running a few milliseconds. A fake RAPL package
//! follows a known power model of the machine's real CPU time (`IDLE_WATTS` plus
//! `JOULES_PER_CPU_SECOND` per busy CPU-second of `/proc/stat`). At every kepler tick the
//! harness reads the kernel's CPU time of each workload's cgroup and of the node: a
//! workload's ground-truth energy is the sum over ticks of the tick's node active energy
//! times its cgroup's share of the tick's node CPU time (busy time of `/proc/stat`, or all
//! tasks' scheduler time from the cgroup v1 `cpuacct` root when that is more); its truth
//! share is that over the window's node active energy. kepler's share is its container's energy over node active
//! energy. Beside it, the harness computes Go Kepler's method from
//! its own trace: CPU time of the processes alive at each scan only.
//!
//! Needs root and a writable cgroup v2 hierarchy (`/sys/fs/cgroup` or the hybrid
//! `/sys/fs/cgroup/unified`); skips with a reason otherwise, and fails instead when
//! `REQUIRE_CGROUPS=1`. `KEPLER_ACCURACY_SECS` sets the window (default 8 s);
//! `scripts/accuracy.sh` runs a longer one and prints the table.
//!
//! `KEPLER_ACCURACY_SOURCE` picks kepler's `activity.source` (default `procfs`; `bpf`
//! needs `--features bpf` and root): the harness holds both sources to the same bar
//! (issue 14), and checks that the source asked for is the one kepler used.

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{scrape, FakeRapl, Kepler, KillOnDrop};

const ROLE: &str = "KEPLER_ACCURACY_ROLE";
const IDLE_WATTS: f64 = 10.0;
const JOULES_PER_CPU_SECOND: f64 = 20.0;
/// `USER_HZ` of `/proc/stat` and `/proc/<pid>/stat` (100 on every mainstream architecture).
const USER_HZ: f64 = 100.0;
const INTERVAL_MS: u64 = 500;
const ACCEPTED_ERROR: f64 = 0.02;

/// Not a test of its own: when started by the harness with `KEPLER_ACCURACY_ROLE` set, this
/// is a workload process. It waits for one byte on stdin (sent once it is in its cgroup),
/// then works until killed.
#[test]
fn accuracy_worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let mut go = [0u8; 1];
    let _ = std::io::stdin().read(&mut go);
    if let Some(duty) = role.strip_prefix("duty:") {
        let busy_ms: u64 = duty.parse().expect("duty in percent");
        duty_cycle(busy_ms);
    } else if let Some(rate) = role.strip_prefix("storm:") {
        storm(rate.parse().expect("children per second"));
    }
}

/// Busy for `busy_ms` of every 100 ms.
fn duty_cycle(busy_ms: u64) -> ! {
    let period = Duration::from_millis(100);
    let mut next = Instant::now();
    loop {
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(busy_ms) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
}

/// Starts `per_second` short children per second, one after the other; each is a shell
/// that counts to 300 (a few ms) and exits.
fn storm(per_second: u64) -> ! {
    let period = Duration::from_micros(1_000_000 / per_second.max(1));
    let mut next = Instant::now();
    loop {
        let _ = Command::new("/bin/sh")
            .args(["-c", "i=0; while [ $i -lt 300 ]; do i=$((i+1)); done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
}

/// The cgroup v2 mount, when this process may create cgroups in it.
fn cgroup2_root() -> Result<PathBuf, String> {
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let root = PathBuf::from(root);
        if root.join("cgroup.controllers").exists() {
            let probe = root.join(format!("kepler-probe-{}", std::process::id()));
            return match fs::create_dir(&probe) {
                Ok(()) => {
                    let _ = fs::remove_dir(&probe);
                    Ok(root)
                }
                Err(e) => Err(format!(
                    "cannot create a cgroup under {}: {e}",
                    root.display()
                )),
            };
        }
    }
    Err("no cgroup v2 hierarchy mounted".into())
}

/// A workload: its cgroup leaf (named by a container id).
struct Workload {
    name: &'static str,
    id: String,
    dir: PathBuf,
}

/// The harness's cgroups and the processes in them: on drop (also after a failed assertion)
/// the processes are killed first, then the cgroups removed.
struct CgroupTree {
    base: PathBuf,
    leaves: Vec<PathBuf>,
    processes: Vec<KillOnDrop>,
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        self.processes.clear();
        for _ in 0..100 {
            for d in &self.leaves {
                let _ = fs::remove_dir(d);
            }
            if fs::remove_dir(&self.base).is_ok() || !self.base.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn usage_usec(dir: &Path) -> f64 {
    let text = fs::read_to_string(dir.join("cpu.stat")).expect("cpu.stat");
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("usage_usec")
}

/// Node busy CPU seconds from `/proc/stat` (all but idle and iowait; guest is in user).
fn node_busy_secs() -> f64 {
    let text = fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = text.lines().next().expect("cpu line");
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let busy = v[0]
        + v[1]
        + v[2]
        + v.get(5).unwrap_or(&0.0)
        + v.get(6).unwrap_or(&0.0)
        + v.get(7).unwrap_or(&0.0);
    busy / USER_HZ
}

/// CPU seconds every task on the node has run, counted by the scheduler to the nanosecond:
/// the root of the cgroup v1 `cpuacct` hierarchy. `None` on cgroup v2-only hosts, whose root
/// `cpu.stat` is built from the same tick samples as `/proc/stat`.
fn node_tasks_secs() -> Option<f64> {
    ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"]
        .iter()
        .find_map(|d| fs::read_to_string(Path::new(d).join("cpuacct.usage")).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|ns| ns / 1e9)
}

/// (pid, starttime) -> utime + stime in seconds, for the processes in a cgroup now.
fn cgroup_processes(dir: &Path) -> HashMap<(u32, u64), f64> {
    let mut out = HashMap::new();
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields after the comm start at field 3: utime is 14, stime 15, starttime 22.
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert((pid, num(22)), (num(14) + num(15)) as f64 / USER_HZ);
    }
    out
}

/// Everything read at one kepler tick.
#[derive(Clone)]
struct Reading {
    node_active_j: f64,
    container_j: Vec<f64>,
    usage_s: Vec<f64>,
    node_busy_s: f64,
    node_tasks_s: Option<f64>,
    unattributed_j: f64,
}

fn metric(samples: &[support::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    support::value(samples, name, labels).unwrap_or(0.0)
}

/// Waits for kepler's next tick (its node counter moves), then reads kepler and the
/// kernel at once, so both cover the same interval.
fn read_at_tick(port: u16, workloads: &[Workload], last_node_j: &mut f64) -> Reading {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "kepler stopped ticking");
        let Ok(body) = scrape(port, "/metrics") else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        let s = support::parse_exposition(&body);
        let node_j = metric(&s, "kepler_node_cpu_joules_total", &[("zone", "package")]);
        if node_j == *last_node_j {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        *last_node_j = node_j;
        return Reading {
            usage_s: workloads.iter().map(|w| usage_usec(&w.dir) / 1e6).collect(),
            node_busy_s: node_busy_secs(),
            node_tasks_s: node_tasks_secs(),
            unattributed_j: metric(
                &s,
                "kepler_node_cpu_unattributed_joules_total",
                &[("zone", "package")],
            ),
            node_active_j: metric(
                &s,
                "kepler_node_cpu_active_joules_total",
                &[("zone", "package")],
            ),
            container_j: workloads
                .iter()
                .map(|w| {
                    metric(
                        &s,
                        "kepler_container_cpu_joules_total",
                        &[("container_id", &w.id), ("zone", "package")],
                    )
                })
                .collect(),
        };
    }
}

#[test]
fn attribution_matches_ground_truth_under_churn_issue_4() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let required = std::env::var("REQUIRE_CGROUPS").is_ok_and(|v| v == "1");
    let root = match cgroup2_root() {
        Ok(r) => r,
        Err(why) if required => panic!("REQUIRE_CGROUPS=1 but {why}"),
        Err(why) => {
            eprintln!("skipping the accuracy harness: {why} (needs root and cgroup v2)");
            return;
        }
    };
    let window = Duration::from_secs(
        std::env::var("KEPLER_ACCURACY_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8),
    );

    // Cgroups named like containers, so kepler's cgroup parser sees four containers.
    let base = root.join(format!("kepler-accuracy-{}", std::process::id()));
    fs::create_dir(&base).expect("base cgroup");
    let specs = [
        ("duty-10%", "duty:10"),
        ("duty-30%", "duty:30"),
        ("duty-60%", "duty:60"),
        ("storm", "storm:200"),
    ];
    let workloads: Vec<Workload> = specs
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            // Unique per run: two harnesses at once (parallel test runs) must not share a
            // container id, or each kepler would see one container in two cgroups.
            let id = format!("{:016x}{:048x}", std::process::id(), 0xacc0 + i);
            let dir = base.join(&id);
            fs::create_dir(&dir).expect("leaf cgroup");
            Workload { name, id, dir }
        })
        .collect();
    let mut tree = CgroupTree {
        base: base.clone(),
        leaves: workloads.iter().map(|w| w.dir.clone()).collect(),
        processes: Vec::new(),
    };
    for (w, (_, role)) in workloads.iter().zip(specs) {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "accuracy_worker",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start workload");
        fs::write(w.dir.join("cgroup.procs"), child.id().to_string()).expect("join cgroup");
        // Start work only inside the cgroup; keep stdin open so it never sees EOF as "go".
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"g").expect("go");
        std::mem::forget(stdin);
        tree.processes.push(KillOnDrop(child));
    }

    // The power model of the machine's real CPU time.
    let t0 = Instant::now();
    let busy0 = node_busy_secs();
    let rapl = FakeRapl::driven(1 << 40, Duration::from_millis(10), move || {
        let joules = IDLE_WATTS * t0.elapsed().as_secs_f64()
            + JOULES_PER_CPU_SECOND * (node_busy_secs() - busy0);
        (joules * 1e6) as u64
    });
    // kepler reads cgroups under <host.sysfs>/fs/cgroup: point it at the real ones.
    fs::create_dir_all(rapl.sysfs().join("fs")).unwrap();
    std::os::unix::fs::symlink("/sys/fs/cgroup", rapl.sysfs().join("fs/cgroup")).unwrap();
    let source = std::env::var("KEPLER_ACCURACY_SOURCE").unwrap_or_else(|_| "procfs".into());
    let kepler = Kepler::start(&[
        "--host.sysfs",
        rapl.sysfs().to_str().unwrap(),
        &format!("--monitor.interval={INTERVAL_MS}ms"),
        "--cpu.preferred-meters=rapl",
        &format!("--activity.source={source}"),
    ]);

    // Warm up two ticks, then trace tick by tick: kepler's node active energy, the kernel's
    // CPU time of each workload and of the node, and Go Kepler's method.
    let mut last_node_j = -1.0;
    let _ = read_at_tick(kepler.port(), &workloads, &mut last_node_j);
    let _ = read_at_tick(kepler.port(), &workloads, &mut last_node_j);
    let body = scrape(kepler.port(), "/metrics").expect("scrape");
    assert!(
        body.contains(r#"kepler_exporter_activity_errors_total{node_name="#)
            && body.contains(&format!(r#"source="{source}""#)),
        "kepler does not use activity source {source}; log:\n{}",
        kepler.log()
    );
    let start = read_at_tick(kepler.port(), &workloads, &mut last_node_j);
    let mut seen: Vec<HashMap<(u32, u64), f64>> =
        workloads.iter().map(|w| cgroup_processes(&w.dir)).collect();
    // Energy each workload should get: each tick's active energy split by the kernel's CPU
    // shares of that tick. Summing per tick matters when the machine's other load varies
    // (a parallel build): a tick of heavy other load has more active energy and smaller
    // workload shares, and one share over the whole window would weigh it wrongly.
    let mut truth_j = vec![0.0; workloads.len()];
    let mut kepler_method_j = vec![0.0; workloads.len()];
    let mut prev = start.clone();
    let started = Instant::now();
    let end = loop {
        let r = read_at_tick(kepler.port(), &workloads, &mut last_node_j);
        let active = r.node_active_j - prev.node_active_j;
        let busy = r.node_busy_s - prev.node_busy_s;
        // The CPU time the tick's active energy is split over: the busy time of `/proc/stat`
        // (sampled at the timer tick), or all tasks' scheduler time when that is more. The
        // two clocks disagree by a few percent on a busy VM, and a truth over the sampled
        // busy time alone then hands out more than the tick's energy across all tasks. The
        // rule is kepler's too: busy time no task explains is unattributed, and the split is
        // never over less than the tasks' own time.
        let tasks = match (r.node_tasks_s, prev.node_tasks_s) {
            (Some(a), Some(b)) => a - b,
            _ => 0.0,
        };
        let split_over = busy.max(tasks);
        for (i, w) in workloads.iter().enumerate() {
            let now = cgroup_processes(&w.dir);
            // Go Kepler: CPU-time deltas of the processes alive at the scan; new ones count
            // from 0, and whatever ran and exited in between is lost.
            let mut theirs = 0.0;
            for (key, cpu) in &now {
                theirs += cpu - seen[i].get(key).copied().unwrap_or(0.0);
            }
            seen[i] = now;
            if split_over > 0.0 {
                truth_j[i] += active * (r.usage_s[i] - prev.usage_s[i]) / split_over;
                kepler_method_j[i] += active * theirs / split_over;
            }
        }
        prev = r;
        if started.elapsed() >= window {
            break prev;
        }
    };

    let node_active = end.node_active_j - start.node_active_j;
    let node_busy = end.node_busy_s - start.node_busy_s;
    assert!(
        node_active > 0.0 && node_busy > 0.0,
        "no activity; log:\n{}",
        kepler.log()
    );
    println!(
        "accuracy ({source}) over {:.1} s: node busy {:.2} CPU-s, node active {:.1} J",
        started.elapsed().as_secs_f64(),
        node_busy,
        node_active
    );
    if let (Some(a), Some(b)) = (end.node_tasks_s, start.node_tasks_s) {
        println!(
            "node tasks (scheduler clock) {:.3} CPU-s = {:+.2}% of tick busy; kepler unattributed {:.2}%",
            a - b,
            ((a - b) / node_busy - 1.0) * 100.0,
            (end.unattributed_j - start.unattributed_j) / node_active * 100.0
        );
    }
    println!("workload    truth   kepler-rs  error    go-kepler-method  error");
    let mut failures = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        let truth = truth_j[i] / node_active;
        let ours = (end.container_j[i] - start.container_j[i]) / node_active;
        let theirs = kepler_method_j[i] / node_active;
        println!(
            "{:<10} {:>6.2}%  {:>8.2}%  {:>+6.2}%  {:>15.2}%  {:>+6.2}%",
            w.name,
            truth * 100.0,
            ours * 100.0,
            (ours - truth) * 100.0,
            theirs * 100.0,
            (theirs - truth) * 100.0
        );
        if (ours - truth).abs() > ACCEPTED_ERROR {
            failures.push(w.name);
        }
    }
    assert!(
        failures.is_empty(),
        "attributed share off by more than {}% for {failures:?}; log:\n{}",
        ACCEPTED_ERROR * 100.0,
        kepler.log()
    );
    drop(tree);
}
