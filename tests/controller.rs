//! The operator against a real kube-apiserver and the Cloudflare simulator.
//! Each test asserts on the simulator's request log and on the policy's status.

mod support;

use std::time::Duration;

use keyrotor::{
    crd::{FINALIZER, RotateOutcome},
    decide::witness::canonical,
};
use keyrotor_cloudflare_sim::{Faults, Force429};
use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use support::{ACCOUNT, API_KEY, EMAIL, Scenario, TOKEN, condition, is_ready};

const ROTATE: &str = "keyrotor.dev/rotate-requested-at";
const FORCE: &str = "keyrotor.dev/rotate-force";

async fn ready_scenario(prefix: &str) -> Scenario {
    let mut s = Scenario::new(prefix).await;
    s.apply_token_secret().await;
    s.start_operator();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_makes_one_put_and_status_equals_the_account() {
    let s = ready_scenario("create").await;
    s.create_policy("p", json!({})).await;
    let p = s.wait_for("p", "Ready", is_ready).await;
    assert_eq!(s.calls("PUT").len(), 1);
    let account = s.sim().account(ACCOUNT).expect("account");
    assert_eq!(account.key_rotation_interval_days, 30);
    let status = p.status.expect("status");
    assert_eq!(status.account_key_rotation_interval_days, Some(30));
    assert_eq!(
        status.last_key_rotation_at,
        Some(canonical(account.last_key_rotation_at)),
        "the account's time, cut to whole seconds"
    );
    assert_eq!(
        status.days_until_next_rotation,
        Some(account.days_until_next_rotation)
    );
    assert_eq!(status.original_key_rotation_interval_days, Some(42));
    assert!(status.next_key_rotation_at.is_some());
    assert_eq!(
        condition_reason(&p_now(&s, "p").await, "AccountInSync"),
        "InSync"
    );
    let events = s.events("p").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "IntervalUpdated" && n.contains("30 days")),
        "{events:?}"
    );
    s.assert_log_has_no_secret();
}

async fn p_now(s: &Scenario, name: &str) -> keyrotor::crd::AccessKeyPolicy {
    s.policy(name).await
}

fn condition_reason(p: &keyrotor::crd::AccessKeyPolicy, kind: &str) -> String {
    condition(p, kind)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_puts_once_and_no_change_puts_nothing() {
    let s = ready_scenario("spec").await;
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    s.patch_spec("p", json!({"keyRotationIntervalDays": 60}))
        .await;
    s.wait_for("p", "interval 60", |p| {
        is_ready(p)
            && p.status
                .as_ref()
                .and_then(|st| st.account_key_rotation_interval_days)
                == Some(60)
    })
    .await;
    assert_eq!(s.calls("PUT").len(), 2);
    // An unrelated label change is no spec change: no PUT over several checks.
    s.policies()
        .patch(
            "p",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .expect("label");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.calls("PUT").len(), 2);
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        60
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_in_the_account_is_corrected_on_the_next_check() {
    let s = ready_scenario("drift").await;
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    assert!(s.sim().set_interval(ACCOUNT, 90));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while s
        .sim()
        .account(ACCOUNT)
        .expect("account")
        .key_rotation_interval_days
        != 30
    {
        assert!(
            std::time::Instant::now() < deadline,
            "drift not corrected\n{}",
            s.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.calls("PUT").len(), 2);
    let events = s.wait_for_event("p", "DriftCorrected").await;
    assert!(
        events.iter().any(|(_, n)| n.contains("90 days")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_never_writes_and_reports_drift() {
    let s = ready_scenario("observe").await;
    s.create_policy("p", json!({"managementPolicy": "Observe"}))
        .await;
    let p = s.wait_for("p", "Ready", is_ready).await;
    assert_eq!(condition_reason(&p, "AccountInSync"), "Drifted");
    assert_eq!(
        condition(&p, "AccountInSync").map(|c| c.status.as_str()),
        Some("False")
    );
    s.annotate("p", json!({ROTATE: "r1", FORCE: "r1"})).await;
    let p = s
        .wait_for("p", "rotate request handled", |p| {
            p.status
                .as_ref()
                .and_then(|st| st.last_handled_rotate_request.as_deref())
                == Some("r1")
        })
        .await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::RefusedObserveOnly)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.calls("PUT").len() + s.calls("POST").len(), 0);
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        42
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_makes_no_calls_and_unsuspend_reconciles() {
    let s = ready_scenario("suspend").await;
    s.create_policy("p", json!({"suspend": true})).await;
    let p = s.wait_ready_reason("p", "Suspended").await;
    // Suspended as asked is Ready (True, reason Suspended), so that
    // `kubectl wait --for=condition=Ready` does not hang on it.
    assert!(is_ready(&p), "{:?}", condition(&p, "Ready"));
    let wait = support::kubectl_with_input(
        s.plane,
        &[
            "wait",
            "-n",
            &s.namespace,
            "--for=condition=Ready",
            "accesskeypolicy/p",
            "--timeout=10s",
        ],
        "",
    );
    assert!(
        wait.status.success(),
        "{}",
        String::from_utf8_lossy(&wait.stderr)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.sim().requests().is_empty(), "{:?}", s.sim().requests());
    s.patch_spec("p", json!({"suspend": false})).await;
    s.wait_for("p", "Ready", is_ready).await;
    assert_eq!(s.calls("PUT").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_makes_no_call_and_a_created_one_is_picked_up() {
    let mut s = Scenario::new("nosecret").await;
    s.start_operator_with(&["--watch-secrets", "true"], &[]);
    s.create_policy("p", json!({"driftCheckInterval": "1h"}))
        .await;
    let p = s.wait_ready_reason("p", "SecretNotFound").await;
    assert!(condition(&p, "Ready").is_some_and(|c| c.message.contains("cloudflare-api")));
    assert!(s.sim().requests().is_empty());
    // The drift interval is an hour: only the Secret watch (off by default)
    // can make this quick.
    s.apply_token_secret().await;
    s.wait_for("p", "Ready", is_ready).await;
    let events = s.events("p").await;
    assert!(
        events.iter().any(|(r, _)| r == "CredentialsError"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_invalid_credentials_with_cloudflares_code_and_no_retry_storm() {
    let mut s = Scenario::new("badtoken").await;
    s.apply_secret("cloudflare-api", &[("apiToken", "tok-WRONG-SECRET")])
        .await;
    s.start_operator();
    s.create_policy("p", json!({"driftCheckInterval": "1h"}))
        .await;
    let p = s.wait_ready_reason("p", "InvalidCredentials").await;
    let message = condition(&p, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("9109"), "{message}");
    assert!(!message.contains("tok-WRONG-SECRET"));
    // One GET (a 4xx is not retried). Start-up may run two passes (the policy
    // event, then the Secret watch's first list); the second finds the same
    // Secret refused inside its drift check and does not ask again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gets = s.calls("GET");
    assert!(
        gets.len() == 1 && gets.iter().all(|r| r.status == 403),
        "{gets:?}"
    );
    // Then nothing: the next attempt waits for the drift interval or a Secret change.
    s.sim().clear_requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        s.sim().requests().is_empty(),
        "retried: {:?}\n{}",
        s.sim().requests(),
        s.operator_log()
    );
    assert!(!s.operator_log().contains("tok-WRONG-SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_asked_about_less_and_less_until_the_secret_changes() {
    let mut s = Scenario::new("backoff").await;
    s.apply_secret("cloudflare-api", &[("apiToken", "tok-WRONG-SECRET")])
        .await;
    // With the Secret watch, so that a changed Secret is asked about at once.
    s.start_operator_with(&["--watch-secrets", "true"], &[]);
    s.create_policy("p", json!({"driftCheckInterval": "1s"}))
        .await;
    s.wait_ready_reason("p", "InvalidCredentials").await;
    // Checked every second when healthy; refused, the waits double: 1, 2, 4 s.
    tokio::time::sleep(Duration::from_millis(7500)).await;
    let times: Vec<jiff::Timestamp> = s.calls("GET").iter().map(|r| r.time).collect();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    assert!(
        (3..=4).contains(&times.len()),
        "{} GETs in 7.5 s: {gaps:?}\n{}",
        times.len(),
        s.operator_log()
    );
    for (n, gap) in gaps.iter().enumerate() {
        let wanted = f64::from(1u32 << n);
        assert!(
            *gap >= wanted * 0.9 && *gap < wanted + 1.5,
            "gap {n} was {gap:.2} s, wanted about {wanted} s: {gaps:?}"
        );
    }
    // A changed Secret is asked about at once, and the right token is Ready.
    s.sim().clear_requests();
    s.apply_token_secret().await;
    s.wait_for("p", "Ready", is_ready).await;
    let first = s.calls("GET");
    assert!(
        !first.is_empty() && first.iter().any(|r| r.status == 200),
        "{first:?}"
    );
    assert!(!s.operator_log().contains("tok-WRONG-SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_with_both_kinds_or_neither_is_a_clear_error_without_a_call() {
    let mut s = Scenario::new("badsecret").await;
    s.apply_secret(
        "both",
        &[("apiToken", TOKEN), ("apiKey", API_KEY), ("email", EMAIL)],
    )
    .await;
    s.apply_secret("neither", &[("token", TOKEN)]).await;
    s.start_operator();
    s.create_policy("both", json!({"credentialsRef": {"name": "both"}}))
        .await;
    s.create_policy(
        "neither",
        json!({"credentialsRef": {"name": "neither"}, "accountId": support::OTHER_ACCOUNT}),
    )
    .await;
    let both = s.wait_ready_reason("both", "InvalidCredentials").await;
    assert!(
        condition(&both, "Ready").is_some_and(|c| c.message.contains("both apiToken and apiKey"))
    );
    let neither = s.wait_ready_reason("neither", "InvalidCredentials").await;
    assert!(condition(&neither, "Ready").is_some_and(|c| c.message.contains("no apiToken")));
    assert!(s.sim().requests().is_empty());
    s.assert_log_has_no_secret();
}

/// Secrets made by other tools keep their own key names: the policy names
/// them (`apiTokenKey`, `apiKeyKey`, `emailKey`), and the errors name the keys
/// the policy asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_names_the_secret_keys() {
    let mut s = Scenario::new("secretkeys").await;
    s.apply_secret(
        "eso-token",
        &[("cloudflare-token", TOKEN), ("apiToken", "x")],
    )
    .await;
    s.apply_secret(
        "eso-key",
        &[("global.key", API_KEY), ("owner_email", EMAIL)],
    )
    .await;
    s.start_operator();
    s.create_policy(
        "token",
        json!({"credentialsRef": {"name": "eso-token", "apiTokenKey": "cloudflare-token"}}),
    )
    .await;
    s.create_policy(
        "key",
        json!({"accountId": support::OTHER_ACCOUNT, "managementPolicy": "Observe",
               "credentialsRef": {"name": "eso-key", "apiKeyKey": "global.key", "emailKey": "owner_email"}}),
    )
    .await;
    s.wait_for("token", "Ready", is_ready).await;
    s.wait_for("key", "Ready", is_ready).await;
    let used = s.credentials_used();
    assert!(
        used.iter().any(|c| c == "scenario") && used.iter().any(|c| c == "legacy"),
        "{used:?}"
    );

    // A key the Secret lacks: a clear error naming it, and no call.
    s.patch_spec(
        "token",
        json!({"credentialsRef": {"name": "eso-token", "apiTokenKey": "token"}}),
    )
    .await;
    let p = s.wait_ready_reason("token", "InvalidCredentials").await;
    let message = condition(&p, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("has no token, nor apiKey and email"),
        "{message}"
    );
    // A key name no Secret can have is refused by the API server.
    let err = s
        .policies()
        .patch(
            "token",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"credentialsRef": {"apiTokenKey": "a/b"}}})),
        )
        .await
        .expect_err("a slash is no data key");
    assert!(support::api_message(err).contains("apiTokenKey"));
    s.assert_log_has_no_secret();
}

/// The conditions are a map list keyed by type: a condition another tool
/// adds (with its own field manager) survives the operator's status writes,
/// and stays that tool's to change or remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_other_tools_add_survive_the_operators_writes() {
    let mut s = Scenario::new("foreigncond").await;
    s.start_with_ready_policy(json!({})).await;
    let other_tool = |conditions: Value| {
        json!({
            "apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy",
            "status": {"conditions": conditions},
        })
    };
    let audited = json!([{
        "type": "example.com/Audited", "status": "True", "reason": "Reviewed",
        "message": "reviewed by the audit bot", "lastTransitionTime": "2026-12-01T00:00:00Z",
    }]);
    let apply = PatchParams::apply("audit-bot");
    s.policies()
        .patch_status("p", &apply, &Patch::Apply(other_tool(audited)))
        .await
        .expect("the other tool's condition");
    // A change the operator writes a new status for.
    s.patch_spec("p", json!({"keyRotationIntervalDays": 60}))
        .await;
    let p = s
        .wait_for("p", "AccountInSync at 60 days", |p| {
            is_ready(p)
                && p.status
                    .as_ref()
                    .and_then(|st| st.account_key_rotation_interval_days)
                    == Some(60)
        })
        .await;
    let types: Vec<&str> = p
        .status
        .as_ref()
        .map(|st| st.conditions.iter().map(|c| c.type_.as_str()).collect())
        .unwrap_or_default();
    assert!(
        types.contains(&"example.com/Audited") && types.contains(&"AccountInSync"),
        "{types:?}"
    );
    // The other tool still owns it alone: its empty apply removes it.
    s.policies()
        .patch_status("p", &apply, &Patch::Apply(other_tool(json!([]))))
        .await
        .expect("the other tool withdraws its condition");
    let p = s.policy("p").await;
    let types: Vec<String> = p
        .status
        .as_ref()
        .map(|st| st.conditions.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default();
    assert!(
        !types.iter().any(|t| t == "example.com/Audited"),
        "{types:?}"
    );
    assert!(condition(&p, "Ready").is_some_and(|c| c.status == "True"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_account_is_account_not_found() {
    let s = ready_scenario("noaccount").await;
    s.create_policy(
        "p",
        json!({"accountId": "ffffffffffffffffffffffffffffffff"}),
    )
    .await;
    let p = s.wait_ready_reason("p", "AccountNotFound").await;
    assert!(condition(&p, "Ready").is_some_and(|c| c.message.contains("7003")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_policies_on_one_account_the_first_verified_owns_and_the_other_takes_over_after_deletion()
 {
    let s = ready_scenario("conflict").await;
    s.create_policy("older", json!({})).await;
    s.wait_for("older", "Ready", is_ready).await;
    s.create_policy("newer", json!({"keyRotationIntervalDays": 60}))
        .await;
    let newer = s.wait_ready_reason("newer", "Conflict").await;
    assert!(condition(&newer, "Ready").is_some_and(|c| {
        c.message
            .contains("managed by policy older in this namespace")
    }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.calls("PUT").len(), 1, "only the owner writes");
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        30
    );
    s.policies()
        .delete("older", &Default::default())
        .await
        .expect("delete");
    s.wait_for("newer", "Ready after take-over", is_ready).await;
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        60
    );
}

fn handled(p: &keyrotor::crd::AccessKeyPolicy, value: &str) -> bool {
    p.status
        .as_ref()
        .and_then(|st| st.last_handled_rotate_request.as_deref())
        == Some(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_rotate_annotation_value_posts_exactly_once() {
    let s = ready_scenario("rotate").await;
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    let before = s
        .sim()
        .account(ACCOUNT)
        .expect("account")
        .last_key_rotation_at;
    s.annotate("p", json!({ROTATE: "r1"})).await;
    let p = s.wait_for("p", "r1 handled", |p| handled(p, "r1")).await;
    assert_eq!(s.calls("POST").len(), 1);
    let status = p.status.expect("status");
    assert_eq!(status.last_rotate_outcome, Some(RotateOutcome::Rotated));
    assert!(status.pending_rotation.is_none());
    let after = s
        .sim()
        .account(ACCOUNT)
        .expect("account")
        .last_key_rotation_at;
    assert!(after > before);
    assert_eq!(status.last_key_rotation_at, Some(canonical(after)));
    // The same value again: nothing.
    s.annotate("p", json!({ROTATE: "r1"})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.calls("POST").len(), 1);
    // A new value: one more.
    s.annotate("p", json!({ROTATE: "r2"})).await;
    s.wait_for("p", "r2 handled", |p| handled(p, "r2")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.calls("POST").len(), 2);
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 2);
    let events = s.event_counts("p").await;
    let rotated: i32 = events
        .iter()
        .filter(|(r, _, _)| r == "Rotated")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(rotated, 2, "{events:?}\n{}", s.operator_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_inside_the_cooldown_is_refused_unless_forced() {
    let s = ready_scenario("cooldown").await;
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    // Forced: the force annotation carries the request's own value.
    s.annotate("p", json!({ROTATE: "r1", FORCE: "r1"})).await;
    s.wait_for("p", "r1 handled", |p| handled(p, "r1")).await;
    assert_eq!(s.calls("POST").len(), 1);
    // The force token of r1 is left in place (as Git would keep it): it does
    // not force r2.
    s.annotate("p", json!({ROTATE: "r2"})).await;
    let p = s.wait_for("p", "r2 handled", |p| handled(p, "r2")).await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::RefusedCooldown)
    );
    assert_eq!(s.calls("POST").len(), 1);
    let events = s.wait_for_event("p", "RotationRefused").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "RotationRefused" && n.contains("allowed after")),
        "{events:?}"
    );
    // "true" (the old form) is no token either.
    s.annotate("p", json!({ROTATE: "r3", FORCE: "true"})).await;
    let p = s.wait_for("p", "r3 handled", |p| handled(p, "r3")).await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::RefusedCooldown)
    );
    assert_eq!(s.calls("POST").len(), 1);
    s.annotate("p", json!({ROTATE: "r4", FORCE: "r4"})).await;
    let p = s.wait_for("p", "r4 handled", |p| handled(p, "r4")).await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::Rotated)
    );
    assert_eq!(s.calls("POST").len(), 2);
    // The operator never edits the user's annotations.
    let annotations = p.metadata.annotations.unwrap_or_default();
    assert_eq!(annotations.get(ROTATE).map(String::as_str), Some("r4"));
    assert_eq!(annotations.get(FORCE).map(String::as_str), Some("r4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_around_the_post_never_rotates_twice() {
    let mut s = Scenario::new("crash").await;
    s.apply_token_secret().await;
    s.start_operator_with(&[], &[("KEYROTOR_TEST_PAUSE_AT", "rotate-before-post")]);
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;

    // 1. Killed after the pending request is recorded, before the POST.
    s.annotate("p", json!({ROTATE: "r1"})).await;
    s.operator
        .as_ref()
        .expect("operator")
        .wait_for_log("pause point reached")
        .await;
    let p = s.policy("p").await;
    assert_eq!(
        p.status
            .and_then(|st| st.pending_rotation)
            .map(|pr| pr.request),
        Some("r1".into())
    );
    s.operator.as_mut().expect("operator").kill();
    assert_eq!(s.calls("POST").len(), 0);
    s.start_operator_with(&[], &[("KEYROTOR_TEST_PAUSE_AT", "rotate-after-post")]);
    // 2. Killed after the POST, before the outcome reaches status.
    s.operator
        .as_ref()
        .expect("operator")
        .wait_for_log("pause point reached")
        .await;
    assert_eq!(s.calls("POST").len(), 1);
    assert!(!handled(&s.policy("p").await, "r1"));
    s.operator.as_mut().expect("operator").kill();
    s.start_operator();
    let p = s.wait_for("p", "r1 handled", |p| handled(p, "r1")).await;
    assert_eq!(
        p.status.and_then(|st| st.last_rotate_outcome),
        Some(RotateOutcome::Rotated)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.calls("POST").len(), 1, "exactly one POST for r1");
    assert_eq!(s.sim().account(ACCOUNT).expect("account").rotations, 1);

    // 3. A second request killed after its POST: still exactly one more.
    s.operator.as_mut().expect("operator").kill();
    s.start_operator_with(&[], &[("KEYROTOR_TEST_PAUSE_AT", "rotate-after-post")]);
    s.annotate("p", json!({ROTATE: "r2"})).await;
    s.operator
        .as_ref()
        .expect("operator")
        .wait_for_log("pause point reached")
        .await;
    s.operator.as_mut().expect("operator").kill();
    s.start_operator();
    s.wait_for("p", "r2 handled", |p| handled(p, "r2")).await;
    assert_eq!(
        s.calls("POST").len(),
        2,
        "exactly one POST per request value"
    );
}

/// The cache keeps only our finalizer; adding and removing it must leave
/// everybody else's in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_finalizers_stay_when_ours_comes_and_goes() {
    let s = ready_scenario("finalizers").await;
    let hold = "example.com/hold";
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    s.policies()
        .patch(
            "p",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"finalizers": [hold]}})),
        )
        .await
        .expect("add a finalizer");
    s.patch_spec("p", json!({"deletionPolicy": "Restore"}))
        .await;
    let p = s
        .wait_for("p", "ours added beside the other", |p| {
            p.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
        })
        .await;
    assert_eq!(p.finalizers(), [hold, FINALIZER]);
    s.policies()
        .delete("p", &Default::default())
        .await
        .expect("delete");
    let p = s
        .wait_for("p", "ours removed, the other kept", |p| {
            p.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().all(|f| f != FINALIZER))
        })
        .await;
    assert_eq!(p.finalizers(), [hold]);
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        42,
        "restored on deletion"
    );
    s.policies()
        .patch(
            "p",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop the other finalizer");
    s.wait_gone("p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_with_restore_puts_the_original_back_and_orphan_leaves_the_account() {
    let s = ready_scenario("deletion").await;
    s.create_policy("restore", json!({"deletionPolicy": "Restore"}))
        .await;
    let p = s
        .wait_for("restore", "Ready with finalizer", |p| {
            is_ready(p)
                && p.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
        })
        .await;
    assert_eq!(
        p.status
            .and_then(|st| st.original_key_rotation_interval_days),
        Some(42)
    );
    assert_eq!(
        s.sim()
            .account(ACCOUNT)
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
            .account(ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        42
    );

    s.create_policy("orphan", json!({"accountId": support::OTHER_ACCOUNT}))
        .await;
    let p = s.wait_for("orphan", "Ready", is_ready).await;
    assert!(p.metadata.finalizers.unwrap_or_default().is_empty());
    let puts = s.calls("PUT").len();
    s.policies()
        .delete("orphan", &Default::default())
        .await
        .expect("delete");
    s.wait_gone("orphan").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.calls("PUT").len(), puts);
    assert_eq!(
        s.sim()
            .account(support::OTHER_ACCOUNT)
            .expect("account")
            .key_rotation_interval_days,
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_stops_calls_until_retry_after_then_recovers() {
    let s = ready_scenario("ratelimit").await;
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    s.sim().set_faults(Faults {
        force_429: Some(Force429 {
            count: 1,
            retry_after_seconds: Some(4),
        }),
        ..Faults::default()
    });
    s.wait_ready_reason("p", "RateLimited").await;
    let limited_at = s
        .sim()
        .requests()
        .iter()
        .rev()
        .find(|r| r.status == 429)
        .map(|r| r.time)
        .expect("a 429");
    s.wait_for("p", "Ready again", is_ready).await;
    let after: Vec<_> = s
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.time > limited_at)
        .collect();
    let first = after.first().expect("a call after the block");
    let gap = first.time.duration_since(limited_at);
    assert!(
        gap >= jiff::SignedDuration::from_millis(3900),
        "called {gap:?} after the 429"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_5xx_is_retried_a_bounded_number_of_times_then_recovers() {
    let s = ready_scenario("5xx").await;
    s.create_policy("p", json!({})).await;
    s.wait_for("p", "Ready", is_ready).await;
    s.sim().clear_requests();
    s.sim().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let p = s.wait_ready_reason("p", "ApiError").await;
    assert!(condition(&p, "Ready").is_some_and(|c| c.message.contains("after 4 attempt")));
    let first_failures = s
        .sim()
        .requests()
        .iter()
        .take_while(|r| r.status >= 500)
        .count();
    assert!(first_failures >= 4, "{first_failures}");
    s.sim().set_faults(Faults::default());
    s.wait_for("p", "Ready again", is_ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_writes_nothing_and_reads_once_per_check() {
    let s = ready_scenario("steady").await;
    s.create_policy("p", json!({"driftCheckInterval": "1s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let version = s.policy("p").await.metadata.resource_version;
    s.sim().clear_requests();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        s.policy("p").await.metadata.resource_version,
        version,
        "the operator wrote in steady state"
    );
    let gets = s.calls("GET").len();
    assert!(
        (4..=7).contains(&gets),
        "{gets} GETs in 6 s with a 1 s interval"
    );
    assert_eq!(s.sim().requests().len(), gets, "only GETs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_on_the_simulators_clock_shows_in_status() {
    let s = ready_scenario("autorotate").await;
    s.create_policy("p", json!({})).await;
    let p = s.wait_for("p", "Ready", is_ready).await;
    let before = p
        .status
        .and_then(|st| st.last_key_rotation_at)
        .expect("rotation time");
    s.sim().advance_clock(Duration::from_secs(31 * 24 * 3600));
    let p = s
        .wait_for("p", "new lastKeyRotationAt", |p| {
            p.status
                .as_ref()
                .and_then(|st| st.last_key_rotation_at)
                .is_some_and(|t| t > before)
        })
        .await;
    assert_eq!(
        p.status.and_then(|st| st.last_key_rotation_at),
        Some(canonical(
            s.sim()
                .account(ACCOUNT)
                .expect("account")
                .last_key_rotation_at
        ))
    );
    assert!(s.calls("POST").is_empty(), "the account rotated by itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_events_count_in_a_series_and_a_deleted_one_starts_over() {
    use k8s_openapi::api::{core::v1::ObjectReference, events::v1::Event};
    use keyrotor::controller::{EventPublisher, EventReason};
    use kube::Api;

    let s = Scenario::new("series").await;
    let publisher = EventPublisher::new(s.client.clone(), "keyrotor", "test-pod");
    let regarding = |resource_version: &str| ObjectReference {
        api_version: Some("keyrotor.dev/v1alpha1".into()),
        kind: Some("AccessKeyPolicy".into()),
        namespace: Some(s.namespace.clone()),
        name: Some("p".into()),
        uid: Some("0b7c6a52-1f7e-4d8e-9a55-000000000001".into()),
        resource_version: Some(resource_version.into()),
        ..ObjectReference::default()
    };
    let publish = |reason, note: &'static str, rv: &'static str| {
        let publisher = &publisher;
        let regarding = regarding(rv);
        async move {
            publisher
                .publish(reason, note, &regarding)
                .await
                .expect("published");
        }
    };
    publish(EventReason::ApiError, "first", "1").await;
    publish(EventReason::ApiError, "second", "1").await;
    publish(EventReason::ApiError, "third", "1").await;
    // Another reason, and the same reason about a newer version: new events.
    publish(EventReason::CredentialsError, "other reason", "1").await;
    publish(EventReason::ApiError, "newer version", "2").await;
    let events = s.event_counts("p").await;
    assert_eq!(
        events,
        vec![
            ("ApiError".to_owned(), "first".to_owned(), 3),
            ("CredentialsError".to_owned(), "other reason".to_owned(), 1),
            ("ApiError".to_owned(), "newer version".to_owned(), 1),
        ]
    );
    let api: Api<Event> = Api::namespaced(s.client.clone(), &s.namespace);
    let all = api.list(&Default::default()).await.expect("events");
    let first = all
        .items
        .iter()
        .find(|e| e.note.as_deref() == Some("first"))
        .expect("first event");
    assert_eq!(first.reporting_controller.as_deref(), Some("keyrotor"));
    assert_eq!(first.reporting_instance.as_deref(), Some("test-pod"));
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    // The API server dropped the event (its TTL): the next repeat creates a new one.
    let name = first.metadata.name.clone().expect("name");
    api.delete(&name, &Default::default())
        .await
        .expect("delete event");
    publish(EventReason::ApiError, "after expiry", "1").await;
    let notes: Vec<String> = s
        .event_counts("p")
        .await
        .into_iter()
        .filter(|(reason, _, _)| reason == "ApiError")
        .map(|(_, note, count)| format!("{note}:{count}"))
        .collect();
    assert_eq!(notes, ["newer version:1", "after expiry:1"]);
}
