//! Replays the `proc_stat_cpu` and `cpuinfo` fuzz corpora (issue 14) as plain tests: the node
//! line of `/proc/stat` and `/proc/cpuinfo` as real kernels and hostile files write them, each
//! checked against the contract its fuzz target asserts, and the named seeds against what
//! they must decode to.

mod corpus_support;

use corpus_support::corpus;
use kepler_sources::{parse_node_cpu, read_cpuinfo, NodeTicks};

#[test]
fn proc_stat_cpu_corpus_replays_without_panic() {
    for (name, data) in corpus("proc_stat_cpu") {
        let ticks = parse_node_cpu(&data);
        if let Some(t) = ticks {
            assert!(t.busy <= t.total, "{name}: {t:?}");
        }
        let expect = match name.as_str() {
            // user+nice+system busy, plus idle.
            "old_kernel_four_fields" => Some(NodeTicks {
                busy: 150,
                total: 1150,
            }),
            // guest and guest_nice (9, 10) are inside user and nice; fields past them ignored.
            "tabs_extra_fields" => Some(NodeTicks {
                busy: 1 + 2 + 3 + 6 + 7 + 8,
                total: 36,
            }),
            "saturating" => Some(NodeTicks {
                busy: u64::MAX,
                total: u64::MAX,
            }),
            "typical" | "typical_with_per_cpu" | "crlf" => {
                assert!(ticks.is_some(), "{name} should parse");
                continue;
            }
            "three_fields" | "overflow" | "per_cpu_first" | "negative" | "tab_after_cpu"
            | "empty" => None,
            _ => continue,
        };
        assert_eq!(ticks, expect, "{name}");
    }
}

#[test]
fn cpuinfo_corpus_replays_without_panic() {
    let root = tempfile::tempdir().unwrap();
    for (name, data) in corpus("cpuinfo") {
        std::fs::write(root.path().join("cpuinfo"), &data).unwrap();
        let cpus = read_cpuinfo(root.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let processor_lines = String::from_utf8_lossy(&data)
            .lines()
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(k, _)| k.trim() == "processor")
            })
            .count();
        assert!(cpus.len() <= processor_lines, "{name}: {cpus:?}");
        let summary: Vec<(u32, &str, &str)> = cpus
            .iter()
            .map(|c| (c.processor, c.vendor_id.as_str(), c.model_name.as_str()))
            .collect();
        match name.as_str() {
            "arm64" => assert_eq!(summary, [(0, "0x41", "0xd0c"), (1, "0x41", "0xd0c")]),
            "arm_processors_first" => assert_eq!(summary.len(), 3, "{summary:?}"),
            "power9" => assert_eq!(
                summary,
                [(0, "", "POWER9 (architected), altivec supported")]
            ),
            "x86_two_cpus" => assert_eq!(summary.len(), 2, "{summary:?}"),
            "empty" => assert!(summary.is_empty()),
            _ => {}
        }
    }
}
