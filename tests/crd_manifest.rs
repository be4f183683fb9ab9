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

/// `kubectl explain` is all most users read: every field of the CRD has a
/// description, and none sends the reader to a document they do not have.
#[test]
fn every_field_is_described_without_pointing_elsewhere() {
    fn walk(path: &str, schema: &serde_json::Value, found: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        let description = object
            .get("description")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if description.is_empty() {
            found.push(format!("{path}: no description"));
        }
        let lower = description.to_lowercase();
        for pointer in ["design", "the docs", "see docs", "documentation"] {
            if lower.contains(pointer) {
                found.push(format!("{path}: points to {pointer:?}: {description}"));
            }
        }
        for (name, property) in object
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .into_iter()
            .flatten()
        {
            walk(&format!("{path}.{name}"), property, found);
        }
        if let Some(items) = object.get("items") {
            walk(&format!("{path}[]"), items, found);
        }
    }
    let crd =
        serde_json::to_value(<keyrotor::crd::AccessKeyPolicy as kube::CustomResourceExt>::crd())
            .expect("the CRD serializes");
    let mut found = Vec::new();
    for version in crd["spec"]["versions"].as_array().expect("versions") {
        let schema = &version["schema"]["openAPIV3Schema"];
        for part in ["spec", "status"] {
            walk(part, &schema["properties"][part], &mut found);
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
