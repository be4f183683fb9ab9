//! The exactly-once witness against a simulator that reports time at other
//! precisions: a request forced right after a rotation, the operator killed
//! after its POST, is rotated once; drift checks that see the same rotation
//! in other forms write nothing. Real kube-apiserver, operator processes.
//!
//! `KEYROTOR_WITNESS_RUNS` sets how many crash rounds each precision runs
//! (default 3; docs/reliability.md gives the figures of a 20-round run).

mod support;

use std::time::Duration;

use keyrotor_cloudflare_sim::{AccountSeed, OffsetStyle, Precision, TimestampStyle};
use serde_json::json;
use support::{ACCOUNT, Scenario, is_ready};

const ROTATE: &str = "keyrotor.dev/rotate-requested-at";
const PAUSE_AFTER_POST: [(&str, &str); 1] = [("KEYROTOR_TEST_PAUSE_AT", "rotate-after-post")];

fn rounds() -> usize {
    std::env::var("KEYROTOR_WITNESS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn handled(p: &keyrotor::crd::AccessKeyPolicy, value: &str) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.last_handled_rotate_request.as_deref())
        == Some(value)
}

/// POSTs the simulator has logged so far.
fn posts(s: &Scenario) -> usize {
    s.calls("POST").len()
}

/// Makes the account's key rotated at the simulator's present, early in a
/// second, so a request that follows at once falls in the same second.
async fn rotate_account_at_the_start_of_a_second(s: &Scenario) {
    while s.sim().now().subsec_nanosecond() > 150_000_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = s.sim().now();
    s.sim().upsert_account(
        AccountSeed::new(ACCOUNT)
            .with_interval(30)
            .last_rotated_at(now),
    );
}

/// Rounds of: the account rotates; a request comes in the same second; the
/// operator POSTs and is killed before recording the outcome; a new operator
/// (also paused after any POST, so a second POST would be seen and stopped)
/// must confirm the rotation from the account without POSTing.
async fn crash_after_a_post_right_after_a_rotation(style: TimestampStyle) {
    let mut s = Scenario::new("witness").await;
    s.sim().set_timestamp_style(style);
    s.apply_token_secret().await;
    s.start_operator_with(&[], &PAUSE_AFTER_POST);
    s.create_policy("p", json!({"rotationCooldown": "0s"}))
        .await;
    s.wait_for("p", "Ready", is_ready).await;
    for round in 0..rounds() {
        let before = posts(&s);
        let value = format!("r{round}");
        rotate_account_at_the_start_of_a_second(&s).await;
        s.annotate("p", json!({ ROTATE: value })).await;
        s.operator
            .as_ref()
            .expect("operator")
            .wait_for_log("pause point reached")
            .await;
        assert_eq!(
            posts(&s),
            before + 1,
            "round {round}: one POST before the kill"
        );
        s.operator.as_mut().expect("operator").kill();
        s.start_operator_with(&[], &PAUSE_AFTER_POST);
        let p = s
            .wait_for("p", &format!("{value} handled"), |p| handled(p, &value))
            .await;
        // The restarted operator's own log: a second POST would stop it at the pause point.
        // Time for a wrong second POST to show (it would also hit the pause point).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            posts(&s),
            before + 1,
            "round {round} ({style:?}): {value} was POSTed again after the crash\n{}",
            s.operator_log()
        );
        assert!(
            !s.operator_log().contains("pause point reached"),
            "round {round}: the restarted operator POSTed"
        );
        let outcome = p.status.and_then(|st| st.last_rotate_outcome);
        assert_eq!(outcome, Some(keyrotor::crd::RotateOutcome::Rotated));
    }
    eprintln!(
        "{style:?}: {} rounds, {} POSTs for {} requests",
        rounds(),
        posts(&s),
        rounds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_a_rotation_rotates_once_through_a_crash_at_second_precision() {
    crash_after_a_post_right_after_a_rotation(TimestampStyle {
        precision: Precision::Seconds,
        offset: OffsetStyle::Z,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_a_rotation_rotates_once_through_a_crash_at_alternating_precision() {
    crash_after_a_post_right_after_a_rotation(TimestampStyle {
        precision: Precision::Alternating,
        offset: OffsetStyle::Alternating,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_checks_that_see_one_rotation_in_other_forms_write_no_status() {
    let mut s = Scenario::new("canonical").await;
    s.sim().set_timestamp_style(TimestampStyle {
        precision: Precision::Alternating,
        offset: OffsetStyle::Alternating,
    });
    // A rotation with a fraction, so the forms really differ.
    let at = "2026-11-20T06:12:22.277130Z".parse().expect("timestamp");
    s.sim().upsert_account(
        AccountSeed::new(ACCOUNT)
            .with_interval(30)
            .last_rotated_at(at),
    );
    s.start_with_ready_policy(json!({"driftCheckInterval": "1s"}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = s.policy("p").await;
    let status = p.status.clone().expect("status");
    assert_eq!(
        status
            .last_key_rotation_at
            .map(|t| t.to_string())
            .as_deref(),
        Some("2026-11-20T06:12:22Z"),
        "the status holds the canonical form"
    );
    let version = p.metadata.resource_version;
    s.sim().clear_requests();
    while s.calls("GET").len() < 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        s.policy("p").await.metadata.resource_version,
        version,
        "a drift check wrote the status although nothing changed\n{}",
        s.operator_log()
    );
    assert_eq!(s.sim().requests().len(), s.calls("GET").len(), "only GETs");
}
