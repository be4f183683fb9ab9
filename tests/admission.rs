//! The CRD on a real kube-apiserver: it installs and is Established, the example
//! is accepted, kubectl shows the printer columns and applies server-side, and
//! invalid policies are rejected at admission with a message naming the field.

mod support;

use keyrotor::crd::AccessKeyPolicy;
use kube::{
    api::{Api, Patch, PatchParams, PostParams},
    core::DynamicObject,
};
use serde_json::{Value, json};
use support::{ACCOUNT, ROTATE, api_message, dynamic_api, policy_object, spec_with, valid_spec};

fn without(field: &str) -> Value {
    let mut spec = valid_spec();
    spec.as_object_mut().expect("object").remove(field);
    spec
}

/// Creates a raw object, returning the API server's error message if refused.
async fn create(api: &Api<DynamicObject>, object: Value) -> Result<(), String> {
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(api_message)
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
            spec_with("keyRotationIntervalDays", json!(20)),
            "spec.keyRotationIntervalDays",
        ),
        (
            "interval-366",
            spec_with("keyRotationIntervalDays", json!(366)),
            "spec.keyRotationIntervalDays",
        ),
        (
            "interval-fraction",
            spec_with("keyRotationIntervalDays", json!(30.5)),
            "spec.keyRotationIntervalDays",
        ),
        (
            "interval-string",
            spec_with("keyRotationIntervalDays", json!("30")),
            "spec.keyRotationIntervalDays",
        ),
        (
            "account-short",
            spec_with("accountId", json!("023e105f4ecef8ad9ca31a8372d0c35")),
            "spec.accountId",
        ),
        (
            "account-long",
            spec_with("accountId", json!("023e105f4ecef8ad9ca31a8372d0c3531")),
            "spec.accountId",
        ),
        (
            "account-upper",
            spec_with("accountId", json!("023E105F4ECEF8AD9CA31A8372D0C353")),
            "spec.accountId",
        ),
        (
            "account-nonhex",
            spec_with("accountId", json!("023e105f4ecef8ad9ca31a8372d0c35z")),
            "spec.accountId",
        ),
        (
            "no-credentials",
            without("credentialsRef"),
            "spec.credentialsRef",
        ),
        (
            "empty-secret-name",
            spec_with("credentialsRef", json!({"name": ""})),
            "spec.credentialsRef.name",
        ),
        (
            "bad-mode",
            spec_with("managementPolicy", json!("Takeover")),
            "spec.managementPolicy",
        ),
        (
            "bad-deletion",
            spec_with("deletionPolicy", json!("Delete")),
            "spec.deletionPolicy",
        ),
        (
            "drift-not-duration",
            spec_with("driftCheckInterval", json!("ten minutes")),
            "spec.driftCheckInterval",
        ),
        (
            "drift-zero",
            spec_with("driftCheckInterval", json!("0s")),
            "spec.driftCheckInterval",
        ),
        (
            "drift-negative",
            spec_with("driftCheckInterval", json!("-5m")),
            "spec.driftCheckInterval",
        ),
        (
            "drift-days",
            spec_with("driftCheckInterval", json!("1d")),
            "spec.driftCheckInterval",
        ),
        (
            "cooldown-not-duration",
            spec_with("rotationCooldown", json!("a week")),
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
            spec_with("suspend", json!("yes")),
            "spec.suspend",
        ),
    ];
    for (name, spec, field) in &cases {
        let message = create(&api, policy_object(name, spec.clone()))
            .await
            .expect_err(&format!("{name} must be rejected"));
        assert!(
            message.contains(field),
            "{name}: message does not name {field}: {message}"
        );
    }
    // The valid one goes in, with the server's defaults filled in.
    create(&api, policy_object("valid", valid_spec()))
        .await
        .expect("valid policy");
    let typed: Api<AccessKeyPolicy> =
        Api::namespaced(plane.admin_client().await.expect("client"), &namespace);
    let stored = typed.get("valid").await.expect("stored");
    assert_eq!(stored.spec.drift_check_interval.as_str(), "10m");
    assert_eq!(stored.spec.rotation_cooldown.as_str(), "168h");
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
    create(&api, policy_object("p", valid_spec()))
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
            "NAME", "ACCOUNT", "INTERVAL", "LAST", "ROTATION", "NEXT", "ROTATION", "PLANNED",
            "ROTATION", "READY", "AGE"
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

// ---- Hostile policies: refused, or stored with the hostile part pruned ---------------

enum Outcome {
    /// Refused; the message contains every one of these.
    Rejected(&'static [&'static str]),
    /// Accepted; the stored object passes this check (described).
    Stored(&'static str, fn(&Value) -> bool),
}

#[tokio::test]
async fn hostile_policies_are_refused_or_pruned_by_the_api_server() {
    let plane = keyrotor_testenv::shared().await;
    let namespace = plane.create_namespace("hostile-adm").await.expect("ns");
    let client = plane.admin_client().await.expect("client");
    let api = dynamic_api(client.clone(), &namespace);
    let long_name = "n".repeat(254);
    let cases: Vec<(String, Value, Outcome)> = vec![
        // Unknown fields are pruned (the CRD is structural, no preserve-unknown-fields).
        (
            "unknown-spec-field".into(),
            policy_object(
                "unknown-spec-field",
                spec_with("keyRotationIntervalDay", json!(7)),
            ),
            Outcome::Stored("spec.keyRotationIntervalDay pruned", |o| {
                o["spec"].get("keyRotationIntervalDay").is_none()
                    && o["spec"]["keyRotationIntervalDays"] == 30
            }),
        ),
        (
            "unknown-top-field".into(),
            {
                let mut o = policy_object("unknown-top-field", valid_spec());
                o["extra"] = json!({"x": 1});
                o
            },
            Outcome::Stored("top-level extra pruned", |o| o.get("extra").is_none()),
        ),
        (
            "credentials-ref-namespace".into(),
            policy_object(
                "credentials-ref-namespace",
                spec_with(
                    "credentialsRef",
                    json!({"name": "cloudflare-api", "namespace": "kube-system", "key": "x"}),
                ),
            ),
            Outcome::Stored(
                "credentialsRef.namespace/key pruned: a Secret is only ever read from the policy's own namespace",
                |o| o["spec"]["credentialsRef"] == json!({"name": "cloudflare-api"}),
            ),
        ),
        (
            "status-on-create".into(),
            {
                let mut o = policy_object("status-on-create", valid_spec());
                o["status"] =
                    json!({"lastHandledRotateRequest": "r1", "pendingRotation": {"request": "r9"}});
                o
            },
            Outcome::Stored("status dropped on create (status subresource)", |o| {
                o.get("status").is_none()
            }),
        ),
        (
            "null-mode".into(),
            policy_object("null-mode", spec_with("managementPolicy", Value::Null)),
            Outcome::Stored("null with a default is defaulted", |o| {
                o["spec"]["managementPolicy"] == "Manage"
            }),
        ),
        (
            "interval-float-whole".into(),
            policy_object(
                "interval-float-whole",
                spec_with("keyRotationIntervalDays", json!(30.0)),
            ),
            Outcome::Stored("30.0 is the integer 30", |o| {
                o["spec"]["keyRotationIntervalDays"] == 30
            }),
        ),
        (
            "cooldown-zero".into(),
            policy_object("cooldown-zero", spec_with("rotationCooldown", json!("0s"))),
            Outcome::Stored("0s cooldown is allowed", |o| {
                o["spec"]["rotationCooldown"] == "0s"
            }),
        ),
        // Refused.
        (
            "huge-account".into(),
            policy_object(
                "huge-account",
                spec_with("accountId", json!("a".repeat(1 << 20))),
            ),
            Outcome::Rejected(&["spec.accountId", "Too long"]),
        ),
        (
            "huge-secret-name".into(),
            policy_object(
                "huge-secret-name",
                spec_with("credentialsRef", json!({"name": "s".repeat(254)})),
            ),
            Outcome::Rejected(&["spec.credentialsRef.name", "Too long"]),
        ),
        (
            "secret-name-upper-underscore".into(),
            policy_object(
                "secret-name-upper-underscore",
                spec_with("credentialsRef", json!({"name": "Cloudflare_API"})),
            ),
            Outcome::Rejected(&["spec.credentialsRef.name", "should match", "[a-z0-9]"]),
        ),
        (
            "secret-name-path".into(),
            policy_object(
                "secret-name-path",
                spec_with("credentialsRef", json!({"name": "../kube-system/token"})),
            ),
            Outcome::Rejected(&["spec.credentialsRef.name", "should match"]),
        ),
        (
            "secret-name-leading-dash".into(),
            policy_object(
                "secret-name-leading-dash",
                spec_with("credentialsRef", json!({"name": "-cloudflare"})),
            ),
            Outcome::Rejected(&["spec.credentialsRef.name", "should match"]),
        ),
        (
            "secret-name-dotted".into(),
            policy_object(
                "secret-name-dotted",
                spec_with("credentialsRef", json!({"name": "cloudflare.api-2"})),
            ),
            Outcome::Stored("a dotted DNS-1123 subdomain is a Secret name", |o| {
                o["spec"]["credentialsRef"]["name"] == "cloudflare.api-2"
            }),
        ),
        (
            "huge-duration".into(),
            policy_object(
                "huge-duration",
                spec_with("driftCheckInterval", json!("1".repeat(64) + "s")),
            ),
            Outcome::Rejected(&["spec.driftCheckInterval", "Too long"]),
        ),
        (
            "credentials-ref-string".into(),
            policy_object(
                "credentials-ref-string",
                spec_with("credentialsRef", json!("cloudflare-api")),
            ),
            Outcome::Rejected(&["spec.credentialsRef", "must be of type object"]),
        ),
        (
            "credentials-ref-array".into(),
            policy_object(
                "credentials-ref-array",
                spec_with("credentialsRef", json!([{"name": "a"}])),
            ),
            Outcome::Rejected(&["spec.credentialsRef", "must be of type object"]),
        ),
        (
            "credentials-ref-no-name".into(),
            policy_object(
                "credentials-ref-no-name",
                spec_with("credentialsRef", json!({"key": "apiToken"})),
            ),
            Outcome::Rejected(&["spec.credentialsRef.name", "Required"]),
        ),
        (
            "credentials-ref-name-number".into(),
            policy_object(
                "credentials-ref-name-number",
                spec_with("credentialsRef", json!({"name": 5})),
            ),
            Outcome::Rejected(&["spec.credentialsRef.name", "must be of type string"]),
        ),
        (
            "spec-array".into(),
            policy_object("spec-array", json!([valid_spec()])),
            Outcome::Rejected(&["spec", "must be of type object"]),
        ),
        (
            "spec-missing".into(),
            json!({"apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy", "metadata": {"name": "spec-missing"}}),
            Outcome::Rejected(&["spec", "Required"]),
        ),
        (
            "null-interval".into(),
            policy_object(
                "null-interval",
                spec_with("keyRotationIntervalDays", Value::Null),
            ),
            Outcome::Rejected(&["spec.keyRotationIntervalDays", "Required"]),
        ),
        (
            "interval-int32-overflow".into(),
            policy_object(
                "interval-int32-overflow",
                spec_with("keyRotationIntervalDays", json!(4_294_967_326_i64)),
            ),
            Outcome::Rejected(&["spec.keyRotationIntervalDays", "365"]),
        ),
        (
            "cooldown-negative".into(),
            policy_object(
                "cooldown-negative",
                spec_with("rotationCooldown", json!("-1h")),
            ),
            Outcome::Rejected(&["spec.rotationCooldown", "should match"]),
        ),
        (
            "cooldown-empty".into(),
            policy_object("cooldown-empty", spec_with("rotationCooldown", json!(""))),
            Outcome::Rejected(&["spec.rotationCooldown", "should match"]),
        ),
        (
            "cooldown-number".into(),
            policy_object(
                "cooldown-number",
                spec_with("rotationCooldown", json!(3600)),
            ),
            Outcome::Rejected(&["spec.rotationCooldown", "must be of type string"]),
        ),
        (
            "suspend-number".into(),
            policy_object("suspend-number", spec_with("suspend", json!(1))),
            Outcome::Rejected(&["spec.suspend", "must be of type boolean"]),
        ),
        (
            "mode-lowercase".into(),
            policy_object(
                "mode-lowercase",
                spec_with("managementPolicy", json!("manage")),
            ),
            Outcome::Rejected(&["spec.managementPolicy", "Unsupported value"]),
        ),
        (
            "deletion-lowercase".into(),
            policy_object(
                "deletion-lowercase",
                spec_with("deletionPolicy", json!("restore")),
            ),
            Outcome::Rejected(&["spec.deletionPolicy", "Unsupported value"]),
        ),
        (
            "account-whitespace".into(),
            policy_object(
                "account-whitespace",
                spec_with("accountId", json!(format!(" {}", &ACCOUNT[1..]))),
            ),
            Outcome::Rejected(&["spec.accountId", "should match"]),
        ),
        (
            "account-cyrillic".into(),
            // 32 characters, one of them a Cyrillic "е" that looks like "e".
            policy_object(
                "account-cyrillic",
                spec_with("accountId", json!("023\u{435}105f4ecef8ad9ca31a8372d0c353")),
            ),
            Outcome::Rejected(&["spec.accountId"]),
        ),
        (
            long_name.clone(),
            policy_object(&long_name, valid_spec()),
            Outcome::Rejected(&["metadata.name", "must be no more than 253 characters"]),
        ),
        (
            "Upper-Case".into(),
            policy_object("Upper-Case", valid_spec()),
            Outcome::Rejected(&["metadata.name", "lowercase RFC 1123 subdomain"]),
        ),
        (
            "under_score".into(),
            policy_object("under_score", valid_spec()),
            Outcome::Rejected(&["metadata.name", "lowercase RFC 1123 subdomain"]),
        ),
        (
            "other-namespace".into(),
            {
                let mut o = policy_object("other-namespace", valid_spec());
                o["metadata"]["namespace"] = json!("kube-system");
                o
            },
            Outcome::Rejected(&["does not match the namespace"]),
        ),
        (
            "bad-annotation-key".into(),
            {
                let mut o = policy_object("bad-annotation-key", valid_spec());
                o["metadata"]["annotations"] = json!({"keyrotor.dev/rotate requested": "x"});
                o
            },
            Outcome::Rejected(&["metadata.annotations", "Invalid value"]),
        ),
        (
            "annotations-over-256k".into(),
            {
                let mut o = policy_object("annotations-over-256k", valid_spec());
                o["metadata"]["annotations"] = json!({ROTATE: "x".repeat(300 * 1024)});
                o
            },
            Outcome::Rejected(&["metadata.annotations", "Too long", "262144"]),
        ),
    ];
    let mut report = Vec::new();
    for (name, body, outcome) in &cases {
        let object: DynamicObject = serde_json::from_value(body.clone()).expect("object");
        let result = api.create(&PostParams::default(), &object).await;
        match (outcome, result) {
            (Outcome::Rejected(parts), Err(err)) => {
                let message = api_message(err);
                for part in *parts {
                    assert!(
                        message.contains(part),
                        "{name}: message lacks {part:?}: {message}"
                    );
                }
                report.push(format!("{name}: rejected: {message}"));
            }
            (Outcome::Stored(what, check), Ok(_)) => {
                let stored = api.get(name).await.expect("stored");
                let stored = serde_json::to_value(&stored).expect("json");
                assert!(check(&stored), "{name}: {what}: {stored}");
                report.push(format!("{name}: stored: {what}"));
            }
            (Outcome::Rejected(_), Ok(_)) => panic!("{name} must be rejected"),
            (Outcome::Stored(..), Err(err)) => {
                panic!("{name} must be accepted: {}", api_message(err))
            }
        }
    }
    eprintln!("{}", report.join("\n"));

    // Server-side apply with strict field validation (kubectl's default) refuses them outright.
    let strict = api
        .patch(
            "strict",
            &PatchParams::apply("hostile").validation_strict(),
            &Patch::Apply(policy_object(
                "strict",
                spec_with("keyRotationIntervalDay", json!(7)),
            )),
        )
        .await
        .map(|_| ())
        .map_err(api_message);
    let message = strict.expect_err("strict validation refuses unknown fields");
    assert!(
        message.contains(".spec.keyRotationIntervalDay: field not declared in schema"),
        "{message}"
    );
    // The status cannot be forged through the main resource either.
    let typed: Api<AccessKeyPolicy> = Api::namespaced(client, &namespace);
    typed
        .patch(
            "cooldown-zero",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastHandledRotateRequest": "forged"}})),
        )
        .await
        .expect("patch accepted");
    assert!(
        typed
            .get("cooldown-zero")
            .await
            .expect("get")
            .status
            .is_none(),
        "status written through the main resource"
    );
    // Every status string is bounded: a request value over 253 characters, or a
    // condition message over 32768, is refused even through the status subresource.
    let now = "2026-12-02T00:00:00Z";
    let condition = |message: String| {
        json!({"type": "Ready", "status": "False", "reason": "Reconciling",
            "message": message, "lastTransitionTime": now})
    };
    for (what, status, field) in [
        (
            "handled request",
            json!({"lastHandledRotateRequest": "x".repeat(254)}),
            "status.lastHandledRotateRequest",
        ),
        (
            "pending request",
            json!({"pendingRotation": {"request": "x".repeat(254)}}),
            "status.pendingRotation.request",
        ),
        (
            "condition message",
            json!({"conditions": [condition("m".repeat(32769))]}),
            "status.conditions[0].message",
        ),
        (
            "condition reason",
            json!({"conditions": [{"type": "Ready", "status": "False", "reason": "R".repeat(1025),
                "message": "", "lastTransitionTime": now}]}),
            "status.conditions[0].reason",
        ),
        (
            "condition status",
            json!({"conditions": [{"type": "Ready", "status": "Maybe", "reason": "R",
                "message": "", "lastTransitionTime": now}]}),
            "status.conditions[0].status",
        ),
    ] {
        let message = typed
            .patch_status(
                "cooldown-zero",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map(|_| ())
            .map_err(api_message)
            .expect_err(what);
        assert!(message.contains(field), "{what}: {message}");
    }
    // At the limits they are stored.
    typed
        .patch_status(
            "cooldown-zero",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "lastHandledRotateRequest": "x".repeat(253),
                "conditions": [condition("m".repeat(32768))],
            }})),
        )
        .await
        .expect("status at the limits");
}
