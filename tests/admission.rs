//! The CRD on a real kube-apiserver: it installs and is Established, the example
//! is accepted, kubectl shows the printer columns and applies server-side, and
//! invalid policies are rejected at admission with a message naming the field.

mod support;

use keyrotor::crd::AccessKeyPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "keyrotor.dev/v1alpha1",
        "kind": "AccessKeyPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn valid_spec() -> Value {
    json!({
        "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
        "keyRotationIntervalDays": 30,
        "credentialsRef": {"name": "cloudflare-api"},
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut spec = valid_spec();
    spec[field] = value;
    spec
}

fn without(field: &str) -> Value {
    let mut spec = valid_spec();
    spec.as_object_mut().expect("object").remove(field);
    spec
}

/// Creates a raw object, returning the API server's error message if refused.
async fn create(api: &Api<kube::core::DynamicObject>, object: Value) -> Result<(), String> {
    let object: kube::core::DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        })
}

fn dynamic_api(client: kube::Client, namespace: &str) -> Api<kube::core::DynamicObject> {
    let resource = kube::core::ApiResource::erase::<AccessKeyPolicy>(&());
    Api::namespaced_with(client, namespace, &resource)
}

#[tokio::test]
async fn invalid_policies_are_rejected_with_a_message_naming_the_field() {
    let plane = keyrotor_testenv::shared().await;
    let namespace = plane
        .create_namespace("admission")
        .await
        .expect("namespace");
    let api = dynamic_api(plane.admin_client().await.expect("client"), &namespace);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "interval-20",
            with("keyRotationIntervalDays", json!(20)),
            "spec.keyRotationIntervalDays",
        ),
        (
            "interval-366",
            with("keyRotationIntervalDays", json!(366)),
            "spec.keyRotationIntervalDays",
        ),
        (
            "interval-fraction",
            with("keyRotationIntervalDays", json!(30.5)),
            "spec.keyRotationIntervalDays",
        ),
        (
            "interval-string",
            with("keyRotationIntervalDays", json!("30")),
            "spec.keyRotationIntervalDays",
        ),
        (
            "account-short",
            with("accountId", json!("023e105f4ecef8ad9ca31a8372d0c35")),
            "spec.accountId",
        ),
        (
            "account-long",
            with("accountId", json!("023e105f4ecef8ad9ca31a8372d0c3531")),
            "spec.accountId",
        ),
        (
            "account-upper",
            with("accountId", json!("023E105F4ECEF8AD9CA31A8372D0C353")),
            "spec.accountId",
        ),
        (
            "account-nonhex",
            with("accountId", json!("023e105f4ecef8ad9ca31a8372d0c35z")),
            "spec.accountId",
        ),
        (
            "no-credentials",
            without("credentialsRef"),
            "spec.credentialsRef",
        ),
        (
            "empty-secret-name",
            with("credentialsRef", json!({"name": ""})),
            "spec.credentialsRef.name",
        ),
        (
            "bad-mode",
            with("managementPolicy", json!("Takeover")),
            "spec.managementPolicy",
        ),
        (
            "bad-deletion",
            with("deletionPolicy", json!("Delete")),
            "spec.deletionPolicy",
        ),
        (
            "drift-not-duration",
            with("driftCheckInterval", json!("ten minutes")),
            "spec.driftCheckInterval",
        ),
        (
            "drift-zero",
            with("driftCheckInterval", json!("0s")),
            "spec.driftCheckInterval",
        ),
        (
            "drift-negative",
            with("driftCheckInterval", json!("-5m")),
            "spec.driftCheckInterval",
        ),
        (
            "drift-days",
            with("driftCheckInterval", json!("1d")),
            "spec.driftCheckInterval",
        ),
        (
            "cooldown-not-duration",
            with("rotationCooldown", json!("a week")),
            "spec.rotationCooldown",
        ),
        ("no-account", without("accountId"), "spec.accountId"),
        (
            "no-interval",
            without("keyRotationIntervalDays"),
            "spec.keyRotationIntervalDays",
        ),
        (
            "suspend-string",
            with("suspend", json!("yes")),
            "spec.suspend",
        ),
    ];
    for (name, spec, field) in &cases {
        let message = create(&api, policy(name, spec.clone()))
            .await
            .expect_err(&format!("{name} must be rejected"));
        assert!(
            message.contains(field),
            "{name}: message does not name {field}: {message}"
        );
    }
    // The valid one goes in, with the server's defaults filled in.
    create(&api, policy("valid", valid_spec()))
        .await
        .expect("valid policy");
    let typed: Api<AccessKeyPolicy> =
        Api::namespaced(plane.admin_client().await.expect("client"), &namespace);
    let stored = typed.get("valid").await.expect("stored");
    assert_eq!(stored.spec.drift_check_interval.as_str(), "10m");
    assert_eq!(stored.spec.rotation_cooldown.as_str(), "168h");
    assert_eq!(cases.len(), 20);
}

#[tokio::test]
async fn changing_the_account_id_is_rejected_on_update() {
    let plane = keyrotor_testenv::shared().await;
    let namespace = plane
        .create_namespace("immutable")
        .await
        .expect("namespace");
    let client = plane.admin_client().await.expect("client");
    let api = dynamic_api(client.clone(), &namespace);
    create(&api, policy("p", valid_spec()))
        .await
        .expect("created");
    let typed: Api<AccessKeyPolicy> = Api::namespaced(client, &namespace);
    let err = typed
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accountId": "ffffffffffffffffffffffffffffffff"}})),
        )
        .await
        .expect_err("immutable");
    let message = match err {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    };
    assert!(
        message.contains("spec.accountId") && message.contains("immutable"),
        "{message}"
    );
    // Other fields stay changeable.
    typed
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"keyRotationIntervalDays": 60}})),
        )
        .await
        .expect("interval is mutable");
}

#[tokio::test]
async fn kubectl_applies_the_example_server_side_and_shows_the_printer_columns() {
    let plane = keyrotor_testenv::shared().await;
    let root = keyrotor_testenv::workspace_root();
    let namespace = plane.create_namespace("kubectl").await.expect("namespace");
    // The example names namespace `security`; apply a copy in the test's own namespace.
    let manifest = std::fs::read_to_string(root.join("examples/policy.yaml"))
        .expect("example")
        .replace("namespace: security", &format!("namespace: {namespace}"));
    let path = plane.dir().join(format!("{namespace}-policy.yaml"));
    std::fs::write(&path, manifest).expect("write copy");
    let apply = plane
        .kubectl()
        .args(["apply", "--server-side", "--field-manager", "gitops", "-f"])
        .arg(&path)
        .output()
        .expect("kubectl runs");
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    assert!(String::from_utf8_lossy(&apply.stdout).contains("serverside-applied"));

    let get = plane
        .kubectl()
        .args(["get", "akp", "-n", &namespace])
        .output()
        .expect("kubectl runs");
    let table = String::from_utf8_lossy(&get.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "ACCOUNT", "INTERVAL", "LAST", "ROTATION", "NEXT", "ROTATION", "READY", "AGE"
        ],
        "{table}"
    );
    assert!(
        table.contains("023e105f4ecef8ad9ca31a8372d0c353") && table.contains("30"),
        "{table}"
    );
    let wide = plane
        .kubectl()
        .args(["get", "keyrotor", "-n", &namespace, "-o", "wide"])
        .output()
        .expect("kubectl runs");
    let wide = String::from_utf8_lossy(&wide.stdout);
    assert!(
        wide.contains("MODE") && wide.contains("Manage"),
        "category and wide columns: {wide}"
    );
    // Re-applying the same manifest is a no-op for the server.
    let again = plane
        .kubectl()
        .args(["apply", "--server-side", "--field-manager", "gitops", "-f"])
        .arg(&path)
        .output()
        .expect("kubectl runs");
    assert!(String::from_utf8_lossy(&again.stdout).contains("serverside-applied"));
}
