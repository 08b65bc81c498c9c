//! `loadgen`: real processes for benchmarks, side-by-side runs and soak tests (issue 9).
//!
//! Spawns sleeping processes, busy ones with a CPU duty cycle, and a churn of short-lived
//! children at a fixed rate, optionally spread over cgroups named like Docker containers
//! (`docker-<64 hex>.scope`, so exporters attribute them to containers). Every worker is this
//! binary re-executed in a worker mode, so no other program is needed.
//!
//! It cleans up on SIGINT, SIGTERM and its own exit: workers are killed and reaped, cgroups
//! removed. Workers also die with it when it is SIGKILLed: each asks the kernel for SIGKILL
//! when its parent goes (`PR_SET_PDEATHSIG`), so a sleeping worker really sleeps: it never
//! wakes unless `--wake-every` asks it to, like a daemon on a timer.
//!
//! ```text
//! loadgen [--sleeping N] [--wake-every MS] [--busy N] [--duty F] [--churn PER_SEC]
//!         [--churn-life MS] [--churn-busy MS] [--cgroups K] [--cgroup-root DIR]...
//!         [--duration SECS] [--ready-file PATH]
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: loadgen [--sleeping N] [--wake-every MS] [--busy N] [--duty 0..1] \
[--churn PER_SEC] [--churn-life MS] [--churn-busy MS] [--cgroups K] [--cgroup-root DIR]... \
[--duration SECS] [--ready-file PATH]
  --sleeping N      N processes that sleep
  --wake-every MS   the sleeping ones wake every MS milliseconds, doing nothing (default: never)
  --busy N          N processes busy for --duty of every 100 ms (default duty 1.0)
  --churn R         R short-lived children per second, each living --churn-life ms
                    (default 200) and busy for the first --churn-busy ms of it (default 5)
  --cgroups K       spread all processes over K cgroups docker-<id>.scope, created under
                    each --cgroup-root (default: every cgroup v1 and v2 hierarchy mounted)
  --duration S      stop after S seconds (default: until SIGINT/SIGTERM)
  --ready-file P    write the number of processes to P once they all run";

/// How long a sleeping worker sleeps at a time when it is not asked to wake.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);
/// The period of a busy worker's duty cycle.
const DUTY_PERIOD: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
struct Options {
    sleeping: usize,
    wake_every: Option<Duration>,
    busy: usize,
    duty: f64,
    churn_per_sec: f64,
    churn_life: Duration,
    churn_busy: Duration,
    cgroups: usize,
    cgroup_roots: Vec<PathBuf>,
    duration: Option<Duration>,
    ready_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sleeping: 0,
            wake_every: None,
            busy: 0,
            duty: 1.0,
            churn_per_sec: 0.0,
            churn_life: Duration::from_millis(200),
            churn_busy: Duration::from_millis(5),
            cgroups: 0,
            cgroup_roots: Vec::new(),
            duration: None,
            ready_file: None,
        }
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    fn num<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
    }
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sleeping" => o.sleeping = num(a, it.next())?,
            "--wake-every" => {
                o.wake_every = match num::<u64>(a, it.next())? {
                    0 => return Err("--wake-every must be at least 1 ms".into()),
                    ms => Some(Duration::from_millis(ms)),
                }
            }
            "--busy" => o.busy = num(a, it.next())?,
            "--duty" => o.duty = num(a, it.next())?,
            "--churn" => o.churn_per_sec = num(a, it.next())?,
            "--churn-life" => o.churn_life = Duration::from_millis(num(a, it.next())?),
            "--churn-busy" => o.churn_busy = Duration::from_millis(num(a, it.next())?),
            "--cgroups" => o.cgroups = num(a, it.next())?,
            "--cgroup-root" => o.cgroup_roots.push(PathBuf::from(
                it.next().ok_or("--cgroup-root needs a value")?,
            )),
            "--duration" => o.duration = Some(Duration::from_secs_f64(num(a, it.next())?)),
            "--ready-file" => {
                o.ready_file = Some(PathBuf::from(
                    it.next().ok_or("--ready-file needs a value")?,
                ))
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !(0.0..=1.0).contains(&o.duty) {
        return Err(format!("--duty: {} is not within 0..1", o.duty));
    }
    if !(0.0..=10_000.0).contains(&o.churn_per_sec) {
        return Err(format!(
            "--churn: {} is not within 0..10000 per second",
            o.churn_per_sec
        ));
    }
    if o.churn_busy > o.churn_life {
        return Err("--churn-busy is longer than --churn-life".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(&args[1..]);
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Worker modes: `sleep`, `busy DUTY`, `churn LIFE_MS BUSY_MS`.
fn worker(args: &[String]) -> ExitCode {
    // Die with loadgen, even a SIGKILLed one. The parent may have gone before the request:
    // then it is already orphaned.
    let parent = std::os::unix::process::parent_id();
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if std::os::unix::process::parent_id() != parent {
        return ExitCode::SUCCESS;
    }
    match args.first().map(String::as_str) {
        Some("sleep") => {
            let nap = args
                .get(1)
                .and_then(|ms| ms.parse().ok())
                .map_or(FOREVER, Duration::from_millis);
            loop {
                thread::sleep(nap);
            }
        }
        Some("busy") => {
            let duty: f64 = args.get(1).and_then(|d| d.parse().ok()).unwrap_or(1.0);
            let on = DUTY_PERIOD.mul_f64(duty);
            loop {
                let start = Instant::now();
                spin_for(on);
                if let Some(rest) = DUTY_PERIOD.checked_sub(start.elapsed()) {
                    thread::sleep(rest);
                }
            }
        }
        Some("churn") => {
            let ms = |i: usize| {
                Duration::from_millis(args.get(i).and_then(|v| v.parse().ok()).unwrap_or(0))
            };
            let (life, busy) = (ms(1), ms(2));
            let start = Instant::now();
            spin_for(busy);
            if let Some(rest) = life.checked_sub(start.elapsed()) {
                thread::sleep(rest);
            }
        }
        _ => return ExitCode::from(2),
    }
    ExitCode::SUCCESS
}

/// Burns CPU for `d` of wall time.
fn spin_for(d: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    std::hint::black_box(x);
}

/// Cgroups made for this run, removed on drop (after the workers are gone).
struct Cgroups {
    /// One `kepler-loadgen-<pid>` directory per hierarchy.
    parents: Vec<PathBuf>,
    /// The leaf names, `docker-<id>.scope`.
    leaves: Vec<String>,
}

impl Cgroups {
    fn create(count: usize, roots: &[PathBuf]) -> Result<Cgroups, String> {
        let roots = if roots.is_empty() {
            mounted_hierarchies()?
        } else {
            roots.to_vec()
        };
        if roots.is_empty() {
            return Err("no cgroup hierarchy is mounted".into());
        }
        let me = std::process::id();
        let leaves: Vec<String> = (0..count)
            .map(|i| format!("docker-{:032x}{:032x}.scope", me as u128, i as u128))
            .collect();
        let mut made = Cgroups {
            parents: Vec::new(),
            leaves,
        };
        for root in &roots {
            let parent = root.join(format!("kepler-loadgen-{me}"));
            make_cgroup(&parent)?;
            made.parents.push(parent.clone());
            for leaf in &made.leaves {
                make_cgroup(&parent.join(leaf))?;
            }
        }
        Ok(made)
    }

    /// Moves `pid` into leaf `i` of every hierarchy.
    fn enter(&self, i: usize, pid: u32) -> Result<(), String> {
        let leaf = &self.leaves[i % self.leaves.len()];
        for parent in &self.parents {
            let procs = parent.join(leaf).join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .map_err(|e| format!("cannot move {pid} into {}: {e}", procs.display()))?;
        }
        Ok(())
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for parent in &self.parents {
            for leaf in &self.leaves {
                let _ = fs::remove_dir(parent.join(leaf));
            }
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Creates one cgroup. A new cgroup v1 cpuset starts with no CPUs and no memory nodes and
/// refuses tasks (ENOSPC) until given some: it inherits its parent's.
fn make_cgroup(dir: &Path) -> Result<(), String> {
    fs::create_dir(dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let empty = fs::read_to_string(&own).is_ok_and(|v| v.trim().is_empty());
        if let (true, Some(parent)) = (empty, dir.parent()) {
            let inherited = fs::read_to_string(parent.join(file)).unwrap_or_default();
            fs::write(&own, inherited.trim())
                .map_err(|e| format!("cannot set {}: {e}", own.display()))?;
        }
    }
    Ok(())
}

/// Mount points of every cgroup v1 and v2 hierarchy, from `/proc/self/mounts`.
fn mounted_hierarchies() -> Result<Vec<PathBuf>, String> {
    let mounts =
        fs::read_to_string("/proc/self/mounts").map_err(|e| format!("/proc/self/mounts: {e}"))?;
    Ok(mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, dir, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup" || kind == "cgroup2").then(|| PathBuf::from(dir))
        })
        .collect())
}

/// The workers of a run; killed and reaped on drop, whatever ends the run.
struct Workers {
    long_lived: Vec<Child>,
    churn: Vec<Child>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in self.long_lived.iter_mut().chain(self.churn.iter_mut()) {
            let _ = c.kill();
        }
        for c in self.long_lived.iter_mut().chain(self.churn.iter_mut()) {
            let _ = c.wait();
        }
    }
}

fn spawn_worker(exe: &Path, mode: &[String]) -> Result<Child, String> {
    Command::new(exe)
        .arg("--worker")
        .args(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot spawn a worker: {e}"))
}

fn run(o: &Options) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    // Declared before the workers: dropped after them, when the cgroups are empty.
    let cgroups = match o.cgroups {
        0 => None,
        k => Some(Cgroups::create(k, &o.cgroup_roots)?),
    };
    let mut workers = Workers {
        long_lived: Vec::with_capacity(o.sleeping + o.busy),
        churn: Vec::new(),
    };
    let mut sleep_mode = vec!["sleep".to_string()];
    if let Some(every) = o.wake_every {
        sleep_mode.push(every.as_millis().to_string());
    }
    let busy_mode = vec!["busy".to_string(), o.duty.to_string()];
    let started = Instant::now();
    for i in 0..o.sleeping + o.busy {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mode = if i < o.sleeping {
            &sleep_mode
        } else {
            &busy_mode
        };
        let child = spawn_worker(&exe, mode)?;
        let pid = child.id();
        workers.long_lived.push(child);
        if let Some(cg) = &cgroups {
            cg.enter(i, pid)?;
        }
    }
    let count = workers.long_lived.len();
    println!(
        "loadgen: {count} processes ({} sleeping, {} busy at {:.0}%) running after {:.1} s; \
         churn {}/s",
        o.sleeping,
        o.busy,
        o.duty * 100.0,
        started.elapsed().as_secs_f64(),
        o.churn_per_sec
    );
    if let Some(p) = &o.ready_file {
        fs::write(p, format!("{count}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
    }

    let churn_mode = vec![
        "churn".to_string(),
        o.churn_life.as_millis().to_string(),
        o.churn_busy.as_millis().to_string(),
    ];
    let period = (o.churn_per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / o.churn_per_sec));
    let run_start = Instant::now();
    let mut next_spawn = run_start;
    let mut spawned = 0u64;
    while !stop.load(Ordering::Relaxed) && o.duration.is_none_or(|d| run_start.elapsed() < d) {
        let now = Instant::now();
        if let Some(period) = period {
            // Catch up after a stall, but by one second's worth at most.
            if now.duration_since(next_spawn) > Duration::from_secs(1) {
                next_spawn = now - Duration::from_secs(1);
            }
            while next_spawn <= now {
                let child = spawn_worker(&exe, &churn_mode)?;
                if let Some(cg) = &cgroups {
                    // A child that already exited cannot be moved: not an error.
                    let _ = cg.enter(spawned as usize, child.id());
                }
                workers.churn.push(child);
                spawned += 1;
                next_spawn += period;
            }
            workers
                .churn
                .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        }
        let wait = match period {
            Some(_) => next_spawn.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(200),
        };
        thread::sleep(wait.min(Duration::from_millis(200)));
    }
    drop(workers);
    drop(cgroups);
    println!(
        "loadgen: stopped after {:.1} s; {spawned} churn children spawned",
        run_start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_every_flag() {
        let o = parse_args(&args(
            "--sleeping 10 --busy 2 --duty 0.25 --churn 50 --churn-life 300 --churn-busy 10 \
             --cgroups 4 --cgroup-root /a --cgroup-root /b --duration 1.5 --ready-file /r \
             --wake-every 3000",
        ))
        .unwrap();
        assert_eq!(o.sleeping, 10);
        assert_eq!(o.wake_every, Some(Duration::from_secs(3)));
        assert_eq!(o.busy, 2);
        assert_eq!(o.duty, 0.25);
        assert_eq!(o.churn_per_sec, 50.0);
        assert_eq!(o.churn_life, Duration::from_millis(300));
        assert_eq!(o.churn_busy, Duration::from_millis(10));
        assert_eq!(o.cgroups, 4);
        assert_eq!(
            o.cgroup_roots,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(o.duration, Some(Duration::from_millis(1500)));
        assert_eq!(o.ready_file, Some(PathBuf::from("/r")));
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (a, flag) in [
            ("--duty 2", "--duty"),
            ("--busy many", "--busy"),
            ("--churn -1", "--churn"),
            ("--sleeping", "--sleeping"),
            ("--wake-every 0", "--wake-every"),
            ("--churn-life 5 --churn-busy 10", "--churn-busy"),
            ("--frobnicate", "--frobnicate"),
        ] {
            let e = parse_args(&args(a)).unwrap_err();
            assert!(e.contains(flag), "{a}: {e}");
        }
    }
}
