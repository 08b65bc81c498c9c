//! Replays the cargo-fuzz corpora of the procfs parsers as plain tests, so every seed (and
//! every crash input added to a corpus) runs on each `cargo test` without nightly.

mod corpus_support;

use corpus_support::corpus;
use kepler_sources::{parse_cgroup, parse_stat, vm_from_cmdline};

#[test]
fn proc_stat_corpus_replays_without_panic() {
    for (name, data) in corpus("proc_stat") {
        let parsed = parse_stat(&data);
        if let Some(f) = &parsed {
            assert!(!f.comm.chars().any(char::is_control), "{name}");
        }
        match name.as_str() {
            // crash_c1_control_in_comm: U+0083 in the comm, found by cargo-fuzz (issue 14).
            "systemd"
            | "kthread"
            | "comm_parens_newline"
            | "short_until_starttime"
            | "crash_c1_control_in_comm" => {
                assert!(parsed.is_some(), "{name} should parse")
            }
            "truncated" | "empty" | "no_close_paren" | "overflow" | "double_space" => {
                assert!(parsed.is_none(), "{name} should be rejected")
            }
            _ => {}
        }
    }
}

#[test]
fn proc_cgroup_corpus_replays_without_panic() {
    for (name, data) in corpus("proc_cgroup") {
        let found = parse_cgroup(&String::from_utf8_lossy(&data));
        if let Some(m) = &found {
            assert_eq!(m.container_id.len(), 64, "{name}");
        }
        match name.as_str() {
            "docker_cgroupfs"
            | "kubepods_systemd_containerd"
            | "podman_rootless"
            | "kind_nested" => assert!(found.is_some(), "{name} names a container"),
            "crio_conmon" | "host_session" | "uppercase_id" | "garbage" | "empty" => {
                assert!(found.is_none(), "{name} names no container")
            }
            _ => {}
        }
    }
}

#[test]
fn cmdline_vm_corpus_replays_without_panic() {
    for (name, data) in corpus("cmdline_vm") {
        let vm = vm_from_cmdline(&data);
        if let Some(vm) = &vm {
            assert!(!vm.id.is_empty(), "{name}");
        }
        match name.as_str() {
            "libvirt_qemu" | "qemu_kvm_name_only" | "kvm_uuid" => {
                assert!(vm.is_some(), "{name} is a VM")
            }
            "not_qemu" | "qemu_img" | "qemu_no_identity" | "empty" => {
                assert!(vm.is_none(), "{name} is no VM")
            }
            _ => {}
        }
    }
}
