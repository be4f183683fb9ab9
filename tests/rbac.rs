//! Least privilege, proven: the chart's RBAC applied on the real API server, the
//! operator running with nothing but its ServiceAccount's token, and the
//! controller scenarios create, rotate, conflict and Restore passing with it.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use keyrotor::crd::{AccessKeyPolicy, RotateOutcome};
use kube::Api;
use serde_json::json;
use support::{
    ACCOUNT, API_KEY, EMAIL, OTHER_ACCOUNT, ROTATE, Scenario, apply_chart_rbac_objects,
    chart_operator_args, condition, has_handled, is_ready,
};

/// The chart's RBAC (leader election on) applied with `extra` flags.
fn apply_chart_rbac(s: &Scenario, release_ns: &str, extra: &[&str]) -> String {
    let mut args = vec!["--set", "leaderElection.enabled=true"];
    args.extend_from_slice(extra);
    apply_chart_rbac_objects(s.plane, release_ns, &args)
}

/// A kubeconfig holding only the chart ServiceAccount's token.
async fn service_account_kubeconfig(s: &Scenario, release_ns: &str) -> (String, kube::Client) {
    support::service_account_kubeconfig(s.plane, release_ns, "kr-keyrotor").await
}

fn assert_no_denial(s: &Scenario) {
    let log = s.operator_log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "the operator was denied something:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_mode_passes_create_rotate_conflict_and_restore_with_only_its_own_token() {
    let mut s = Scenario::new("rbac").await;
    let release_ns = s.other_namespace("rbac-release").await;
    let watch = format!("watchNamespaces={{{}}}", s.namespace);
    let rbac = apply_chart_rbac(&s, &release_ns, &["--set", &watch]);
    // Cluster-wide only the reviews behind /metrics (tokenreviews and
    // subjectaccessreviews are cluster-scoped) and the metrics-reader role.
    for doc in rbac
        .split("\n---")
        .filter(|d| d.contains("\nkind: ClusterRole\n"))
    {
        assert!(
            doc.contains("-metrics-auth\n") || doc.contains("-metrics-reader\n"),
            "namespaced mode must not grant anything cluster-wide:\n{doc}"
        );
    }
    let (kubeconfig, sa_client) = service_account_kubeconfig(&s, &release_ns).await;

    s.apply_token_secret().await;
    s.start_operator_with(
        &chart_operator_args(&release_ns, "rbac"),
        &[("KUBECONFIG", &kubeconfig)],
    );

    // create
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    // rotate
    s.annotate("p", json!({ROTATE: "r1"})).await;
    let p = s
        .wait_for("p", "r1 handled", |p| has_handled(p, "r1"))
        .await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::Rotated)
    );
    // conflict
    s.create_policy("second", json!({})).await;
    let second = s.wait_ready_reason("second", "Conflict").await;
    assert!(
        condition(&second, "Ready")
            .is_some_and(|c| c.message.contains("managed by policy p in this namespace"))
    );
    // Restore
    s.create_policy(
        "restore",
        json!({"accountId": OTHER_ACCOUNT, "deletionPolicy": "Restore"}),
    )
    .await;
    s.wait_for("restore", "Ready", is_ready).await;
    assert_eq!(
        s.sim()
            .account(OTHER_ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        30
    );
    s.policies()
        .delete("restore", &Default::default())
        .await
        .expect("delete");
    s.wait_gone("restore").await;
    assert_eq!(
        s.sim()
            .account(OTHER_ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        42
    );
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 1);
    // Events were published with the token's rights.
    let events = s.events("p").await;
    assert!(events.iter().any(|(r, _)| r == "Rotated"), "{events:?}");
    assert_no_denial(&s);

    // Negative: outside its namespaces it can read nothing.
    let other = s.other_namespace("rbac-other").await;
    let admin_secrets: Api<Secret> = Api::namespaced(s.client.clone(), &other);
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "elsewhere"}, "stringData": {"apiToken": "x"}}),
    )
    .expect("secret");
    admin_secrets
        .create(&Default::default(), &secret)
        .await
        .expect("admin creates a secret");
    let denied = |result: Result<_, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 403);
    let sa_secrets: Api<Secret> = Api::namespaced(sa_client.clone(), &other);
    assert!(
        denied(sa_secrets.get("elsewhere").await.map(|_| ())),
        "read a Secret outside its namespaces"
    );
    assert!(denied(
        sa_secrets.list(&Default::default()).await.map(|_| ())
    ));
    let sa_policies: Api<AccessKeyPolicy> = Api::namespaced(sa_client.clone(), &other);
    assert!(
        denied(sa_policies.list(&Default::default()).await.map(|_| ())),
        "listed policies outside its namespaces"
    );
    let all_policies: Api<AccessKeyPolicy> = Api::all(sa_client.clone());
    assert!(
        denied(all_policies.list(&Default::default()).await.map(|_| ())),
        "listed policies cluster-wide"
    );
    let all_secrets: Api<Secret> = Api::all(sa_client);
    assert!(
        denied(all_secrets.list(&Default::default()).await.map(|_| ())),
        "listed secrets cluster-wide"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_works_with_the_cluster_role_and_nothing_more() {
    let mut s = Scenario::new("rbac-cluster").await;
    let release_ns = s.other_namespace("rbac-cluster-release").await;
    let fullname = format!("fullnameOverride=kr-{release_ns}");
    // A per-test ClusterRole name, so parallel runs do not share one.
    let rbac = apply_chart_rbac(
        &s,
        &release_ns,
        &[
            "--set",
            &fullname,
            "--set",
            "serviceAccount.name=kr-keyrotor",
        ],
    );
    assert!(rbac.contains("kind: ClusterRole"));
    let (kubeconfig, _) = service_account_kubeconfig(&s, &release_ns).await;
    s.apply_token_secret().await;
    // All namespaces, narrowed by a label so other tests' policies are left alone.
    let selector = format!("rbac-test={}", s.namespace);
    let mut args = vec!["--watch-namespaces", "", "--label-selector", &selector];
    args.extend(chart_operator_args(&release_ns, "rbac-cluster"));
    s.start_operator_with(&args, &[("KUBECONFIG", &kubeconfig)]);
    s.create_policy("p", json!({})).await;
    s.policies()
        .patch(
            "p",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"rbac-test": s.namespace}}})),
        )
        .await
        .expect("label");
    s.wait_for("p", "Ready", is_ready).await;
    assert_no_denial(&s);
}

fn is_forbidden<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

/// Waits until the simulator sees an account read made with `credential`;
/// returns how long that took.
async fn wait_for_credential_use(s: &Scenario, credential: &str) -> Duration {
    let started = std::time::Instant::now();
    loop {
        if s.sim()
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.credential == credential && r.status == 200)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < support::WAIT,
            "the operator never used credential {credential}:\n{}",
            s.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces the data of Secret `cloudflare-api` in place (same object, new
/// resourceVersion): from the scenario's token to the legacy global key.
async fn switch_to_global_key(s: &Scenario) {
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.namespace);
    secrets
        .patch(
            "cloudflare-api",
            &Default::default(),
            &kube::api::Patch::Merge(json!({
                "data": {"apiToken": null},
                "stringData": {"apiKey": API_KEY, "email": EMAIL},
            })),
        )
        .await
        .expect("patch secret");
}

/// The chart's default RBAC with the operator's own token: Secrets are read by
/// name only (no list, no watch), and a changed Secret is still used from the
/// next drift check on, without any Secret watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_secrets_are_only_read_by_name_and_a_changed_one_is_used_at_the_next_drift_check()
 {
    let mut s = Scenario::new("rbac-secrets").await;
    let release_ns = s.other_namespace("rbac-secrets-release").await;
    let watch = format!("watchNamespaces={{{}}}", s.namespace);
    apply_chart_rbac(&s, &release_ns, &["--set", &watch]);
    let (kubeconfig, sa_client) = service_account_kubeconfig(&s, &release_ns).await;
    s.apply_token_secret().await;

    let sa_secrets: Api<Secret> = Api::namespaced(sa_client.clone(), &s.namespace);
    assert!(
        sa_secrets.get("cloudflare-api").await.is_ok(),
        "the operator must read its Secret by name"
    );
    assert!(
        is_forbidden(sa_secrets.list(&Default::default()).await),
        "the operator's token may list Secrets"
    );
    let watch_params = kube::api::WatchParams::default();
    assert!(
        is_forbidden(sa_secrets.watch(&watch_params, "0").await.map(|_| ())),
        "the operator's token may watch Secrets"
    );

    s.start_operator_with(
        &chart_operator_args(&release_ns, "rbac-secrets"),
        &[("KUBECONFIG", &kubeconfig)],
    );
    let drift = Duration::from_secs(3);
    s.create_policy("p", json!({"driftCheckInterval": "3s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    wait_for_credential_use(&s, "scenario").await;
    switch_to_global_key(&s).await;
    let picked_up = wait_for_credential_use(&s, "legacy").await;
    // One drift check: the interval, its 10 % jitter, and a pass's own time.
    assert!(
        picked_up < drift.mul_f64(1.1) + Duration::from_millis(700),
        "the changed Secret was used after {picked_up:?}\n{}",
        s.operator_log()
    );
    println!("changed Secret used after {picked_up:?} (drift check 3 s, no Secret watch)");
    assert_no_denial(&s);
    s.assert_log_has_no_secret();
}

/// With `secretWatch.enabled=true` the chart grants list/watch on Secrets and
/// a changed Secret is used at once, long before the next drift check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_secret_watch_enabled_a_changed_secret_is_used_at_once() {
    let mut s = Scenario::new("rbac-watch").await;
    let release_ns = s.other_namespace("rbac-watch-release").await;
    let watch = format!("watchNamespaces={{{}}}", s.namespace);
    apply_chart_rbac(
        &s,
        &release_ns,
        &["--set", &watch, "--set", "secretWatch.enabled=true"],
    );
    let (kubeconfig, _) = service_account_kubeconfig(&s, &release_ns).await;
    s.apply_token_secret().await;
    let mut args = chart_operator_args(&release_ns, "rbac-watch").to_vec();
    args.extend(["--watch-secrets", "true"]);
    s.start_operator_with(&args, &[("KUBECONFIG", &kubeconfig)]);
    s.create_policy("p", json!({"driftCheckInterval": "1h"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    wait_for_credential_use(&s, "scenario").await;
    switch_to_global_key(&s).await;
    let picked_up = wait_for_credential_use(&s, "legacy").await;
    assert!(
        picked_up < Duration::from_secs(3),
        "the Secret watch did not start a pass: {picked_up:?}\n{}",
        s.operator_log()
    );
    println!("changed Secret used after {picked_up:?} (drift check 1 h, Secret watch on)");
    assert_no_denial(&s);
    s.assert_log_has_no_secret();
}
