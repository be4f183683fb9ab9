//! Who may do what to AccessKeyPolicies, on the real API server: the chart's
//! tenant ClusterRoles (view, edit, rotate) and their aggregation into the
//! built-in roles, and the optional ValidatingAdmissionPolicy that lets only a
//! named group ask for a rotation and caps `keyrotor.dev/*` annotation sizes.
//! People are played by impersonating users and groups with the admin's
//! credentials.

mod support;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::DynamicObject,
};
use serde_json::{Value, json};
use support::{
    FORCE, ROTATE, Scenario, api_message, dynamic_api, is_ready, kubectl_with_input, policy_object,
    valid_spec,
};

/// `helm template` of the chart (cluster mode, no CRDs) under `fullname`.
fn render(s: &Scenario, fullname: &str, extra: &[&str]) -> String {
    let name = format!("fullnameOverride={fullname}");
    let mut args = vec!["--set", &name];
    args.extend_from_slice(extra);
    support::render_chart(s.plane, "keyrotor", &args)
}

/// Applies the rendered documents of the given kinds; returns them.
fn apply_kinds(s: &Scenario, manifest: &str, kinds: &[&str]) -> String {
    support::apply_kinds(s.plane, manifest, kinds)
}

/// A client that acts as `user` in `groups` (impersonated by the admin).
async fn client_as(s: &Scenario, user: &str, groups: &[&str]) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(s.plane.kubeconfig_path()).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    kube::Client::try_from(config).expect("client")
}

/// Binds `user` to ClusterRole `role` in the scenario's namespace.
fn bind(s: &Scenario, user: &str, role: &str) {
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": format!("{user}-{role}"), "namespace": s.namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    });
    let applied = kubectl_with_input(
        s.plane,
        &["apply", "--server-side", "-f", "-"],
        &binding.to_string(),
    );
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// What kube-controller-manager's ClusterRole aggregation controller does (the
/// test control plane runs no controller-manager): the rules of every
/// ClusterRole matching the built-in role's own `aggregationRule` selectors
/// become its rules. The selectors are the API server's bootstrap ones, so
/// this fails when the chart's labels do not match them.
async fn aggregate(client: &kube::Client, name: &str) {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let target = roles.get(name).await.expect("built-in role");
    let selectors = target
        .aggregation_rule
        .and_then(|r| r.cluster_role_selectors)
        .expect("the built-in role aggregates");
    let all = roles.list(&ListParams::default()).await.expect("roles");
    let mut rules = Vec::new();
    for role in &all.items {
        let labels = role.metadata.labels.clone().unwrap_or_default();
        let selected = selectors.iter().any(|selector| {
            assert!(
                selector.match_expressions.is_none(),
                "only matchLabels selectors are emulated"
            );
            selector
                .match_labels
                .as_ref()
                .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        if selected {
            for rule in role.rules.clone().unwrap_or_default() {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    roles
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": rules})),
        )
        .await
        .expect("aggregate");
}

fn code(result: Result<impl Sized, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("not an API answer: {other}"),
    }
}

fn annotate(annotations: Value) -> Patch<Value> {
    Patch::Merge(json!({"metadata": {"annotations": annotations}}))
}

fn policy(name: &str, annotations: Value) -> DynamicObject {
    let mut object = policy_object(name, valid_spec());
    object["metadata"]["annotations"] = annotations;
    serde_json::from_value(object).expect("object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_users_manage_policies_view_users_only_read_and_rotate_users_only_patch() {
    let s = Scenario::new("tenant-roles").await;
    let fullname = format!("kr-{}", s.namespace);
    let manifest = render(&s, &fullname, &[]);
    apply_kinds(&s, &manifest, &["ClusterRole"]);
    // The built-in roles take the chart's through their own selectors.
    for builtin in ["view", "edit", "admin"] {
        aggregate(&s.client, builtin).await;
    }
    bind(&s, "alice", "edit");
    bind(&s, "bob", "view");
    bind(&s, "carol", &format!("{fullname}-rotate"));
    let admin = dynamic_api(s.client.clone(), &s.namespace);
    admin
        .create(&PostParams::default(), &policy("existing", json!({})))
        .await
        .expect("admin creates");

    // edit: list, create, annotate (rotate), change the spec, delete; not the status.
    let alice = dynamic_api(client_as(&s, "alice", &[]).await, &s.namespace);
    assert_eq!(code(alice.list(&ListParams::default()).await), 200);
    assert_eq!(
        code(
            alice
                .create(&PostParams::default(), &policy("by-alice", json!({})))
                .await
        ),
        200
    );
    let pp = PatchParams::default();
    assert_eq!(
        code(
            alice
                .patch("existing", &pp, &annotate(json!({ROTATE: "a1"})))
                .await
        ),
        200
    );
    assert_eq!(
        code(
            alice
                .patch(
                    "existing",
                    &pp,
                    &Patch::Merge(json!({"spec": {"keyRotationIntervalDays": 31}}))
                )
                .await
        ),
        200
    );
    assert_eq!(
        code(
            alice
                .patch_status(
                    "existing",
                    &pp,
                    &Patch::Merge(json!({"status": {"lastHandledRotateRequest": "a1"}}))
                )
                .await
        ),
        403,
        "a tenant may not forge the status"
    );
    assert_eq!(
        code(alice.delete("by-alice", &DeleteParams::default()).await),
        200
    );

    // view: get and list; nothing else.
    let bob = dynamic_api(client_as(&s, "bob", &[]).await, &s.namespace);
    assert_eq!(code(bob.get("existing").await), 200);
    assert_eq!(code(bob.list(&ListParams::default()).await), 200);
    assert_eq!(
        code(
            bob.patch("existing", &pp, &annotate(json!({ROTATE: "b1"})))
                .await
        ),
        403,
        "view may not rotate"
    );
    assert_eq!(
        code(
            bob.create(&PostParams::default(), &policy("by-bob", json!({})))
                .await
        ),
        403
    );

    // rotate: get and patch, nothing else.
    let carol = dynamic_api(client_as(&s, "carol", &[]).await, &s.namespace);
    assert_eq!(code(carol.get("existing").await), 200);
    assert_eq!(
        code(
            carol
                .patch("existing", &pp, &annotate(json!({ROTATE: "c1"})))
                .await
        ),
        200
    );
    assert_eq!(
        code(
            carol
                .create(&PostParams::default(), &policy("by-carol", json!({})))
                .await
        ),
        403
    );
    assert_eq!(
        code(carol.delete("existing", &DeleteParams::default()).await),
        403
    );
    assert_eq!(code(carol.list(&ListParams::default()).await), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_can_be_turned_off() {
    let s = Scenario::new("tenant-noagg").await;
    let manifest = render(
        &s,
        "kr-noagg",
        &[
            "--set",
            "rbac.aggregateToView=false",
            "--set",
            "rbac.aggregateToEdit=false",
        ],
    );
    let roles = apply_kinds(&s, &manifest, &["ClusterRole"]);
    assert!(roles.contains("name: kr-noagg-edit"), "{roles}");
    assert!(!roles.contains("aggregate-to-"), "{roles}");
    let on = render(&s, "kr-agg", &[]);
    for label in [
        "aggregate-to-view",
        "aggregate-to-edit",
        "aggregate-to-admin",
    ] {
        assert!(on.contains(label), "{label} missing by default");
    }
}

/// Waits until the admission policy is in force: the API server loads it
/// asynchronously after it is created.
async fn wait_in_force(api: &Api<DynamicObject>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let probe = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &policy("probe", json!({ROTATE: "probe"})),
            )
            .await;
        if code(probe) == 403 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the admission policy never came into force"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_policy_lets_only_the_rotate_group_ask_for_a_rotation_and_caps_annotations() {
    let mut s = Scenario::new("tenant-vap").await;
    let fullname = format!("kr-{}", s.namespace);
    let group = format!("rotators-{}", s.namespace);
    let groups = format!("admissionPolicy.rotateGroups={{{group}}}");
    let only_here = format!(
        "admissionPolicy.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={}",
        s.namespace
    );
    let manifest = render(
        &s,
        &fullname,
        &[
            "--set",
            "admissionPolicy.enabled=true",
            "--set",
            &groups,
            "--set",
            &only_here,
        ],
    );
    apply_kinds(
        &s,
        &manifest,
        &[
            "ClusterRole",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ],
    );
    // Admitted. (Its type-check status is written by kube-controller-manager,
    // which the test plane does not run; a CEL error would make every request
    // below fail, failurePolicy being Fail.)
    let vaps: Api<DynamicObject> = Api::all_with(
        s.client.clone(),
        &kube::core::ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: "ValidatingAdmissionPolicy".into(),
            plural: "validatingadmissionpolicies".into(),
        },
    );
    vaps.get(&format!("{fullname}-annotations"))
        .await
        .expect("the policy is admitted");

    let edit = format!("{fullname}-edit");
    bind(&s, "mallory", &edit);
    bind(&s, "rita", &edit);
    let mallory = dynamic_api(
        client_as(&s, "mallory", &["tenant-devs"]).await,
        &s.namespace,
    );
    let rita = dynamic_api(
        client_as(&s, "rita", &["tenant-devs", &group]).await,
        &s.namespace,
    );
    wait_in_force(&mallory).await;
    let pp = PatchParams::default();

    // Forbidden: mallory may edit policies, but not ask for a rotation.
    mallory
        .create(&PostParams::default(), &policy("p", json!({})))
        .await
        .expect("mallory creates a policy without annotations");
    let refused = mallory
        .patch("p", &pp, &annotate(json!({ROTATE: "m1"})))
        .await
        .expect_err("mallory may not ask for a rotation");
    let message = api_message(refused);
    assert!(
        message.contains("only members of") && message.contains(&group),
        "{message}"
    );
    for attempt in [json!({FORCE: "m1"}), json!({ROTATE: "m1", FORCE: "m1"})] {
        assert_eq!(
            code(mallory.patch("p", &pp, &annotate(attempt.clone())).await),
            403,
            "{attempt}"
        );
    }
    assert_eq!(
        code(
            mallory
                .create(
                    &PostParams::default(),
                    &policy("born-rotating", json!({ROTATE: "m2"}))
                )
                .await
        ),
        403,
        "a policy created with a request asks for a rotation too"
    );

    // Allowed: rita is in the group.
    rita.patch("p", &pp, &annotate(json!({ROTATE: "r1", FORCE: "r1"})))
        .await
        .expect("rita asks for a forced rotation");
    // Mallory may still edit the rest, and take a request back, but not change it.
    mallory
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"keyRotationIntervalDays": 31}})),
        )
        .await
        .expect("changing the spec leaves the annotations alone");
    assert_eq!(
        code(
            mallory
                .patch("p", &pp, &annotate(json!({ROTATE: "r2"})))
                .await
        ),
        403
    );
    mallory
        .patch("p", &pp, &annotate(json!({FORCE: null})))
        .await
        .expect("removing an annotation asks for nothing");

    // The size cap holds for everybody, the group too.
    let long = "x".repeat(254);
    let refused = rita
        .patch("p", &pp, &annotate(json!({ROTATE: long})))
        .await
        .expect_err("an over-long request");
    assert!(api_message(refused).contains("253"));
    assert_eq!(
        code(
            mallory
                .patch(
                    "p",
                    &pp,
                    &annotate(json!({"keyrotor.dev/pad": "x".repeat(300)}))
                )
                .await
        ),
        422,
        "an over-long keyrotor.dev/ annotation"
    );
    rita.patch("p", &pp, &annotate(json!({ROTATE: "x".repeat(253)})))
        .await
        .expect("253 characters are allowed");
    mallory
        .patch(
            "p",
            &pp,
            &annotate(json!({"example.com/note": "x".repeat(300)})),
        )
        .await
        .expect("other annotations are not keyrotor's business");

    // The operator writes no annotation: it needs no exemption (finalizer and
    // status writes pass), with the policy in force.
    s.apply_token_secret().await;
    s.start_operator();
    let admin = dynamic_api(s.client.clone(), &s.namespace);
    admin
        .patch(
            "p",
            &pp,
            &Patch::Merge(
                json!({"spec": {"driftCheckInterval": "1s", "deletionPolicy": "Restore"}}),
            ),
        )
        .await
        .expect("admin patch");
    s.wait_for("p", "Ready", is_ready).await;
    let p = s.policy("p").await;
    assert!(
        p.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == keyrotor::crd::FINALIZER),
        "the operator's finalizer"
    );
    assert!(
        !s.operator_log().contains("denied the request"),
        "{}",
        s.operator_log()
    );
}
