// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-process on-CPU time, charged at every context switch.
 *
 * Hot path (tp_btf/sched_switch, every switch on every CPU): one inlined per-CPU array
 * lookup and an add to a 4-way per-CPU cache of the processes last charged there; only a
 * miss costs a hash lookup (and an atomic add for the evicted way). Time is not read from a clock:
 * the slice is the outgoing thread's se.sum_exec_runtime (which the scheduler has just
 * updated) minus its value when the thread was switched in, kept per CPU. That saves the
 * clock read and makes the result the scheduler's own number, the one
 * /proc/<pid>/schedstat and cgroup cpu.stat report. Everything
 * else (comm, start time, cgroup id and name) is read only when a process is first seen,
 * at exec and at exit. Task fields are read by direct dereference of the BTF-typed
 * pointers the tracepoint hands us (CO-RE relocated through vmlinux_min.h), not by
 * BPF_CORE_READ chains of bpf_probe_read_kernel calls, which cost twice as much here
 * (issue 5).
 *
 * Storage: each process owns a slot of the `acct` array, which user space mmaps and reads
 * straight from memory each tick, with no system call and whatever the number of
 * processes (a batch read of a hash map costs the kernel ~100 ns per entry and walks every
 * bucket: 1-2 ms at 10,000 processes). The `procs` hash maps a tgid to its slot for this
 * program only. Free slots wait in the `free_slots` queue: user space fills it at start and
 * gives a slot back once it has reported the process's exit.
 *
 * Exit: when the last thread of a process exits, its slot is flagged EXITED (taken if it
 * ran without ever being switched out). Its final slice is still charged at its final
 * context switch; user space reports the slot on two ticks, time pending in the per-CPU
 * caches included, and frees it after that, so short-lived processes are never lost.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "activity.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000
#define NO_SLOT 0xffffffffu
/* Keeps the compiler from moving stores across it (publishing a slot's owner last). */
#define compiler_barrier() asm volatile("" ::: "memory")

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_slot);
} cpu_slots SEC(".maps");

/* The capacities of procs, acct and free_slots are set by user space before load
 * (BpfOptions::max_processes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, u32);
	__type(value, u32);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32768);
	__type(key, u32);
	__type(value, struct proc_acct);
} acct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 32768);
	__type(value, u32);
} free_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, struct cgroup_name);
} cgroups SEC(".maps");

/* Scratch for a new cgroup name: too big for the BPF stack next to a proc_acct. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cgroup_name);
} name_scratch SEC(".maps");

static __always_inline void count_drop(void)
{
	u32 zero = 0;
	struct cpu_slot *slot = bpf_map_lookup_elem(&cpu_slots, &zero);

	if (slot)
		slot->dropped++;
}

/* Records the name of a cgroup id the first time a process of it is seen. */
static __always_inline void remember_cgroup(struct cgroup *cg, u64 id)
{
	u32 zero = 0;
	struct cgroup_name *scratch;

	if (bpf_map_lookup_elem(&cgroups, &id))
		return;
	scratch = bpf_map_lookup_elem(&name_scratch, &zero);
	if (!scratch)
		return;
	if (bpf_probe_read_kernel_str(scratch->name, sizeof(scratch->name), cg->kn->name) < 0)
		return;
	bpf_map_update_elem(&cgroups, &id, scratch, BPF_NOEXIST);
}

/* The slot of the process `tgid` whose leader started at `start`, or NO_SLOT. A slot
 * that was freed, or belongs to an older process of a reused pid, does not match. */
static __always_inline u32 find(u32 tgid, u64 start)
{
	u32 *slot = bpf_map_lookup_elem(&procs, &tgid);
	struct proc_acct *a;
	u32 s;

	if (!slot)
		return NO_SLOT;
	s = *slot;
	a = bpf_map_lookup_elem(&acct, &s);
	if (!a || a->tgid != tgid || a->start_boottime != start)
		return NO_SLOT;
	return s;
}

/* Takes a free slot for the process of `task`, fills it and maps its tgid to it. Returns
 * the slot, or NO_SLOT (counted as dropped) when none is free. */
static __noinline u32 insert(struct task_struct *task, u32 tgid, u32 flags)
{
	struct task_struct *leader = task->group_leader;
	struct cgroup *cg = task->cgroups->dfl_cgrp;
	struct proc_acct *a;
	u32 slot, found;

	if (bpf_map_pop_elem(&free_slots, &slot)) {
		count_drop();
		return NO_SLOT;
	}
	a = bpf_map_lookup_elem(&acct, &slot);
	if (!a) {
		count_drop();
		return NO_SLOT;
	}
	/* Seen for the first time already dead: it exited before the program was attached,
	 * and no exit event will flag it. */
	if (task->signal->live.counter == 0)
		flags |= KEPLER_PROC_EXITED;
	if (leader->flags & PF_KTHREAD)
		flags |= KEPLER_PROC_KTHREAD;
	a->on_cpu_ns = 0;
	a->children_ns = 0;
	if (flags & KEPLER_PROC_EXITED)
		a->children_ns = task->signal->cutime + task->signal->cstime;
	a->start_boottime = leader->start_boottime;
	a->cgroup_id = cg->kn->id;
	a->last_cpu = bpf_get_smp_processor_id();
	a->ppid = task->real_parent->tgid;
	a->flags = flags;
	bpf_probe_read_kernel(a->comm, sizeof(a->comm), leader->comm);
	compiler_barrier();
	a->tgid = tgid;
	if (bpf_map_update_elem(&procs, &tgid, &slot, BPF_NOEXIST) == 0) {
		remember_cgroup(cg, a->cgroup_id);
		return slot;
	}
	/* Another CPU mapped the process first (two of its threads switched out at once):
	 * give this slot back and use that one. A mapping left by an older process of this
	 * pid is replaced. */
	found = find(tgid, a->start_boottime);
	if (found != NO_SLOT) {
		a->tgid = 0;
		bpf_map_push_elem(&free_slots, &slot, 0);
		return found;
	}
	if (bpf_map_update_elem(&procs, &tgid, &slot, BPF_ANY)) {
		a->tgid = 0;
		bpf_map_push_elem(&free_slots, &slot, 0);
		count_drop();
		return NO_SLOT;
	}
	remember_cgroup(cg, a->cgroup_id);
	return slot;
}

/* Adds `ns` to `slot` if it still belongs to the process (`tgid`, `start`): user space
 * frees a slot once it has reported the exit, even while a way here still names it. */
static __always_inline void flush(u32 tgid, u64 start, u32 slot, u64 ns)
{
	struct proc_acct *a;

	if (!tgid || !ns)
		return;
	a = bpf_map_lookup_elem(&acct, &slot);
	if (a && a->tgid == tgid && a->start_boottime == start)
		__sync_fetch_and_add(&a->on_cpu_ns, ns);
}

/* A miss in the per-CPU cache: find (or take) the process's slot, evict one way (adding
 * its pending time to its slot) and cache the process there with `delta` pending. */
static __noinline int charge_slow(struct cpu_slot *slot, struct task_struct *prev, u32 tgid,
				  u64 delta)
{
	u32 way = slot->victim & (KEPLER_CACHE_WAYS - 1);
	u64 start = prev->group_leader->start_boottime;
	u32 s = find(tgid, start);

	struct proc_acct *a;

	if (s == NO_SLOT) {
		s = insert(prev, tgid, 0);
		if (s == NO_SLOT)
			return 0;
	} else {
		/* A miss: the process came (back) to this CPU. */
		a = bpf_map_lookup_elem(&acct, &s);
		if (a)
			a->last_cpu = bpf_get_smp_processor_id();
	}
	slot->victim = way + 1;
	flush(slot->cache_tgid[way], slot->cache_start[way], slot->cache_slot[way],
	      slot->cache_ns[way]);
	slot->cache_tgid[way] = tgid;
	slot->cache_slot[way] = s;
	slot->cache_ns[way] = delta;
	slot->cache_start[way] = start;
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	u32 zero = 0;
	struct cpu_slot *slot = bpf_map_lookup_elem(&cpu_slots, &zero);
	u64 start, delta;
	u32 pid, tgid;

	if (!slot)
		return 0;
	start = slot->start_runtime;
	pid = slot->pid;
	slot->start_runtime = next->se.sum_exec_runtime;
	slot->pid = next->pid;
	slot->tgid = next->tgid;
	/* pid 0: the idle task, or the first switch seen on this CPU. */
	if (!pid)
		return 0;
	/* The thread going out is not the one we saw come in: its slice has no start. */
	if (prev->pid != pid) {
		slot->unseen++;
		return 0;
	}
	delta = prev->se.sum_exec_runtime - start;
	tgid = prev->tgid;
	if (slot->cache_tgid[0] == tgid) {
		slot->cache_ns[0] += delta;
		return 0;
	}
	if (slot->cache_tgid[1] == tgid) {
		slot->cache_ns[1] += delta;
		return 0;
	}
	if (slot->cache_tgid[2] == tgid) {
		slot->cache_ns[2] += delta;
		return 0;
	}
	if (slot->cache_tgid[3] == tgid) {
		slot->cache_ns[3] += delta;
		return 0;
	}
	return charge_slow(slot, prev, tgid, delta);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	struct task_struct *leader = task->group_leader;
	struct proc_acct *a;
	struct cgroup *cg;
	u32 tgid, s;

	/* Only the last thread ends the process; live is decremented before this tracepoint. */
	if (task->signal->live.counter != 0)
		return 0;
	tgid = task->tgid;
	s = find(tgid, leader->start_boottime);
	if (s == NO_SLOT) {
		insert(task, tgid, KEPLER_PROC_EXITED);
		return 0;
	}
	a = bpf_map_lookup_elem(&acct, &s);
	if (!a)
		return 0;
	bpf_probe_read_kernel(a->comm, sizeof(a->comm), leader->comm);
	/* The process may have moved since it was first seen: keep the cgroup it ends in. */
	cg = task->cgroups->dfl_cgrp;
	a->cgroup_id = cg->kn->id;
	remember_cgroup(cg, a->cgroup_id);
	a->last_cpu = bpf_get_smp_processor_id();
	/* Re-parented since it was first seen if its parent exited: the reaper's cutime grows. */
	a->ppid = task->real_parent->tgid;
	/* What its parent's cutime grows by besides its own time, once it is reaped. */
	a->children_ns = task->signal->cutime + task->signal->cstime;
	a->flags |= KEPLER_PROC_EXITED;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task)
{
	u32 s = find(task->tgid, task->group_leader->start_boottime);
	struct proc_acct *a;

	if (s == NO_SLOT)
		return 0;
	a = bpf_map_lookup_elem(&acct, &s);
	/* The new program's name; user space reloads exe and command line when it changes. */
	if (a)
		bpf_probe_read_kernel(a->comm, sizeof(a->comm), task->comm);
	return 0;
}
