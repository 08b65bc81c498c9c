//! Replays the `kubelet_pods` fuzz corpus (issue 14) as a plain test: every body a kubelet's
//! `/pods` could answer gives pod records or a decode error, never a panic, with the contract
//! the fuzz target checks (a UID per record, container ids non-empty and listed once), and
//! the named seeds decode to what a poll must keep.

use kepler_k8s::{parse_pods, PodRecord};

// The corpus reader shared by every `fuzz_corpus_*` replay (kepler-sources owns it).
#[path = "../../kepler-sources/tests/corpus_support/mod.rs"]
mod corpus_support;

/// Every file of `fuzz/corpus/kubelet_pods`, sorted by name (at least five).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let files = corpus_support::corpus("kubelet_pods");
    assert!(
        files.len() >= 5,
        "fuzz/corpus/kubelet_pods holds too few seeds"
    );
    files
}

fn check(records: &[PodRecord]) {
    for r in records {
        assert!(!r.pod.uid.is_empty(), "{r:?}");
        for (i, (id, _)) in r.containers.iter().enumerate() {
            assert!(!id.is_empty(), "{r:?}");
            assert!(
                r.containers[..i].iter().all(|(seen, _)| seen != id),
                "{r:?}"
            );
        }
    }
}

#[test]
fn kubelet_pods_corpus_replays_without_panic() {
    for (name, data) in corpus() {
        let parsed = parse_pods(&data, "node-a");
        if let Ok(records) = &parsed {
            check(records);
        }
        let summary = |p: &Result<Vec<PodRecord>, _>| -> Vec<(String, usize)> {
            p.as_ref()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .iter()
                .map(|r| (r.pod.name.to_string(), r.containers.len()))
                .collect()
        };
        match name.as_str() {
            // The running id, the restarted one and the init container.
            "running_pod.json" => assert_eq!(summary(&parsed), [("web-7d9f".into(), 3)]),
            // No nodeName (the kubelet's own static pods) is kept; the mirror keeps its node UID.
            "static_pod_hash.json" => {
                let records = parsed.as_ref().unwrap();
                assert_eq!(records.len(), 2);
                assert_eq!(records[0].pod.node_uid, None, "hash equal to the UID");
                assert_eq!(records[1].pod.node_uid.as_deref(), Some("d41d8cd98f"));
            }
            // Another node's pod and the pods without a UID are dropped.
            "other_node_and_no_uid.json" | "empty_list.json" | "empty_object.json" => {
                assert!(summary(&parsed).is_empty(), "{name}")
            }
            // One id under three spellings is one container; an empty id is none.
            "duplicate_ids.json" => assert_eq!(summary(&parsed), [(String::new(), 2)]),
            "wrong_type.json" | "truncated.json" | "html" | "deep_nesting.json" => {
                assert!(parsed.is_err(), "{name} should not decode")
            }
            _ => {}
        }
    }
}
