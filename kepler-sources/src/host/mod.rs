//! The host layer: every file of the running host that kepler-rs reads for activity and
//! topology, parsed once, with one rule each.
//!
//! - `/proc/stat`: the aggregate line ([`parse_node_cpu`]) and the per-CPU lines
//!   ([`parse_per_cpu`]: a malformed line is skipped and counted, never fatal;
//!   [`push_cpu_times`]: with their sockets, for the per-socket split);
//! - the CPU-to-socket map ([`CpuTopology`], from sysfs only);
//! - `USER_HZ` ([`user_hz`]) and the tick conversions;
//! - `/proc/<pid>/stat` and `schedstat` ([`parse_stat`], [`parse_schedstat`]);
//! - per-process static data ([`StaticReader`]: comm, exe, container from the cgroup, VM
//!   from the command line) and containers' cgroup CPU counters ([`CgroupUsage`]);
//! - `/proc/cpuinfo` ([`read_cpuinfo`], for `kepler_node_cpu_info`);
//! - the I/O-error classification ([`read_error`]) naming the [`Access`] a file needs.
//!
//! The procfs activity source, the model estimator, the RAPL and hwmon meters and
//! kepler-bpf (which depends on this crate without default features) all read through
//! here, so two sources never disagree on what a host file says. Issue 14.

mod cgroup;
mod cgroup_usage;
mod clock;
mod cpuinfo;
mod error;
mod process;
mod stat;
mod topology;
mod vm;

pub use cgroup::{parse_cgroup, CgroupMatch};
pub use cgroup_usage::CgroupUsage;
pub use clock::{boottime_ns_to_ticks, ticks_to_ns, user_hz, DEFAULT_USER_HZ};
pub use cpuinfo::read_cpuinfo;
pub use error::{read_error, Access};
pub use process::{StaticReader, AUX_LIMIT};
pub use stat::{
    parse_node_cpu, parse_per_cpu, parse_schedstat, parse_stat, push_cpu_times, sanitize_comm,
    NodeTicks, StatFields,
};
pub use topology::{CpuTopology, MAX_CPUS};
pub use vm::vm_from_cmdline;

pub(crate) use stat::{comm_matches, parse_stat_raw, parse_u32, RawStat, PF_KTHREAD};
