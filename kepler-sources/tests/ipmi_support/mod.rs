//! Test helpers for IPMI: two real BMC simulators on 127.0.0.1 and `ipmitool` to cross-check.
//!
//! - OpenIPMI's `ipmi_sim` (Debian `openipmi`), with `dcmi_plugin.c` built here against
//!   `libopenipmi-dev` for DCMI, and a Watts SDR sensor polled from a file for the SDR path.
//! - pyghmi's `Bmc` (PyPI `pyghmi`), subclassed in `pyghmi_bmc.py` to answer DCMI.
//!
//! Both re-read a state file on every DCMI request: `"<watts> <active 0|1>"` or `"nodcmi"`.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kepler_sources::bmc::Secret;
use kepler_sources::ipmi::IpmiBmcConfig;

pub const USER: &str = "kepler";
pub const PASSWORD: &str = "pw-do-not-log-7";

/// The SDR sensor's conversion in `bmc.emu`: watts = 2·raw + 10.
pub fn sdr_watts(raw: u8) -> f64 {
    2.0 * f64::from(raw) + 10.0
}

fn support() -> PathBuf {
    // Through the workspace, so kepler-bin's tests can include this module too.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kepler-sources/tests/ipmi_support")
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The Python that has pyghmi: `KEPLER_PYGHMI_PYTHON`, else the CI venv, else `python3`.
pub fn pyghmi_python() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("KEPLER_PYGHMI_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/kepler-rs/pyghmi-venv/bin/python"));
    }
    candidates.push(PathBuf::from("python3"));
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import pyghmi.ipmi.bmc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// True when the simulators and ipmitool can run; otherwise prints why the test is skipped,
/// or panics when `REQUIRE_IPMI=1` (CI) says it must run.
pub fn ipmi_or_skip(test: &str) -> bool {
    let mut missing = Vec::new();
    if !runs("ipmi_sim", &["-h"]) {
        missing.push("ipmi_sim (apt openipmi)");
    }
    if !Path::new("/usr/include/OpenIPMI/mcserv.h").exists() {
        missing.push("OpenIPMI headers (apt libopenipmi-dev)");
    }
    if !runs("cc", &["--version"]) {
        missing.push("a C compiler");
    }
    if !runs("ipmitool", &["-V"]) {
        missing.push("ipmitool (apt ipmitool)");
    }
    if pyghmi_python().is_none() {
        missing.push("pyghmi (pip install pyghmi; KEPLER_PYGHMI_PYTHON names its python)");
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join(", ");
    if std::env::var("REQUIRE_IPMI").as_deref() == Ok("1") {
        panic!("{test}: missing {why} but REQUIRE_IPMI=1");
    }
    eprintln!("SKIP {test}: missing {why} (REQUIRE_IPMI=1 makes this fail)");
    false
}

/// A free UDP port on 127.0.0.1 (bound, then released).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenIPMI ipmi_sim with the DCMI plugin.
    IpmiSim,
    /// pyghmi's Bmc with a DCMI handler.
    Pyghmi,
}

/// A running simulator; killed on drop.
pub struct Sim {
    pub kind: Kind,
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Sim {
    /// Starts `kind` with DCMI answering `state` and waits until ipmitool reaches it.
    pub fn start(kind: Kind, state: &str) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("dcmi"), state).unwrap();
        std::fs::write(d.join("sdr_raw"), "100\n").unwrap();
        let port = free_udp_port();
        let child = match kind {
            Kind::IpmiSim => start_ipmi_sim(d, port),
            Kind::Pyghmi => Command::new(pyghmi_python().unwrap())
                .arg(support().join("pyghmi_bmc.py"))
                .args([&port.to_string(), USER, PASSWORD])
                .arg(d.join("dcmi"))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        };
        let sim = Sim {
            kind,
            child,
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while sim.ipmitool(&["mc", "info"]).is_none() {
            assert!(
                Instant::now() < deadline,
                "{kind:?} did not answer ipmitool on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        sim
    }

    /// Rewrites the DCMI state file.
    pub fn set_state(&self, state: &str) {
        let tmp = self.dir.path().join("dcmi.tmp");
        std::fs::write(&tmp, state).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("dcmi")).unwrap();
    }

    /// Sets the raw byte of the SDR Watts sensor (ipmi_sim polls the file every 100 ms).
    pub fn set_sdr_raw(&self, raw: u8) {
        let tmp = self.dir.path().join("sdr_raw.tmp");
        std::fs::write(&tmp, format!("{raw}\n")).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("sdr_raw")).unwrap();
    }

    /// `host:port` of the simulator.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A BMC config with the right (or a wrong) password.
    pub fn bmc(&self, id: &str, password: &str) -> IpmiBmcConfig {
        IpmiBmcConfig {
            id: id.into(),
            endpoint: self.endpoint(),
            username: USER.into(),
            password: Secret::new(password),
            cipher_suite: 3,
        }
    }

    /// Runs ipmitool over lanplus, cipher suite 3; stdout when it succeeds.
    pub fn ipmitool(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", USER, "-P", PASSWORD, "-C", "3", "-N", "1", "-R", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ipmitool dcmi power reading`: (instantaneous watts, state activated).
    pub fn ipmitool_dcmi(&self) -> (u32, bool) {
        let out = self
            .ipmitool(&["dcmi", "power", "reading"])
            .expect("ipmitool dcmi power reading failed");
        let watts = out
            .lines()
            .find(|l| l.contains("Instantaneous power reading"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no reading in ipmitool output:\n{out}"));
        let state = out
            .lines()
            .find(|l| l.contains("Power reading state is"))
            .unwrap_or_else(|| panic!("no state in ipmitool output:\n{out}"));
        (watts, !state.contains("deactivated"))
    }

    /// `ipmitool sensor reading "Pwr Consumption"`: the converted watts.
    pub fn ipmitool_sensor_watts(&self) -> f64 {
        let out = self
            .ipmitool(&["sensor", "reading", "Pwr Consumption"])
            .expect("ipmitool sensor reading failed");
        out.split('|')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no value in ipmitool output: {out}"))
    }

    /// Stops the process (SIGSTOP): it keeps its socket but never answers.
    pub fn hang(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Resumes a hung simulator.
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    /// Kills the simulator: the BMC is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

impl Drop for Sim {
    fn drop(&mut self) {
        signal_quiet(self.child.id());
        self.kill();
    }
}

fn signal_quiet(pid: u32) {
    let _ = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The DCMI plugin, built once per test process into a shared directory.
fn plugin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kepler-ipmi-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let so = dir.join("dcmi_plugin.so");
            let out = Command::new("cc")
                .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
                .arg(&so)
                .arg(support().join("dcmi_plugin.c"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "building dcmi_plugin.c failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            so
        })
        .clone()
}

/// A full sensor record: threshold sensor 1 "Pwr Consumption", unit Watts (6), M=2, B=10.
const SDR: &str = "0x00 0x00 0x51 0x01 0x3a 0x20 0x00 0x01 0x15 0x01 0x7f 0x68 0x0b 0x01 \
    0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x06 0x00 0x00 0x02 0x00 0x0a 0x00 0x00 0x00 0x00 \
    0x00 0x00 0x00 0xff 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0xcf \
    0x50 0x77 0x72 0x20 0x43 0x6f 0x6e 0x73 0x75 0x6d 0x70 0x74 0x69 0x6f 0x6e";

fn start_ipmi_sim(d: &Path, port: u16) -> Child {
    let lan = format!(
        "name \"kepler-test\"\n\
         set_working_mc 0x20\n\
         \x20 startlan 1\n\
         \x20   addr 127.0.0.1 {port}\n\
         \x20   priv_limit admin\n\
         \x20   allowed_auths_callback none md5\n\
         \x20   allowed_auths_user none md5\n\
         \x20   allowed_auths_operator none md5\n\
         \x20   allowed_auths_admin none md5\n\
         \x20   guid a123456789abcdefa123456789abcdef\n\
         \x20 endlan\n\
         \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 none md5\n\
         loadlib \"{}\" \"state={}\"\n",
        plugin().display(),
        d.join("dcmi").display()
    );
    // mc_setbmc is mandatory: without it ipmi_sim has no BMC to route LAN messages to.
    let emu = format!(
        "mc_setbmc 0x20\n\
         mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n\
         main_sdr_add 0x20 {SDR}\n\
         sensor_add 0x20 0 1 0x0b 0x01 poll 100 file \"{}\"\n\
         sensor_set_event_support 0x20 0 1 enable scanning per-state \
         000000000000000 000000000000000 000000000000000 000000000000000\n\
         mc_enable 0x20\n",
        d.join("sdr_raw").display()
    );
    std::fs::write(d.join("lan.conf"), lan).unwrap();
    std::fs::write(d.join("bmc.emu"), emu).unwrap();
    std::fs::create_dir_all(d.join("state")).unwrap();
    Command::new("ipmi_sim")
        .arg("-c")
        .arg(d.join("lan.conf"))
        .arg("-f")
        .arg(d.join("bmc.emu"))
        .arg("-s")
        .arg(d.join("state"))
        .arg("-n")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}
