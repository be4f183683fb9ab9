//! The three key endpoints: shapes, validation, rotation, routing errors.

mod common;

use common::*;
use jiff::Timestamp;
use reqwest::Method;
use serde_json::json;

fn last_rotation(answer: &Answer) -> Timestamp {
    answer.json()["result"]["last_key_rotation_at"]
        .as_str()
        .expect("last_key_rotation_at is a string")
        .parse()
        .expect("last_key_rotation_at is RFC 3339")
}

#[tokio::test]
async fn get_returns_the_key_config_in_a_success_envelope() {
    let h = start().await;
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = answer.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["messages"], json!([]));
    assert_eq!(body["result"]["key_rotation_interval_days"], 42);
    // Seeded "now": a few milliseconds have passed, so 41 whole days remain.
    assert_eq!(body["result"]["days_until_next_rotation"], 41);
    let stamp = body["result"]["last_key_rotation_at"]
        .as_str()
        .expect("string");
    assert!(stamp.ends_with('Z'), "{stamp}");
    let seconds_fraction = stamp.rsplit(':').next().unwrap_or_default();
    assert!(
        seconds_fraction.len() <= "44.512345Z".len(),
        "microsecond precision at most: {stamp}"
    );
    assert_eq!(
        last_rotation(&answer),
        h.sim()
            .account(ACCOUNT)
            .expect("exists")
            .last_key_rotation_at
    );
}

#[tokio::test]
async fn seeded_last_rotation_is_shown_as_given() {
    let seeded = Timestamp::from_microsecond(Timestamp::now().as_microsecond() - 3_600_000_000)
        .expect("an hour ago is a valid time");
    let mut config = config();
    config.accounts = vec![
        keyrotor_cloudflare_sim::AccountSeed::new(ACCOUNT)
            .with_interval(365)
            .last_rotated_at(seeded),
    ];
    let h = start_with(config).await;
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(
        answer.json()["result"]["last_key_rotation_at"],
        seeded.to_string()
    );
    assert_eq!(answer.json()["result"]["days_until_next_rotation"], 364);
}

#[tokio::test]
async fn put_changes_the_interval() {
    let h = start().await;
    let answer = h
        .put_keys(ACCOUNT, r#"{"key_rotation_interval_days": 90}"#)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["result"]["key_rotation_interval_days"], 90);
    assert_eq!(answer.json()["result"]["days_until_next_rotation"], 89);
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.json()["result"]["key_rotation_interval_days"], 90);
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 0);
}

#[tokio::test]
async fn put_validation_answers_400_pointing_at_the_field() {
    let h = start().await;
    let cases = [
        ("not json", "not valid JSON"),
        ("[90]", "JSON object"),
        ("{}", "required"),
        (
            r#"{"key_rotation_interval_days": "30"}"#,
            "must be a number",
        ),
        (r#"{"key_rotation_interval_days": 30.5}"#, "whole number"),
        (
            r#"{"key_rotation_interval_days": 20}"#,
            "between 21 and 365",
        ),
        (
            r#"{"key_rotation_interval_days": 366}"#,
            "between 21 and 365",
        ),
        (r#"{"key_rotation_interval_days": 0}"#, "between 21 and 365"),
    ];
    for (body, message) in cases {
        let answer = h.put_keys(ACCOUNT, body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        let error = &answer.json()["errors"][0];
        assert!(
            error["code"].as_u64().is_some_and(|code| code >= 1000),
            "{body}"
        );
        assert_eq!(
            error["source"]["pointer"], "/key_rotation_interval_days",
            "{body}"
        );
        let text = error["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{body}: {text}");
    }
    let answer = h
        .send(Method::PUT, &h.keys_url(ACCOUNT), &bearer(TOKEN), None)
        .await;
    assert_eq!(answer.status, 400, "an empty body is not JSON");
    assert_eq!(
        h.sim()
            .account(ACCOUNT)
            .expect("exists")
            .key_rotation_interval_days,
        42
    );
}

#[tokio::test]
async fn put_accepts_the_bounds() {
    let h = start().await;
    for days in [21, 365] {
        let answer = h
            .put_keys(
                ACCOUNT,
                &format!(r#"{{"key_rotation_interval_days": {days}}}"#),
            )
            .await;
        assert_eq!(answer.status, 200, "{days}: {}", answer.text);
    }
}

#[tokio::test]
async fn rotate_moves_last_rotation_to_now_and_restarts_the_countdown() {
    let h = start().await;
    let before = last_rotation(&h.get_keys(ACCOUNT).await);
    h.sim()
        .advance_clock(std::time::Duration::from_secs(10 * 86_400));
    let answer = h.rotate(ACCOUNT).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let after = last_rotation(&answer);
    assert!(after.duration_since(before) >= jiff::SignedDuration::from_hours(240));
    assert!(after <= h.sim().now());
    assert_eq!(answer.json()["result"]["days_until_next_rotation"], 42);
    assert_eq!(answer.json()["result"]["key_rotation_interval_days"], 42);
    assert_eq!(last_rotation(&h.get_keys(ACCOUNT).await), after);
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 1);
}

#[tokio::test]
async fn rotate_ignores_a_body() {
    let h = start().await;
    let answer = h
        .send(
            Method::POST,
            &h.rotate_url(ACCOUNT),
            &bearer(TOKEN),
            Some("{}"),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn unknown_account_is_404_7003() {
    let h = start().await;
    let answer = h.get_keys("ffffffffffffffffffffffffffffffff").await;
    assert_eq!((answer.status, answer.code()), (404, Some(7003)));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Could not route to /accounts/ffffffffffffffffffffffffffffffff/access/keys, perhaps your object identifier is invalid?"
    );
    let answer = h.rotate("nope").await;
    assert_eq!((answer.status, answer.code()), (404, Some(7003)));
    assert!(
        answer.text.contains("/accounts/nope/access/keys/rotate"),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn account_without_access_keys_is_404_12109() {
    let h = start().await;
    for answer in [
        h.get_keys(DISABLED_ACCOUNT).await,
        h.put_keys(DISABLED_ACCOUNT, r#"{"key_rotation_interval_days": 30}"#)
            .await,
        h.rotate(DISABLED_ACCOUNT).await,
    ] {
        assert_eq!((answer.status, answer.code()), (404, Some(12109)));
        assert_eq!(
            answer.json()["errors"][0]["message"],
            "Access Keys Configuration not enabled for account"
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_404_7000_and_wrong_methods_405_7001() {
    let h = start().await;
    let base = h.running.base_url();
    for url in [
        format!("{base}/zones"),
        format!("{base}/accounts/{ACCOUNT}/access/keys/nope"),
        base.clone(),
        format!("http://{}/elsewhere", h.running.addr()),
    ] {
        let answer = h.send(Method::GET, &url, &bearer(TOKEN), None).await;
        assert_eq!((answer.status, answer.code()), (404, Some(7000)), "{url}");
        assert_eq!(
            answer.json()["errors"][0]["message"],
            "No route for that URI"
        );
    }
    let answer = h
        .send(Method::DELETE, &h.keys_url(ACCOUNT), &bearer(TOKEN), None)
        .await;
    assert_eq!((answer.status, answer.code()), (405, Some(7001)));
    let answer = h
        .send(Method::GET, &h.rotate_url(ACCOUNT), &bearer(TOKEN), None)
        .await;
    assert_eq!((answer.status, answer.code()), (405, Some(7001)));
}
