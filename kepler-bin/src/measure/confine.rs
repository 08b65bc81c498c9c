//! Where the command runs, so that everything it starts is counted: a cgroup of its own when
//! one can be created, else its process tree.
//!
//! The cgroup is made where the exporter's activity source reads cgroup counters
//! (`<sysfs>/fs/cgroup`), next to kepler's own cgroup, and its directory is named with a
//! 64-hex id, the shape a container id has. The procfs source therefore treats it as a
//! container, and the engine charges it exactly as it charges a container: its processes'
//! CPU time, plus the cgroup counter's time that no listed process explains (processes that
//! started and exited between two scans). No second accounting path.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

/// How the command's processes are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A cgroup v2 directory (pure v2, or the hybrid `unified` mount).
    CgroupV2,
    /// A cgroup v1 `cpuacct` directory.
    CgroupV1,
    /// No writable cgroup: the command's process tree, with the reaped-children rule.
    ProcessTree,
}

impl Method {
    /// The name shown in the report.
    pub fn label(self) -> &'static str {
        match self {
            Method::CgroupV2 => "cgroup-v2",
            Method::CgroupV1 => "cgroup-v1",
            Method::ProcessTree => "process-tree",
        }
    }
}

/// The command's own cgroup, removed on drop.
#[derive(Debug)]
pub struct RunCgroup {
    /// The directory.
    pub dir: PathBuf,
    /// v2 or v1.
    pub method: Method,
    /// The container id the activity source will report it under (the directory's name).
    pub id: String,
}

/// Where the command runs: its cgroup, or `None` for the process tree, with why each cgroup
/// place was not usable.
#[derive(Debug)]
pub struct Confinement {
    /// The cgroup, when one was made.
    pub cgroup: Option<RunCgroup>,
    /// Why each place tried was not usable (for the report of a process-tree run).
    pub tried: Vec<String>,
}

impl Confinement {
    /// How processes are followed.
    pub fn method(&self) -> Method {
        self.cgroup
            .as_ref()
            .map_or(Method::ProcessTree, |c| c.method)
    }
}

/// Makes a cgroup for the command under `<sysfs>/fs/cgroup`: pure v2, the hybrid `unified`
/// v2 mount, then v1 `cpuacct`, each next to this process's own cgroup in that hierarchy
/// (read from `<procfs>/self/cgroup`). A place is usable when the directory can be made and
/// its `cgroup.procs` is writable.
pub fn confine(sysfs: &Path, procfs: &Path) -> Confinement {
    let root = sysfs.join("fs/cgroup");
    let own = fs::read_to_string(procfs.join("self/cgroup")).unwrap_or_default();
    let id = random_id();
    let mut tried = Vec::new();
    if !root.is_dir() {
        tried.push(format!("no cgroup filesystem at {}", root.display()));
        return Confinement {
            cgroup: None,
            tried,
        };
    }
    for (mount, own_path, method) in candidates(&root, &own) {
        let parent = mount.join(own_path.trim_start_matches('/'));
        let dir = parent.join(&id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) => {
                tried.push(format!("{}: {e}", parent.display()));
                continue;
            }
        }
        if let Err(e) = access(&dir.join("cgroup.procs"), AccessFlags::W_OK) {
            tried.push(format!("{}: cgroup.procs not writable: {e}", dir.display()));
            let _ = fs::remove_dir(&dir);
            continue;
        }
        return Confinement {
            cgroup: Some(RunCgroup { dir, method, id }),
            tried,
        };
    }
    if tried.is_empty() {
        tried.push(format!(
            "no cgroup v2 or v1 cpuacct mount under {}",
            root.display()
        ));
    }
    Confinement {
        cgroup: None,
        tried,
    }
}

/// (mount, this process's path in it, method), in order of preference.
fn candidates(root: &Path, own_cgroup: &str) -> Vec<(PathBuf, String, Method)> {
    let mut out = Vec::new();
    let mut v1 = None;
    let mut v2_path = None;
    for line in own_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if hierarchy == "0" && controllers.is_empty() {
            v2_path = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpuacct") {
            v1 = Some((root.join(controllers), path.to_string()));
        }
    }
    if let Some(path) = v2_path {
        for mount in [root.to_path_buf(), root.join("unified")] {
            if mount.join("cgroup.controllers").exists() {
                out.push((mount, path.clone(), Method::CgroupV2));
            }
        }
    }
    if let Some((mount, path)) = v1 {
        out.push((mount, path, Method::CgroupV1));
    }
    out
}

/// 64 lowercase hex characters from the kernel's random source (the time and pid when that
/// is unreadable: the id only has to be unique on this machine).
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    let read = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id()) << 64;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RunCgroup {
    /// The file a process writes `0` to, to move itself in.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Cumulative CPU time of every task that ran in the cgroup, in ns: `usage_usec` of
    /// `cpu.stat` (v2) or `cpuacct.usage` (v1).
    pub fn cpu_time_ns(&self) -> io::Result<u64> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        match self.method {
            Method::CgroupV2 => {
                let text = fs::read_to_string(self.dir.join("cpu.stat"))?;
                text.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|us| us.saturating_mul(1000))
                    .ok_or_else(|| bad("cpu.stat has no usage_usec"))
            }
            _ => fs::read_to_string(self.dir.join("cpuacct.usage"))?
                .trim()
                .parse()
                .map_err(|_| bad("cpuacct.usage is not a number")),
        }
    }

    /// True while any process is in the cgroup.
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.procs_file()).is_ok_and(|s| !s.trim().is_empty())
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // Every process has been reaped by now; the kernel may take a moment to let go.
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        tracing::warn!(dir = %self.dir.display(), "cannot remove the command's cgroup");
    }
}

/// Run in the child before exec: moves this process into the cgroup whose `cgroup.procs` is
/// `procs`.
pub fn join(procs: &Path) -> io::Result<()> {
    fs::write(procs, "0\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_prefers_unified_then_cpuacct() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("unified")).unwrap();
        fs::write(root.join("unified/cgroup.controllers"), "").unwrap();
        let own = "4:memory:/a\n2:cpu,cpuacct:/b\n0::/c\n";
        let c = candidates(root, own);
        assert_eq!(
            c,
            [
                (root.join("unified"), "/c".to_string(), Method::CgroupV2),
                (root.join("cpu,cpuacct"), "/b".to_string(), Method::CgroupV1),
            ]
        );
        // Pure v2 at the root.
        fs::write(root.join("cgroup.controllers"), "cpu\n").unwrap();
        assert_eq!(candidates(root, "0::/x\n")[0].0, root.to_path_buf());
    }

    #[test]
    fn nothing_writable_means_process_tree_with_reasons() {
        let d = tempfile::tempdir().unwrap();
        let proc_dir = d.path().join("proc/self");
        fs::create_dir_all(&proc_dir).unwrap();
        fs::write(proc_dir.join("cgroup"), "0::/\n").unwrap();
        let c = confine(&d.path().join("sys"), &d.path().join("proc"));
        assert_eq!(c.method(), Method::ProcessTree);
        assert!(c.tried[0].contains("no cgroup"), "{:?}", c.tried);
    }

    #[test]
    fn ids_look_like_container_ids() {
        let id = random_id();
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, random_id());
        let parsed = kepler_sources::parse_cgroup(&format!("0::/user.slice/{id}\n"));
        assert_eq!(parsed.map(|m| m.container_id), Some(id));
    }
}
