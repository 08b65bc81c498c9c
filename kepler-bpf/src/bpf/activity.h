/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Map layouts shared by activity.bpf.c and kepler-bpf's Rust mirror (src/raw.rs). */
#ifndef KEPLER_ACTIVITY_H
#define KEPLER_ACTIVITY_H

#define KEPLER_COMM_LEN 16
#define KEPLER_CGROUP_NAME_LEN 192

/* proc_acct.flags */
#define KEPLER_PROC_EXITED 1u  /* every thread of the process has exited */
#define KEPLER_PROC_KTHREAD 2u /* a kernel thread (PF_KTHREAD) */

/* One process (thread group): the value of the `procs` hash, keyed by tgid. */
struct proc_acct {
	/* On-CPU nanoseconds of all its threads since the program was attached. */
	u64 on_cpu_ns;
	/* The group leader's start_boottime (ns since boot): with the tgid, its identity. */
	u64 start_boottime;
	/* cgroup v2 id (the kernfs inode number of its cgroup directory). */
	u64 cgroup_id;
	u32 last_cpu;
	u32 flags;
	char comm[KEPLER_COMM_LEN];
};

/* Per-CPU state of the `cpu_slots` array (one entry). */
struct cpu_slot {
	/* bpf_ktime_get_ns() at the last context switch on this CPU; 0 before the first. */
	u64 since;
	/* The process switched in then (0: idle). */
	u32 tgid;
	u32 pad;
	/* Charges lost because `procs` was full, on this CPU. */
	u64 dropped;
};

/* The value of the `cgroups` hash, keyed by cgroup id: the cgroup directory's name. */
struct cgroup_name {
	char name[KEPLER_CGROUP_NAME_LEN];
};

#endif
