//! The committed CRD under `crds/` is exactly what `keyrotor crd` prints.

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = keyrotor::crd::crd_yaml().expect("the CRD renders");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/accesskeypolicies.keyrotor.dev.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("crds/ holds the CRD");
    assert!(
        committed == generated,
        "crds/accesskeypolicies.keyrotor.dev.yaml is stale: run `cargo run -- crd > crds/accesskeypolicies.keyrotor.dev.yaml`"
    );
}
