//! Containers' cumulative CPU time from the kernel's cgroup accounting.
//!
//! A process that starts and exits between two scans is never listed in `/proc`, but its
//! CPU time stays in its cgroup's counter: `cpu.stat` `usage_usec` on cgroup v2 (present
//! even when the cpu controller is not enabled), `cpuacct.usage` (ns) on v1. The engine
//! charges the part of a container's counter that its listed processes do not explain to
//! the container (issue 4).
//!
//! A container's cgroup is found from the `/proc/<pid>/cgroup` of its first process seen:
//! the path up to the component that names the container, under the cgroupfs root
//! (`<sysfs>/fs/cgroup`), trying a pure v2 mount, the hybrid `unified` v2 mount, and the
//! v1 `cpuacct` hierarchy in that order. The file is kept open and re-read with `pread`;
//! a container is dropped when its file stops reading (cgroup removed) or when no listed
//! process has referenced it for two scans (after its last process exited, one more read
//! takes in the time it used after the last scan).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kepler_core::{ActivityFrame, ContainerInfo, ContainerUsage, Nanos};

/// Which counter a kept file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// cgroup v2 `cpu.stat`: a `usage_usec` line.
    V2CpuStat,
    /// cgroup v1 `cpuacct.usage`: one number, ns.
    V1CpuacctUsage,
}

#[derive(Debug)]
struct Tracked {
    info: ContainerInfo,
    file: File,
    counter: Counter,
    /// The scan that last listed one of its processes.
    referenced: u64,
}

/// The set of containers whose cgroup counters are read each scan.
#[derive(Debug)]
pub struct CgroupUsage {
    root: PathBuf,
    tracked: HashMap<Arc<str>, Tracked>,
    /// Containers whose cgroup could not be found, so the lookup is not retried per scan.
    missing: HashMap<Arc<str>, u64>,
    buf: Vec<u8>,
}

impl CgroupUsage {
    /// Reads cgroups under `root` (a cgroupfs root such as `/sys/fs/cgroup`).
    pub fn new(root: PathBuf) -> CgroupUsage {
        CgroupUsage {
            root,
            tracked: HashMap::new(),
            missing: HashMap::new(),
            buf: vec![0; 1024],
        }
    }

    /// How many containers are tracked.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// Starts tracking `info`'s container, given the content of a member's
    /// `/proc/<pid>/cgroup`. Does nothing when it is tracked already or has no readable
    /// counter.
    pub fn register(&mut self, info: &ContainerInfo, cgroup_file: &[u8], generation: u64) {
        if self.tracked.contains_key(&info.id) || self.missing.contains_key(&info.id) {
            return;
        }
        let content = String::from_utf8_lossy(cgroup_file);
        match find_counter(&self.root, &content, &info.id) {
            Some((file, counter)) => {
                self.tracked.insert(
                    Arc::clone(&info.id),
                    Tracked {
                        info: info.clone(),
                        file,
                        counter,
                        referenced: generation,
                    },
                );
            }
            None => {
                self.missing.insert(Arc::clone(&info.id), generation);
            }
        }
    }

    /// Marks the containers of the processes listed this scan.
    pub fn mark(&mut self, frame: &ActivityFrame, first: usize, generation: u64) {
        if self.tracked.is_empty() {
            return;
        }
        let mut last: Option<&Arc<str>> = None;
        for p in frame.processes.get(first..).unwrap_or_default() {
            let Some(c) = &p.info.container else { continue };
            // Processes of one container often come in a row: skip the repeated lookup.
            if last.is_some_and(|l| Arc::ptr_eq(l, &c.id)) {
                continue;
            }
            last = Some(&c.id);
            if let Some(t) = self.tracked.get_mut(&c.id) {
                t.referenced = generation;
            }
        }
    }

    /// Reads every tracked counter into `out.containers`, dropping containers whose cgroup
    /// is gone or that no process has referenced for two scans.
    pub fn read(&mut self, out: &mut ActivityFrame, generation: u64) {
        let buf = &mut self.buf;
        self.tracked.retain(|_, t| {
            if t.referenced.saturating_add(2) <= generation {
                return false;
            }
            match read_counter(&t.file, t.counter, buf) {
                Some(usage) => {
                    out.containers
                        .push(ContainerUsage::new(t.info.clone(), usage));
                    true
                }
                // The cgroup was removed (ENODEV) or the file is unreadable: forget it; a
                // container that comes back is looked up again.
                None => false,
            }
        });
        // Retry lookups now and then: a cgroup may appear after its first process.
        self.missing
            .retain(|_, since| since.saturating_add(16) > generation);
    }
}

/// Opens the usage counter of the container `id` named in a `/proc/<pid>/cgroup` content.
fn find_counter(root: &Path, content: &str, id: &str) -> Option<(File, Counter)> {
    let mut candidates: Vec<(PathBuf, Counter)> = Vec::new();
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(dir) = container_dir(path.trim(), id) else {
            continue;
        };
        let dir = dir.trim_start_matches('/');
        if hierarchy == "0" && controllers.is_empty() {
            candidates.push((root.join(dir).join("cpu.stat"), Counter::V2CpuStat));
            candidates.push((
                root.join("unified").join(dir).join("cpu.stat"),
                Counter::V2CpuStat,
            ));
        } else if controllers.split(',').any(|c| c == "cpuacct") {
            candidates.push((
                root.join(controllers).join(dir).join("cpuacct.usage"),
                Counter::V1CpuacctUsage,
            ));
        }
    }
    // Prefer v2 (finer: µs, and the unified hierarchy is the one runtimes manage today).
    candidates.sort_by_key(|(_, c)| *c != Counter::V2CpuStat);
    let mut buf = vec![0; 1024];
    candidates.into_iter().find_map(|(path, counter)| {
        let file = File::open(path).ok()?;
        read_counter(&file, counter, &mut buf)?;
        Some((file, counter))
    })
}

/// The path up to and including the component that names container `id`.
fn container_dir<'a>(path: &'a str, id: &str) -> Option<&'a str> {
    let mut end = None;
    let mut offset = 0;
    for comp in path.split('/') {
        let next = offset + comp.len();
        if comp.contains(id) {
            end = Some(next);
        }
        offset = next + 1;
    }
    end.and_then(|e| path.get(..e))
}

/// Reads a counter as cumulative CPU time; `None` when unreadable or malformed.
fn read_counter(file: &File, counter: Counter, buf: &mut Vec<u8>) -> Option<Nanos> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            if buf.len() >= 64 * 1024 {
                break;
            }
            buf.resize(buf.len() * 2, 0);
        }
        let spare = buf.get_mut(len..)?;
        match file.read_at(spare, len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(buf.get(..len)?).ok()?;
    match counter {
        Counter::V2CpuStat => text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|us| Nanos(us.saturating_mul(1000))),
        Counter::V1CpuacctUsage => text.trim().parse::<u64>().ok().map(Nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ID: &str = "3f2a9c1b7e4d8a6f0b5c2e9d1a7f3b8c4e6d0a2f9b1c7e5d3a8f6b4c2e0d9a7f";

    fn info() -> ContainerInfo {
        ContainerInfo::new(ID, "", kepler_core::Runtime::Containerd)
    }

    #[test]
    fn container_dir_stops_at_the_container() {
        let p = format!("/kubepods/pod1/{ID}/sub");
        assert_eq!(container_dir(&p, ID), Some(&p[..p.len() - 4]));
        let p = format!("/system.slice/docker-{ID}.scope");
        assert_eq!(container_dir(&p, ID), Some(p.as_str()));
        assert_eq!(container_dir("/user.slice", ID), None);
    }

    #[test]
    fn reads_v2_hybrid_and_v1_and_forgets_a_vanished_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Hybrid: v2 under unified/, v1 cpuacct. v2 is preferred.
        let v2 = root.join(format!("unified/kubepods/{ID}"));
        fs::create_dir_all(&v2).unwrap();
        fs::write(v2.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        let v1 = root.join(format!("cpu,cpuacct/kubepods/{ID}"));
        fs::create_dir_all(&v1).unwrap();
        fs::write(v1.join("cpuacct.usage"), "999\n").unwrap();
        let cg = format!("3:cpu,cpuacct:/kubepods/{ID}\n0::/kubepods/{ID}/init\n");
        let mut u = CgroupUsage::new(root.to_path_buf());
        u.register(&info(), cg.as_bytes(), 1);
        let mut frame = ActivityFrame::default();
        u.read(&mut frame, 1);
        assert_eq!(frame.containers.len(), 1);
        assert_eq!(frame.containers[0].usage, Nanos(1_500_000));
        // v1 only.
        fs::remove_dir_all(root.join("unified")).unwrap();
        let mut u = CgroupUsage::new(root.to_path_buf());
        u.register(&info(), cg.as_bytes(), 1);
        frame.containers.clear();
        u.read(&mut frame, 1);
        assert_eq!(frame.containers[0].usage, Nanos(999));
        // Not referenced by any process for two scans: dropped.
        frame.containers.clear();
        u.read(&mut frame, 3);
        assert!(frame.containers.is_empty());
        assert_eq!(u.tracked(), 0);
    }

    #[test]
    fn malformed_counter_is_no_sample() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join(ID);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cpu.stat"), "nonsense\n").unwrap();
        let mut u = CgroupUsage::new(dir.path().to_path_buf());
        u.register(&info(), format!("0::/{ID}\n").as_bytes(), 1);
        assert_eq!(u.tracked(), 0);
    }
}
