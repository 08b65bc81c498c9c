//! Helpers for the end-to-end tests: a fake RAPL tree that advances in real time, the real
//! `kepler` binary on a free port, a minimal HTTP client and an exposition parser.

#![allow(dead_code)]

pub mod fake_node;
pub mod prometheus;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Kills the child when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A powercap tree whose `energy_uj` files advance at fixed watts, rewritten in place every
/// 2 ms (the exporter keeps the files open, as it does on real sysfs).
pub struct FakeRapl {
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl FakeRapl {
    /// Zones: the first is the package (`intel-rapl:0`), the rest its sub-zones. Counters
    /// start 5 J below `max_range_uj` so the first wrap comes early.
    pub fn start(zones: &[(&str, f64)], max_range_uj: u64) -> FakeRapl {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("class/powercap");
        let mut files = Vec::new();
        for (i, (name, watts)) in zones.iter().enumerate() {
            let zdir = if i == 0 {
                base.join("intel-rapl:0")
            } else {
                base.join(format!("intel-rapl:0/intel-rapl:0:{}", i - 1))
            };
            fs::create_dir_all(&zdir).unwrap();
            fs::write(zdir.join("name"), format!("{name}\n")).unwrap();
            fs::write(
                zdir.join("max_energy_range_uj"),
                format!("{max_range_uj}\n"),
            )
            .unwrap();
            fs::write(zdir.join("enabled"), "1\n").unwrap();
            let path = zdir.join("energy_uj");
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            files.push((f, *watts));
        }
        // Sub-zones also appear at the top level, as sysfs links them.
        for i in 1..zones.len() {
            let target = base.join(format!("intel-rapl:0/intel-rapl:0:{}", i - 1));
            let _ =
                std::os::unix::fs::symlink(&target, base.join(format!("intel-rapl:0:{}", i - 1)));
        }
        let start_offset = max_range_uj.saturating_sub(5_000_000);
        let write_all = move |files: &[(File, f64)], elapsed: Duration| {
            for (f, watts) in files {
                let uj = (watts * elapsed.as_secs_f64() * 1e6) as u64;
                let v = (start_offset + uj) % max_range_uj;
                // Fixed width, one write: a reader sees the old or the new value, never half.
                f.write_at(format!("{v:020}\n").as_bytes(), 0).unwrap();
            }
        };
        write_all(&files, Duration::ZERO);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = thread::spawn(move || {
            let t0 = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                write_all(&files, t0.elapsed());
                thread::sleep(Duration::from_millis(2));
            }
        });
        FakeRapl {
            dir,
            stop,
            writer: Some(writer),
        }
    }

    /// The `--host.sysfs` root.
    pub fn sysfs(&self) -> &Path {
        self.dir.path()
    }

    /// One package zone whose `energy_uj` is whatever `energy_uj()` says, rewritten every
    /// `period`: a power model of something the test measures (issue 4's accuracy harness).
    pub fn driven(
        max_range_uj: u64,
        period: Duration,
        mut energy_uj: impl FnMut() -> u64 + Send + 'static,
    ) -> FakeRapl {
        let dir = tempfile::tempdir().unwrap();
        let zdir = dir.path().join("class/powercap/intel-rapl:0");
        fs::create_dir_all(&zdir).unwrap();
        fs::write(zdir.join("name"), "package-0\n").unwrap();
        fs::write(
            zdir.join("max_energy_range_uj"),
            format!("{max_range_uj}\n"),
        )
        .unwrap();
        fs::write(zdir.join("enabled"), "1\n").unwrap();
        let f = File::create(zdir.join("energy_uj")).unwrap();
        let mut write = move || {
            let v = energy_uj() % max_range_uj;
            f.write_at(format!("{v:020}\n").as_bytes(), 0).unwrap();
        };
        write();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                write();
                thread::sleep(period);
            }
        });
        FakeRapl {
            dir,
            stop,
            writer: Some(writer),
        }
    }
}

impl Drop for FakeRapl {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The real binary, listening on a free loopback port.
pub struct Kepler {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Kepler {
    /// Starts `kepler` with `args` plus a listen address, and waits until `/healthz` answers.
    pub fn start(args: &[&str]) -> Kepler {
        Kepler::start_on(free_port(), args)
    }

    /// As [`Kepler::start`], on a given port (a restart on the address a scraper knows).
    pub fn start_on(port: u16, args: &[&str]) -> Kepler {
        Kepler::start_cmd(Command::new(env!("CARGO_BIN_EXE_kepler")), port, args)
    }

    /// As [`Kepler::start`], another build of kepler: the binary at `program` (the shipped
    /// one of `scripts/dist.sh`, issue 21).
    pub fn start_program(program: &Path, args: &[&str]) -> Kepler {
        Kepler::start_cmd(Command::new(program), free_port(), args)
    }

    /// As [`Kepler::start`], run by `sh -c` after `setup` (shell commands such as
    /// `ulimit`), which then `exec`s kepler: same pid, changed environment.
    pub fn start_after(setup: &str, args: &[&str]) -> Kepler {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("{setup} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_kepler"),
        ]);
        Kepler::start_cmd(cmd, free_port(), args)
    }

    fn start_cmd(mut cmd: Command, port: u16, args: &[&str]) -> Kepler {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("kepler.log");
        let child = cmd
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start kepler");
        let k = Kepler {
            child: Some(child),
            port,
            log,
            _logdir: logdir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if scrape(port, "/healthz").is_ok() {
                return k;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("kepler did not start:\n{}", k.log());
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("kepler ignored SIGTERM:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Kepler {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.1 GET; the body on 200, an error otherwise.
pub fn scrape(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `/metrics` until `name` appears; returns that body.
pub fn wait_for_metric(port: u16, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(body) = scrape(port, "/metrics") {
            if body.lines().any(|l| l.starts_with(name)) {
                return body;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("{name} never appeared");
}

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// A label's value.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses text format 0.0.4 (enough for tests: escaped label values, no timestamps).
pub fn parse_exposition(body: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => {
                let (n, v) = line.split_once(' ').unwrap();
                out.push(Sample {
                    name: n.into(),
                    labels: vec![],
                    value: v.trim().parse().unwrap(),
                });
                continue;
            }
        };
        let mut labels = Vec::new();
        let mut chars = rest.chars().peekable();
        loop {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "bad line {line}");
            let mut val = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => val.push('\n'),
                        Some(o) => val.push(o),
                        None => break,
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            labels.push((key.trim_start_matches(',').to_string(), val));
            match chars.next() {
                Some(',') => {
                    if chars.peek() == Some(&'}') {
                        chars.next();
                        break;
                    }
                    continue;
                }
                _ => break,
            }
        }
        let value: String = chars.collect();
        out.push(Sample {
            name: name.into(),
            labels,
            value: value.trim().parse().unwrap(),
        });
    }
    out
}

/// The value of the first sample of `name` whose labels include all of `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && want.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}
