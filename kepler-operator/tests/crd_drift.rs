//! deploy/operator/crd.yaml is generated from the Rust types; this fails when they drift.
//! Regenerate: `KEPLER_UPDATE_CRD=1 cargo test -p kepler-operator --test crd_drift`.

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/operator/crd.yaml");
    let generated = kepler_operator::crd_yaml();
    if std::env::var("KEPLER_UPDATE_CRD").is_ok_and(|v| v == "1") {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        checked_in == generated,
        "deploy/operator/crd.yaml differs from the PowerMonitor types; regenerate with \
         KEPLER_UPDATE_CRD=1 cargo test -p kepler-operator --test crd_drift"
    );
}
