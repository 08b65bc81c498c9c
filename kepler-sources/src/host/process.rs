//! What does not change for the life of a process: comm, exe, container (from its cgroup)
//! and VM (from its command line), read the same way by procfs and kepler-bpf.
//!
//! Both sources read it once per process identity (pid, start time, see
//! [`boottime_ns_to_ticks`](super::clock::boottime_ns_to_ticks)) and again after an exec
//! (a new comm), and share one `Arc<ProcessInfo>` between ticks.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use kepler_core::ProcessInfo;

use super::cgroup::parse_cgroup;
use super::vm::vm_from_cmdline;

/// Enough for the cgroup file of any real process and a QEMU command line; more is cut.
pub const AUX_LIMIT: usize = 256 * 1024;

/// Reads the static data of processes, reusing its buffers across processes.
#[derive(Debug)]
pub struct StaticReader {
    cgroup: Vec<u8>,
    cgroup_read: bool,
    cmdline: Vec<u8>,
    empty: Arc<str>,
}

impl Default for StaticReader {
    fn default() -> StaticReader {
        StaticReader::new()
    }
}

impl StaticReader {
    /// A reader with empty buffers.
    pub fn new() -> StaticReader {
        StaticReader {
            cgroup: Vec::new(),
            cgroup_read: false,
            cmdline: Vec::new(),
            empty: Arc::from(""),
        }
    }

    /// The shared empty string of unknown names (no allocation per process).
    pub fn empty(&self) -> &Arc<str> {
        &self.empty
    }

    /// Reads the static data of the process whose procfs directory is `pid_dir`. Every part
    /// degrades on its own: an unreadable `exe` (kernel threads, other users' processes
    /// without `CAP_SYS_PTRACE`) is "", an unreadable cgroup or cmdline is "no
    /// container"/"no VM". Kernel threads (`kthread`) have no exe, no cmdline and live in
    /// the root cgroup: nothing is read for them.
    pub fn read(&mut self, pid_dir: &Path, comm: Arc<str>, kthread: bool) -> ProcessInfo {
        self.cgroup_read = false;
        if kthread {
            return ProcessInfo::new(comm, Arc::clone(&self.empty));
        }
        let exe = match std::fs::read_link(pid_dir.join("exe")) {
            Ok(target) => Arc::from(target.to_string_lossy()),
            Err(_) => Arc::clone(&self.empty),
        };
        let container = match read_limited(&pid_dir.join("cgroup"), &mut self.cgroup) {
            Ok(()) => {
                self.cgroup_read = true;
                parse_cgroup(&String::from_utf8_lossy(&self.cgroup))
                    .map(|m| m.into_container(&self.empty))
            }
            Err(_) => None,
        };
        let vm = match read_limited(&pid_dir.join("cmdline"), &mut self.cmdline) {
            Ok(()) => vm_from_cmdline(&self.cmdline),
            Err(_) => None,
        };
        let mut info = ProcessInfo::new(comm, exe);
        info.container = container;
        info.vm = vm;
        info
    }

    /// The `/proc/<pid>/cgroup` content of the latest [`read`](Self::read), when it was
    /// readable: what finds the container's cgroup counter
    /// ([`CgroupUsage::register`](super::cgroup_usage::CgroupUsage::register)).
    pub fn cgroup_text(&self) -> Option<&[u8]> {
        self.cgroup_read.then_some(self.cgroup.as_slice())
    }
}

/// Reads `path` into `buf` (cleared first), at most [`AUX_LIMIT`] bytes.
fn read_limited(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let file = File::open(path)?;
    file.take(AUX_LIMIT as u64).read_to_end(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7e4d8a6f0b5c2e9d1a7f3b8c4e6d0a2f9b1c7e5d3a8f6b4c2e0d9a7f";

    #[test]
    fn reads_exe_container_and_vm_and_degrades_per_part() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
        std::fs::write(
            p.join("cmdline"),
            b"/usr/bin/qemu-system-x86_64\0-name\0guest=vm1\0",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin/qemu-system-x86_64", p.join("exe")).unwrap();
        let mut r = StaticReader::new();
        let info = r.read(p, Arc::from("qemu"), false);
        assert_eq!(&*info.exe, "/usr/bin/qemu-system-x86_64");
        assert_eq!(&*info.container.unwrap().id, ID);
        assert_eq!(&*info.vm.unwrap().name, "vm1");
        assert!(r.cgroup_text().is_some_and(|t| t.starts_with(b"0::")));

        let gone = p.join("nothing");
        let info = r.read(&gone, Arc::from("x"), false);
        assert_eq!((&*info.exe, info.container, info.vm), ("", None, None));
        assert_eq!(r.cgroup_text(), None);
        let info = r.read(p, Arc::from("kworker/0:1"), true);
        assert_eq!((&*info.exe, info.container.is_none()), ("", true));
    }
}
