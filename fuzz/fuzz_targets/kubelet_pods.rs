//! Fuzzes `kepler_k8s::parse_pods`, the decoder of the kubelet's `GET /pods` answer (issue 14):
//! any body a kubelet, a proxy or an attacker on the node network sends gives records or a
//! decode error, never a panic. A record always has a UID, and its container ids are
//! non-empty and listed once (the cache indexes them as keys).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = kepler_k8s::parse_pods(data, "node-a") {
        for r in &records {
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
});
