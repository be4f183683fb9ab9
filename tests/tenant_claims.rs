//! Shared clusters, account ownership: a tenant who may only create policies
//! and Secrets in its own namespace cannot take another team's account by
//! naming it first, cannot learn who manages an account by guessing its id,
//! and deployments that split a cluster see each other's claims. On the real
//! API server, with the operator as a process and the simulator.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use keyrotor::controller::claim_lease_name;
use keyrotor_cloudflare_sim::CredentialSeed;
use kube::Api;
use serde_json::json;
use support::{ACCOUNT, OTHER_ACCOUNT, ROTATE, Scenario, has_handled, is_ready, ready_message};

/// Makes `s`'s helpers act in `namespace`; returns the namespace they acted in.
fn enter(s: &mut Scenario, namespace: &str) -> String {
    std::mem::replace(&mut s.namespace, namespace.to_owned())
}

/// The Ready reason of policy `name`.
fn reason(p: &keyrotor::crd::AccessKeyPolicy) -> String {
    support::condition(p, "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatters_without_working_credentials_never_block_the_accounts_owner() {
    let mut s = Scenario::new("claims-victim").await;
    let home = s.namespace.clone();
    let squat = s.other_namespace("claims-squat").await;
    // The squatter's own token reads only its own account.
    s.sim().upsert_credential(
        CredentialSeed::token("squatter", "squatter-token").for_accounts([OTHER_ACCOUNT]),
    );

    // Squatters first (older creationTimestamp): one with no Secret, one with
    // a token that cannot read the account, one Observe policy (switched to
    // Manage later) with that token too.
    enter(&mut s, &squat);
    s.apply_secret("squat", &[("apiToken", "squatter-token")])
        .await;
    s.create_policy(
        "no-secret",
        json!({"credentialsRef": {"name": "nothing-here"}}),
    )
    .await;
    s.create_policy("wrong-token", json!({"credentialsRef": {"name": "squat"}}))
        .await;
    s.create_policy(
        "observer",
        json!({"credentialsRef": {"name": "squat"}, "managementPolicy": "Observe"}),
    )
    .await;
    enter(&mut s, &home);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    s.apply_token_secret().await;
    s.start_operator_with(&["--watch-namespaces", &format!("{home},{squat}")], &[]);
    s.create_policy(
        "prod",
        json!({"rotationCooldown": "0s", "keyRotationIntervalDays": 60}),
    )
    .await;
    let prod = s
        .wait_for("prod", "Ready despite older squatters", is_ready)
        .await;
    assert!(is_ready(&prod), "{}", ready_message(&prod));
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        60,
        "the owner fixed the drift"
    );

    // The Observe squatter switches to Manage: still cannot read the account.
    enter(&mut s, &squat);
    s.patch_spec("observer", json!({"managementPolicy": "Manage"}))
        .await;
    let observer = s
        .wait_for("observer", "refused by Cloudflare", |p| {
            p.status.as_ref().and_then(|st| st.observed_generation) == p.metadata.generation
                && !is_ready(p)
        })
        .await;
    assert_ne!(
        reason(&observer),
        "Conflict",
        "{}",
        ready_message(&observer)
    );
    let no_secret = s.wait_ready_reason("no-secret", "SecretNotFound").await;
    assert!(!ready_message(&no_secret).contains(&home));
    enter(&mut s, &home);

    // The owner still rotates on request, once.
    s.annotate("prod", json!({ROTATE: "r1"})).await;
    s.wait_for("prod", "r1 handled", |p| has_handled(p, "r1"))
        .await;
    assert_eq!(s.calls("POST").len(), 1, "one rotation for one request");

    // Re-created by a GitOps `Replace=true` sync: it is the youngest policy
    // now, and still owns the account.
    s.policies()
        .delete("prod", &Default::default())
        .await
        .expect("delete");
    s.wait_gone("prod").await;
    s.create_policy(
        "prod",
        json!({"rotationCooldown": "0s", "keyRotationIntervalDays": 45}),
    )
    .await;
    s.wait_for("prod", "Ready after re-creation", |p| {
        is_ready(p)
            && p.status.as_ref().and_then(|st| st.observed_generation) == p.metadata.generation
    })
    .await;
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        45
    );
    // The squatters made no write at all.
    let squatter_writes = s
        .calls("PUT")
        .into_iter()
        .chain(s.calls("POST"))
        .filter(|c| c.credential == "squatter")
        .count();
    assert_eq!(squatter_writes, 0);
    s.assert_log_has_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_is_named_only_to_policies_in_its_own_namespace() {
    let mut s = Scenario::new("claims-owner").await;
    let home = s.namespace.clone();
    let other = s.other_namespace("claims-guess").await;
    s.apply_token_secret().await;
    s.start_operator_with(&["--watch-namespaces", &format!("{home},{other}")], &[]);
    s.create_policy("secret-project", json!({})).await;
    s.wait_for("secret-project", "Ready", is_ready).await;

    // Same namespace: the owner is named.
    s.create_policy("second", json!({})).await;
    let second = s.wait_ready_reason("second", "Conflict").await;
    assert!(
        ready_message(&second).contains("managed by policy secret-project in this namespace"),
        "{}",
        ready_message(&second)
    );

    // Another namespace, with a token that reads the account: not named.
    enter(&mut s, &other);
    s.apply_token_secret().await;
    s.create_policy("guess", json!({})).await;
    let guess = s.wait_ready_reason("guess", "Conflict").await;
    let message = ready_message(&guess);
    assert!(
        message.contains("a policy in another namespace"),
        "{message}"
    );
    assert!(
        !message.contains(&home) && !message.contains("secret-project"),
        "the owner leaked: {message}"
    );
    let events = s.events("guess").await;
    assert!(
        events
            .iter()
            .all(|(_, note)| !note.contains(&home) && !note.contains("secret-project")),
        "{events:?}"
    );
    enter(&mut s, &home);
    // The operator's log (for the platform team) names it.
    s.operator
        .as_ref()
        .expect("operator")
        .wait_for_log(&format!("{home}/secret-project"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_whose_credentials_keep_failing_loses_the_account_after_the_claim_lapses() {
    let mut s = Scenario::new("claims-lapse").await;
    s.apply_token_secret().await;
    s.apply_secret("second-token", &[("apiToken", support::TOKEN)])
        .await;
    s.start_operator_with(&["--account-claim-duration", "3s"], &[]);
    s.create_policy("owner", json!({})).await;
    s.wait_for("owner", "Ready", is_ready).await;
    s.create_policy(
        "heir",
        json!({"credentialsRef": {"name": "second-token"}, "keyRotationIntervalDays": 50}),
    )
    .await;
    s.wait_ready_reason("heir", "Conflict").await;

    // The owner's Secret goes away: it stops renewing.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(s.client.clone(), &s.namespace);
    secrets
        .delete("cloudflare-api", &Default::default())
        .await
        .expect("delete secret");
    s.wait_ready_reason("owner", "SecretNotFound").await;
    s.wait_for("heir", "Ready after the claim lapsed", is_ready)
        .await;
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        50
    );
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.namespace);
    let lease = leases
        .get(&claim_lease_name(ACCOUNT))
        .await
        .expect("claim lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(format!("{}/heir", s.namespace).as_str())
    );
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_split_by_label_selector_see_each_others_claims() {
    let mut s = Scenario::new("claims-shards").await;
    s.apply_token_secret().await;
    s.start_operator_with(
        &[
            "--label-selector",
            "shard=a",
            "--leader-election-lease-name",
            "shard-a",
        ],
        &[],
    );
    let other_shard = s.spawn_operator(
        "shard-b",
        &[
            "--label-selector",
            "shard=b",
            "--leader-election-lease-name",
            "shard-b",
        ],
        &[],
    );
    s.create_policy("in-a", json!({})).await;
    s.policies()
        .patch(
            "in-a",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"shard": "a"}}})),
        )
        .await
        .expect("label");
    s.wait_for("in-a", "Ready", is_ready).await;
    s.create_policy("in-b", json!({"keyRotationIntervalDays": 70}))
        .await;
    s.policies()
        .patch(
            "in-b",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"shard": "b"}}})),
        )
        .await
        .expect("label");
    let in_b = s.wait_ready_reason("in-b", "Conflict").await;
    assert!(
        ready_message(&in_b).contains("managed by policy in-a in this namespace"),
        "{}",
        ready_message(&in_b)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        30,
        "the other shard's operator never wrote"
    );
    drop(other_shard);
}
