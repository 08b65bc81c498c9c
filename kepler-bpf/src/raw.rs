//! The map values of `src/bpf/activity.h`, decoded from bytes without `unsafe`.

/// `KEPLER_PROC_EXITED`: every thread of the process has exited.
pub const PROC_EXITED: u32 = 1;
/// `KEPLER_PROC_KTHREAD`: a kernel thread.
pub const PROC_KTHREAD: u32 = 2;
/// `KEPLER_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Size of `struct proc_acct`: one slot of the `acct` array.
pub const PROC_ACCT_SIZE: usize = 64;
/// Offset of `proc_acct.flags`.
pub(crate) const FLAGS_OFFSET: usize = 28;
/// Offset of `proc_acct.tgid` (0 while the slot is free).
pub(crate) const TGID_OFFSET: usize = 56;
/// Size of `struct cpu_slot`.
pub const CPU_SLOT_SIZE: usize = 128;
/// `KEPLER_CACHE_WAYS`.
pub const CACHE_WAYS: usize = 4;

/// One process as the BPF program accounts it: a taken slot of the `acct` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcRecord {
    /// The slot of the `acct` array it was read from.
    pub slot: u32,
    /// Process id (tgid).
    pub tgid: u32,
    /// On-CPU nanoseconds of all its threads since the program was attached.
    pub on_cpu_ns: u64,
    /// The group leader's start time, nanoseconds since boot (`start_boottime`).
    pub start_boottime_ns: u64,
    /// cgroup v2 id of its cgroup when first seen (at exit: the one it ended in).
    pub cgroup_id: u64,
    /// The CPU it last ran on as the program sees it: where it was first seen, then where
    /// it last came to a CPU whose cache did not hold it, then where it exited.
    pub last_cpu: u32,
    /// [`PROC_EXITED`], [`PROC_KTHREAD`].
    pub flags: u32,
    /// The group leader's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// Its parent's tgid when first seen, then at exit (0: unknown).
    pub ppid: u32,
    /// Its reaped children's CPU time in ns, recorded at exit (0 while it lives).
    pub children_ns: u64,
}

impl ProcRecord {
    /// Decodes slot `slot` of the `acct` array; `None` when the value has the wrong size or
    /// the slot is free (tgid 0).
    pub fn decode(slot: u32, value: &[u8]) -> Option<ProcRecord> {
        if value.len() != PROC_ACCT_SIZE {
            return None;
        }
        let tgid = u32_at(value, TGID_OFFSET)?;
        if tgid == 0 {
            return None;
        }
        let comm = value.get(32..32 + COMM_LEN)?.try_into().ok()?;
        Some(ProcRecord {
            slot,
            tgid,
            on_cpu_ns: u64_at(value, 0)?,
            start_boottime_ns: u64_at(value, 8)?,
            cgroup_id: u64_at(value, 16)?,
            last_cpu: u32_at(value, 24)?,
            flags: u32_at(value, FLAGS_OFFSET)?,
            comm,
            ppid: u32_at(value, TGID_OFFSET + 4)?,
            children_ns: u64_at(value, 48)?,
        })
    }

    /// Encodes the slot's value as the kernel stores it (for tests and benchmarks that
    /// fill the array).
    pub fn encode_value(&self) -> [u8; PROC_ACCT_SIZE] {
        let mut v = [0u8; PROC_ACCT_SIZE];
        v[0..8].copy_from_slice(&self.on_cpu_ns.to_ne_bytes());
        v[8..16].copy_from_slice(&self.start_boottime_ns.to_ne_bytes());
        v[16..24].copy_from_slice(&self.cgroup_id.to_ne_bytes());
        v[24..28].copy_from_slice(&self.last_cpu.to_ne_bytes());
        v[28..32].copy_from_slice(&self.flags.to_ne_bytes());
        v[32..48].copy_from_slice(&self.comm);
        v[48..56].copy_from_slice(&self.children_ns.to_ne_bytes());
        v[56..60].copy_from_slice(&self.tgid.to_ne_bytes());
        v[60..64].copy_from_slice(&self.ppid.to_ne_bytes());
        v
    }

    /// Whether every thread of the process has exited.
    pub fn exited(&self) -> bool {
        self.flags & PROC_EXITED != 0
    }

    /// The comm up to its first NUL.
    pub fn comm_bytes(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        self.comm.get(..end).unwrap_or_default()
    }
}

/// A way of a CPU's cache: a process charged on that CPU, its slot, and the time not yet
/// added to the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingWay {
    /// The process (0: an empty way).
    pub tgid: u32,
    /// Its slot of the `acct` array.
    pub slot: u32,
    /// Nanoseconds charged here and not yet added to the slot.
    pub ns: u64,
    /// The process's leader `start_boottime`: with the tgid, which process the way names
    /// (its slot may have been freed and taken by another since).
    pub start_boottime_ns: u64,
}

/// One CPU's state (`struct cpu_slot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuSlot {
    /// The running thread's `se.sum_exec_runtime` when it was switched in.
    pub start_runtime_ns: u64,
    /// Its process (0: idle).
    pub tgid: u32,
    /// The thread (0: idle, or no switch seen yet on this CPU).
    pub pid: u32,
    /// Charges lost on this CPU because no slot was free.
    pub dropped: u64,
    /// Processes charged on this CPU with time not yet added to their slots.
    pub pending: [PendingWay; CACHE_WAYS],
    /// Switches out of a thread whose switch in the program did not see (slices lost).
    pub unseen: u32,
}

impl CpuSlot {
    /// Decodes one CPU's value; `None` when it has the wrong size.
    pub fn decode(value: &[u8]) -> Option<CpuSlot> {
        if value.len() != CPU_SLOT_SIZE {
            return None;
        }
        Some(CpuSlot {
            start_runtime_ns: u64_at(value, 0)?,
            tgid: u32_at(value, 8)?,
            pid: u32_at(value, 12)?,
            dropped: u64_at(value, 16)?,
            pending: [0, 1, 2, 3].map(|w| PendingWay {
                tgid: u32_at(value, 24 + 4 * w).unwrap_or(0),
                slot: u32_at(value, 40 + 4 * w).unwrap_or(0),
                ns: u64_at(value, 56 + 8 * w).unwrap_or(0),
                start_boottime_ns: u64_at(value, 88 + 8 * w).unwrap_or(0),
            }),
            unseen: u32_at(value, 124)?,
        })
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The name of a cgroup from a `cgroups` map value: up to the first NUL.
pub fn cgroup_name(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    value.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_record_round_trips() {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"busy");
        let r = ProcRecord {
            slot: 9,
            tgid: 42,
            on_cpu_ns: 123_456_789,
            start_boottime_ns: 9_000_000_000,
            cgroup_id: 77,
            last_cpu: 3,
            flags: PROC_EXITED,
            comm,
            ppid: 1,
            children_ns: 5,
        };
        let back = ProcRecord::decode(9, &r.encode_value()).unwrap();
        assert_eq!(back, r);
        assert!(back.exited());
        assert_eq!(back.comm_bytes(), b"busy");
    }

    #[test]
    fn free_slots_and_wrong_sizes_are_rejected() {
        assert_eq!(ProcRecord::decode(0, &[0; 40]), None);
        assert_eq!(
            ProcRecord::decode(0, &[0; PROC_ACCT_SIZE]),
            None,
            "tgid 0: free"
        );
        assert_eq!(CpuSlot::decode(&[0; 16]), None);
        let mut v = [0u8; CPU_SLOT_SIZE];
        v[12..16].copy_from_slice(&7u32.to_ne_bytes());
        v[28..32].copy_from_slice(&42u32.to_ne_bytes());
        v[44..48].copy_from_slice(&5u32.to_ne_bytes());
        v[64..72].copy_from_slice(&900u64.to_ne_bytes());
        v[96..104].copy_from_slice(&31u64.to_ne_bytes());
        v[124..128].copy_from_slice(&3u32.to_ne_bytes());
        let slot = CpuSlot::decode(&v).unwrap();
        assert_eq!(slot.pid, 7);
        assert_eq!(slot.unseen, 3);
        assert_eq!(
            slot.pending[1],
            PendingWay {
                tgid: 42,
                slot: 5,
                ns: 900,
                start_boottime_ns: 31,
            }
        );
    }
}
