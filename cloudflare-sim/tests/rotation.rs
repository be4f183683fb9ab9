//! Automatic rotation on the simulator's clock.

mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::json;

const DAY: u64 = 86_400;

fn last_rotation(answer: &Answer) -> Timestamp {
    answer.json()["result"]["last_key_rotation_at"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("last_key_rotation_at is RFC 3339")
}

#[tokio::test]
async fn interval_elapsing_rotates_by_itself_at_the_due_time() {
    let h = start().await;
    let seeded = last_rotation(&h.get_keys(ACCOUNT).await);
    h.sim().advance_clock(Duration::from_secs(43 * DAY));
    let answer = h.get_keys(ACCOUNT).await;
    // Rotated when due (seeded + 42 days), not when looked at.
    assert_eq!(
        last_rotation(&answer),
        seeded + SignedDuration::from_hours(42 * 24)
    );
    assert_eq!(answer.json()["result"]["days_until_next_rotation"], 40);
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 1);
}

#[tokio::test]
async fn countdown_follows_the_clock_until_due() {
    let h = start().await;
    h.sim().advance_clock(Duration::from_secs(41 * DAY));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.json()["result"]["days_until_next_rotation"], 0);
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 0);
}

#[tokio::test]
async fn several_missed_intervals_count_as_several_rotations() {
    let h = start().await;
    h.sim().advance_clock(Duration::from_secs(130 * DAY));
    let view = h.sim().account(ACCOUNT).expect("exists");
    assert_eq!(view.rotations, 3);
    // Due on days 42, 84 and 126; the next is day 168.
    assert_eq!(view.days_until_next_rotation, 37);
}

#[tokio::test]
async fn clock_control_call_advances_time() {
    let h = start().await;
    let before = h.control(Method::GET, "/clock", None).await.json()["now"]
        .as_str()
        .and_then(|text| text.parse::<Timestamp>().ok())
        .expect("clock answers a time");
    let answer = h
        .control(
            Method::POST,
            "/clock/advance",
            Some(json!({"seconds": 42.5 * DAY as f64})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let after: Timestamp = answer.json()["now"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("advance answers the new time");
    assert!(after.duration_since(before) >= SignedDuration::from_hours(42 * 24 + 12));
    let view = h
        .control(Method::GET, &format!("/accounts/{ACCOUNT}"), None)
        .await;
    assert_eq!(view.json()["rotations"], 1);
}

#[tokio::test]
async fn shortening_the_interval_past_the_elapsed_time_rotates() {
    let h = start().await;
    h.sim().advance_clock(Duration::from_secs(30 * DAY));
    let answer = h
        .put_keys(ACCOUNT, r#"{"key_rotation_interval_days": 21}"#)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["result"]["days_until_next_rotation"], 11);
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 1);
}

#[tokio::test]
async fn an_on_demand_rotation_restarts_the_schedule() {
    let h = start().await;
    h.sim().advance_clock(Duration::from_secs(40 * DAY));
    h.rotate(ACCOUNT).await;
    h.sim().advance_clock(Duration::from_secs(5 * DAY));
    let view = h.sim().account(ACCOUNT).expect("exists");
    assert_eq!(
        view.rotations, 1,
        "day 45 is only 5 days after the rotation"
    );
    assert_eq!(view.days_until_next_rotation, 36);
}

#[tokio::test]
async fn disabled_accounts_do_not_rotate() {
    let h = start().await;
    h.sim().advance_clock(Duration::from_secs(400 * DAY));
    assert_eq!(
        h.sim().account(DISABLED_ACCOUNT).expect("exists").rotations,
        0
    );
}
