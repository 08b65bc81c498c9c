//! The eBPF activity source of kepler-rs.
//!
//! A CO-RE BPF program (`src/bpf/activity.bpf.c`, loaded with libbpf-rs against the running
//! kernel's BTF) charges every context switch's outgoing on-CPU time to its process, with
//! the process's cgroup id, last CPU and identity. User space reads the maps once per tick
//! and fills the same [`kepler_core::ActivityFrame`] as the procfs source (issue 14): the
//! same processes (every live one, sleepers included), pids, start times and CPU-time
//! totals, comm/exe/container/VM through kepler-sources' host layer, each process's parent,
//! reaped children's time and last CPU, containers' cgroup counters, node and per-CPU
//! totals from `/proc/stat`. The engine cannot tell the two apart except by precision: time
//! is exact to the nanosecond rather than sampled in clock ticks, and processes that live
//! between two ticks are still counted.
//!
//! ```text
//!  sched_switch ──► acct[procs[tgid]] += slice     (kernel, every switch, via a per-CPU cache)
//!  sched_process_exit ──► acct[slot].flags |= EXITED, ppid, children_ns (kernel, once per process)
//!  BpfActivity::read ──► walk the mmapped acct slots + cpu_slots ──► FrameBuilder ──► ActivityFrame
//!                        free the slots of processes reported exited twice
//! ```
//!
//! The loader needs the `libbpf` feature (libelf and zlib at build time; clang only to
//! rebuild the object, see `build.rs`). Without it this crate offers its pure parts:
//! [`FrameBuilder`], the map layouts and the privilege check that names what is missing.
//! Issue: kepler-rs #5.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod frame;
#[cfg(feature = "libbpf")]
mod loader;
mod privilege;
mod raw;
#[cfg(feature = "libbpf")]
mod slots;

pub use error::Error;
pub use frame::{FrameBuilder, Freed, Running};
#[cfg(feature = "libbpf")]
pub use loader::{BpfActivity, BpfOptions, BpfStats, OBJECT_BYTES, OBJECT_ORIGIN};
pub use privilege::{missing, missing_here, Missing};
pub use raw::{
    cgroup_name, CpuSlot, PendingWay, ProcRecord, COMM_LEN, CPU_SLOT_SIZE, PROC_ACCT_SIZE,
    PROC_EXITED, PROC_KTHREAD,
};
