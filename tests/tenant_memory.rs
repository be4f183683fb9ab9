//! A tenant cannot crash the shared operator with memory: 400 policies in a
//! hostile namespace, each padded with a ~250 KiB `keyrotor.dev/pad`
//! annotation (the API server's limit for all annotations is 256 KiB) and
//! ~250 KiB of finalizers (which have no such limit), and
//! the operator, watching every namespace, keeps its peak RSS (`VmHWM`) under
//! the chart's 128 MiB limit through start-up and a restart, while the other
//! tenants' policies are Ready and rotate.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use keyrotor::crd::{AccessKeyPolicy, RotateOutcome};
use kube::{Api, api::PostParams, runtime::wait::await_condition};
use serde_json::json;
use support::{FORCE, ROTATE, Scenario, has_handled, is_ready};

/// The chart's memory limit (charts/keyrotor/values.yaml `resources.limits.memory`).
const CHART_LIMIT_KIB: u64 = 128 * 1024;
/// Policies the hostile tenant creates.
const HOSTILE_POLICIES: usize = 400;
/// The pad on each: the API server allows 256 KiB of annotations in all.
const PAD_BYTES: usize = 250 * 1024;
/// And as many bytes of finalizers (no limit but the object's 1.5 MiB).
const FINALIZER_BYTES: usize = 250 * 1024;

/// Finalizers adding up to [`FINALIZER_BYTES`]: qualified names of 259
/// characters (a 195-character DNS prefix and a 63-character name).
fn padding_finalizers() -> Vec<String> {
    let label = "x".repeat(63);
    let prefix = format!("{label}.{label}.{label}.com");
    (0..FINALIZER_BYTES / (prefix.len() + 64))
        .map(|i| format!("{prefix}/f{i:0>62}"))
        .collect()
}

/// The peak resident set size of `pid` in KiB (`VmHWM` in `/proc/PID/status`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Creates the hostile tenant's padded policies (8 at a time).
async fn flood(s: &Scenario, namespace: &str) {
    let api: Api<AccessKeyPolicy> = Api::namespaced(s.client.clone(), namespace);
    let pad = "p".repeat(PAD_BYTES);
    let finalizers = padding_finalizers();
    stream::iter(0..HOSTILE_POLICIES)
        .map(|n| {
            let api = api.clone();
            let policy: AccessKeyPolicy = serde_json::from_value(json!({
                "apiVersion": "keyrotor.dev/v1alpha1", "kind": "AccessKeyPolicy",
                "metadata": {
                    "name": format!("pad-{n:03}"),
                    "annotations": {"keyrotor.dev/pad": pad},
                    "finalizers": finalizers,
                },
                "spec": {
                    "accountId": format!("{:032x}", 0xbad0_0000_u64 + n as u64),
                    "keyRotationIntervalDays": 30,
                    "credentialsRef": {"name": "absent"},
                },
            }))
            .expect("policy");
            async move { api.create(&PostParams::default(), &policy).await }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await
        .expect("the API server takes every padded policy");
}

/// How long the other tenants may wait: their passes queue behind the 400
/// hostile ones (fair sharing of the workers is not what this test measures).
const OTHERS_WAIT: Duration = Duration::from_secs(240);

/// Waits (by watching) until `check` holds for policy `name`, at most [`OTHERS_WAIT`].
async fn wait_long(
    s: &Scenario,
    name: &str,
    what: &str,
    check: impl Fn(&AccessKeyPolicy) -> bool,
) -> AccessKeyPolicy {
    let holds = |p: Option<&AccessKeyPolicy>| p.is_some_and(&check);
    match tokio::time::timeout(OTHERS_WAIT, await_condition(s.policies(), name, holds)).await {
        Ok(Ok(Some(policy))) => policy,
        outcome => panic!(
            "waiting for {what} on {name}: {outcome:?}\noperator log:\n{}",
            s.operator_log()
        ),
    }
}

/// Waits until every normal policy is Ready and has rotated for `request`.
async fn others_ready_and_rotated(s: &Scenario, names: &[&str], request: &str) {
    for name in names {
        wait_long(s, name, "Ready", is_ready).await;
        s.annotate(name, json!({ROTATE: request, FORCE: request}))
            .await;
    }
    for name in names {
        let p = wait_long(s, name, "request handled", |p| has_handled(p, request)).await;
        assert_eq!(
            p.status.as_ref().and_then(|st| st.last_rotate_outcome),
            Some(RotateOutcome::Rotated),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_annotation_and_finalizer_flood_stays_under_the_chart_memory_limit() {
    let mut s = Scenario::new("tenant-mem").await;
    let hostile = s.other_namespace("hostile").await;
    let started = Instant::now();
    flood(&s, &hostile).await;
    eprintln!(
        "created {HOSTILE_POLICIES} padded policies in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The other tenant (the scenario's namespace): two normal policies.
    s.apply_token_secret().await;
    for (name, account) in [("a", support::ACCOUNT), ("b", support::OTHER_ACCOUNT)] {
        s.create_policy(
            name,
            json!({"accountId": account, "rotationCooldown": "0s"}),
        )
        .await;
    }
    // Every namespace, as the chart's default install; the chart's concurrency.
    // (The cooldown minimum through its environment variable: an operator
    // built before the setting existed ignores it, so the same test measures both.)
    let args = ["--watch-namespaces", "", "--drift-check-floor", "10s"];
    let env = [("KEYROTOR_MIN_ROTATION_COOLDOWN", "0s")];
    s.start_operator_with(&args, &env);
    let started = Instant::now();
    others_ready_and_rotated(&s, &["a", "b"], "first").await;
    let others_after = started.elapsed();
    // The fair share lets the other tenant through first: the hostile
    // policies are reconciled too (their Secret is missing) before the peak
    // is read.
    let hostile_api: Api<AccessKeyPolicy> = Api::namespaced(s.client.clone(), &hostile);
    let reconciled = |p: Option<&AccessKeyPolicy>| {
        p.and_then(|p| support::condition(p, "Ready"))
            .is_some_and(|c| c.reason == "SecretNotFound")
    };
    let last_hostile = tokio::time::timeout(
        OTHERS_WAIT,
        await_condition(hostile_api.clone(), "pad-399", reconciled),
    )
    .await;
    assert!(
        matches!(last_hostile, Ok(Ok(Some(_)))),
        "the hostile policies were not reconciled: {last_hostile:?}\noperator log:\n{}",
        s.operator_log()
    );
    let first = s.operator.as_ref().expect("operator").pid();
    let first_peak = peak_rss_kib(first);
    eprintln!(
        "start-up: other tenants rotated after {:.1}s, the hostile ones reconciled after {:.1}s, peak RSS {} KiB",
        others_after.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        first_peak
    );

    // A restart lists everything again.
    s.operator.as_mut().expect("operator").kill();
    s.start_operator_with(&args, &env);
    let started = Instant::now();
    others_ready_and_rotated(&s, &["a", "b"], "second").await;
    // Let the operator go through the hostile policies once more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let operator = s.operator.as_mut().expect("operator");
    assert_eq!(
        operator.wait_exit(Duration::ZERO).await,
        None,
        "the operator died:\n{}",
        operator.log()
    );
    let second_peak = peak_rss_kib(operator.pid());
    eprintln!(
        "restart: other tenants rotated after {:.1}s, peak RSS {} KiB",
        started.elapsed().as_secs_f64(),
        second_peak
    );
    assert!(
        first_peak < CHART_LIMIT_KIB && second_peak < CHART_LIMIT_KIB,
        "peak RSS {first_peak} KiB at start-up, {second_peak} KiB after a restart; the chart allows {CHART_LIMIT_KIB} KiB"
    );
    s.assert_log_has_no_secret();
}
