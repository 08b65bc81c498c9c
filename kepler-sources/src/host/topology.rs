//! Which socket each logical CPU belongs to: the one CPU-to-socket map of kepler-rs.
//!
//! Read from sysfs (`devices/system/cpu/cpuN/topology/physical_package_id`), the kernel's
//! own topology, rather than from `/proc/cpuinfo`'s `physical id`: the two agree on x86,
//! but ARM and POWER kernels print no `physical id` in cpuinfo while sysfs still gives a
//! two-socket Ampere or POWER server its two packages. The model (one estimated zone per
//! socket), the procfs source and kepler-bpf (per-CPU times for the per-socket split) all
//! read it here, so a CPU is never on one socket for the meter and another for the split.

use std::collections::BTreeSet;
use std::path::Path;

/// CPU numbers at or above this are refused: per-CPU state is indexed by CPU number, and
/// Linux supports far fewer (NR_CPUS is at most 8192 today), so a larger one is garbage.
pub const MAX_CPUS: usize = 1 << 16;

/// The socket of each logical CPU, by CPU number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuTopology {
    socket: Vec<Option<u32>>,
}

impl CpuTopology {
    /// Reads `<sysfs_root>/devices/system/cpu/cpu*/topology/physical_package_id`. An
    /// unreadable tree (many VMs, fake trees) gives an empty topology; a CPU whose id is
    /// unreadable or -1 (some VMs and ARM boards) has no socket.
    pub fn read(sysfs_root: &Path) -> CpuTopology {
        let dir = sysfs_root.join("devices").join("system").join("cpu");
        let mut socket: Vec<Option<u32>> = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            tracing::debug!(dir = %dir.display(), "no CPU topology, assuming one socket");
            return CpuTopology { socket };
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(cpu) = name
                .to_str()
                .and_then(|n| n.strip_prefix("cpu"))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < MAX_CPUS)
            else {
                continue;
            };
            let id_path = entry.path().join("topology").join("physical_package_id");
            let id = std::fs::read_to_string(&id_path)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(|v| u32::try_from(v).ok());
            if socket.len() <= cpu {
                socket.resize(cpu + 1, None);
            }
            socket[cpu] = id;
        }
        CpuTopology { socket }
    }

    /// A topology from a per-CPU list (index = CPU number), for tests and embedders.
    pub fn from_sockets(socket: Vec<Option<u32>>) -> CpuTopology {
        CpuTopology { socket }
    }

    /// The socket of `cpu`, when known.
    pub fn socket_of(&self, cpu: u32) -> Option<u32> {
        self.socket.get(cpu as usize).copied().flatten()
    }

    /// The distinct sockets, ascending; empty when none is known.
    pub fn sockets(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self.socket.iter().flatten().copied().collect();
        set.into_iter().collect()
    }

    /// Whether CPUs sit on more than one socket: only then is a per-socket split of
    /// activity worth reading per-CPU times for.
    pub fn is_multi_socket(&self) -> bool {
        let mut known = self.socket.iter().flatten();
        known.next().is_some_and(|first| known.any(|s| s != first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_packages_and_ignores_unknown_and_junk() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = |n: &str, id: &str| {
            let t = dir.path().join(format!("devices/system/cpu/{n}/topology"));
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("physical_package_id"), id).unwrap();
        };
        assert_eq!(CpuTopology::read(dir.path()), CpuTopology::default());
        cpu("cpu0", "0\n");
        cpu("cpu2", "1\n");
        cpu("cpu3", "-1\n");
        cpu("cpufreq", "7\n");
        cpu("cpu99999999", "7\n");
        let t = CpuTopology::read(dir.path());
        assert_eq!(t.socket_of(0), Some(0));
        assert_eq!(t.socket_of(1), None);
        assert_eq!(t.socket_of(2), Some(1));
        assert_eq!(t.socket_of(3), None);
        assert_eq!(t.sockets(), vec![0, 1]);
        assert!(t.is_multi_socket());
        assert!(!CpuTopology::from_sockets(vec![Some(0), None, Some(0)]).is_multi_socket());
    }
}
