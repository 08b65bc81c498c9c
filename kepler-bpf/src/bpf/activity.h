/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Map layouts shared by activity.bpf.c and kepler-bpf's Rust mirror (src/raw.rs). */
#ifndef KEPLER_ACTIVITY_H
#define KEPLER_ACTIVITY_H

#define KEPLER_COMM_LEN 16
#define KEPLER_CGROUP_NAME_LEN 192

/* proc_acct.flags */
#define KEPLER_PROC_EXITED 1u  /* every thread of the process has exited */
#define KEPLER_PROC_KTHREAD 2u /* a kernel thread (PF_KTHREAD) */

/* One process (thread group): a slot of the `acct` array, which user space mmaps and reads
 * without a system call. */
struct proc_acct {
	/* On-CPU nanoseconds of all its threads since the program was attached, as the
	 * scheduler counts them (se.sum_exec_runtime). */
	u64 on_cpu_ns;
	/* The group leader's start_boottime (ns since boot): with the tgid, its identity. */
	u64 start_boottime;
	/* cgroup v2 id (the kernfs inode number of its cgroup directory). */
	u64 cgroup_id;
	/* The CPU it last ran on, as far as the program sees: set when it is first seen, at
	 * every cache miss (it came to a CPU whose cache did not hold it) and at exit. */
	u32 last_cpu;
	u32 flags;
	char comm[KEPLER_COMM_LEN];
	/* Its reaped children's CPU time (signal->cutime + cstime, ns) at exit; 0 while it
	 * lives (user space reads a live process's from procfs). */
	u64 children_ns;
	/* The process (tgid) this slot belongs to; 0 while the slot is free. Written last when
	 * a slot is taken, so user space never reads a half-filled one. */
	u32 tgid;
	/* The parent process (real_parent's tgid) when first seen, then at exit: the one
	 * whose reaped-children time grows by this process's. */
	u32 ppid;
};

#define KEPLER_CACHE_WAYS 4

/* Per-CPU state of the `cpu_slots` array (one entry). */
struct cpu_slot {
	/* The switched-in thread's se.sum_exec_runtime when it was switched in. */
	u64 start_runtime;
	/* Its process (0: idle). */
	u32 tgid;
	/* The thread itself (0: idle, or no switch seen yet on this CPU). */
	u32 pid;
	/* Charges lost because no `acct` slot was free, on this CPU. */
	u64 dropped;
	/* The processes last charged on this CPU, their `acct` slots, and their time not yet
	 * added there: most switches go between the same few processes, and adding to this
	 * cache costs far less than a hash lookup and an atomic add. A way is flushed to its
	 * slot when evicted; user space adds what is still pending here when it reads. With
	 * the tgid, the leader's start_boottime names the process, so a way left by a process
	 * whose slot was freed and taken again never adds to the new owner. */
	u32 cache_tgid[KEPLER_CACHE_WAYS];
	u32 cache_slot[KEPLER_CACHE_WAYS];
	u64 cache_ns[KEPLER_CACHE_WAYS];
	u64 cache_start[KEPLER_CACHE_WAYS];
	u32 victim;
	/* Switches out of a thread whose switch in was not seen here (its slice is lost).
	 * Rare: seen under heavy fork churn, from threads of this VM's init, cause unknown. */
	u32 unseen;
};

/* The value of the `cgroups` hash, keyed by cgroup id: the cgroup directory's name. */
struct cgroup_name {
	char name[KEPLER_CGROUP_NAME_LEN];
};

#endif
