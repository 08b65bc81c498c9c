/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types activity.bpf.c touches, written by hand instead of a generated
 * vmlinux.h (which is megabytes). Every struct carries preserve_access_index, so each
 * field access is a CO-RE relocation that libbpf resolves against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux) at load time: the layouts below only need the right field
 * names and types, not the right offsets or sizes.
 */
#ifndef KEPLER_VMLINUX_MIN_H
#define KEPLER_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef short unsigned int __u16;
typedef unsigned int __u32;
typedef long long unsigned int __u64;
typedef signed char __s8;
typedef short int __s16;
typedef int __s32;
typedef long long int __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef int pid_t;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_QUEUE = 22,
};

/* map_flags: the array can be mmapped by user space. */
#define BPF_F_MMAPABLE (1U << 10)

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

typedef struct {
	int counter;
} atomic_t;

struct kernfs_node {
	u64 id;
	const char *name;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct signal_struct {
	atomic_t live;
	u64 cutime;
	u64 cstime;
} __attribute__((preserve_access_index));

struct sched_entity {
	u64 sum_exec_runtime;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int flags;
	struct sched_entity se;
	pid_t pid;
	pid_t tgid;
	u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct css_set *cgroups;
	struct signal_struct *signal;
	char comm[16];
} __attribute__((preserve_access_index));

#endif
