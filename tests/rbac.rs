//! Least privilege, proven: the chart's RBAC applied on the real API server, the
//! operator running with nothing but its ServiceAccount's token, and the
//! controller scenarios create, rotate, conflict and Restore passing with it.

mod support;

use std::{process::Command, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use keyrotor::crd::{AccessKeyPolicy, RotateOutcome};
use kube::Api;
use serde_json::json;
use support::{
    ACCOUNT, OTHER_ACCOUNT, ROTATE, Scenario, condition, has_handled, is_ready, kubectl_with_input,
};

/// Renders the chart and applies only its RBAC and ServiceAccount objects.
fn apply_chart_rbac(s: &Scenario, release_ns: &str, extra: &[&str]) -> String {
    let output = Command::new(s.plane.tools_dir().join("helm"))
        .args(["template", "kr"])
        .arg(keyrotor_testenv::workspace_root().join("charts/keyrotor"))
        .args([
            "--namespace",
            release_ns,
            "--kube-version",
            "1.36.3",
            "--set",
            "crds.enabled=false",
            "--set",
            "leaderElection.enabled=true",
        ])
        .args(extra)
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = String::from_utf8_lossy(&output.stdout).into_owned();
    let rbac: Vec<&str> = manifest
        .split("\n---")
        .filter(|doc| {
            [
                "kind: ServiceAccount",
                "kind: Role",
                "kind: RoleBinding",
                "kind: ClusterRole",
                "kind: ClusterRoleBinding",
            ]
            .iter()
            .any(|k| doc.contains(&format!("\n{k}\n")))
        })
        .collect();
    let rbac = rbac.join("\n---");
    let applied = kubectl_with_input(s.plane, &["apply", "--server-side", "-f", "-"], &rbac);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    rbac
}

/// A kubeconfig holding only the chart ServiceAccount's token.
async fn service_account_kubeconfig(s: &Scenario, release_ns: &str) -> (String, kube::Client) {
    let token = s
        .plane
        .service_account_token(release_ns, "kr-keyrotor", Duration::from_secs(3600))
        .await
        .expect("token");
    let path = s.plane.dir().join(format!("{release_ns}-sa-kubeconfig"));
    s.plane
        .kubeconfig_for_token(&token, &path)
        .expect("kubeconfig");
    let client = keyrotor_testenv::client_from_kubeconfig(&path)
        .await
        .expect("client");
    (path.to_string_lossy().into_owned(), client)
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
    let release_ns = s
        .plane
        .create_namespace("rbac-release")
        .await
        .expect("namespace");
    let watch = format!("watchNamespaces={{{}}}", s.namespace);
    let rbac = apply_chart_rbac(&s, &release_ns, &["--set", &watch]);
    assert!(
        !rbac.contains("kind: ClusterRole"),
        "namespaced mode must not grant anything cluster-wide"
    );
    let (kubeconfig, sa_client) = service_account_kubeconfig(&s, &release_ns).await;

    s.apply_token_secret().await;
    s.start_operator_with(
        &[
            "--leader-election",
            "true",
            "--leader-election-namespace",
            &release_ns,
            "--claims-namespace",
            &release_ns,
            "--identity",
            "rbac",
        ],
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
    let other = s
        .plane
        .create_namespace("rbac-other")
        .await
        .expect("namespace");
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
    let release_ns = s
        .plane
        .create_namespace("rbac-cluster-release")
        .await
        .expect("namespace");
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
    args.extend([
        "--leader-election",
        "true",
        "--leader-election-namespace",
        &release_ns,
        "--claims-namespace",
        &release_ns,
    ]);
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
