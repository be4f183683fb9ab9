//! The `/__sim` control API and the request log.

mod common;

use common::*;
use keyrotor_cloudflare_sim::RequestRecord;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn request_log_records_each_api_call() {
    let h = start().await;
    h.get_keys(ACCOUNT).await;
    h.send(Method::GET, &h.keys_url(ACCOUNT), &[], None).await;
    h.send(Method::GET, &h.keys_url(ACCOUNT), &bearer("nope"), None)
        .await;
    h.control(Method::GET, "/clock", None).await;
    let answer = h.control(Method::GET, "/requests", None).await;
    assert_eq!(answer.status, 200);
    let records: Vec<RequestRecord> = serde_json::from_str(&answer.text).expect("records");
    assert_eq!(records.len(), 3, "control calls are not logged");
    let first = &records[0];
    assert_eq!(first.seq, 1);
    assert_eq!(first.method, "GET");
    assert_eq!(
        first.path,
        format!("/client/v4/accounts/{ACCOUNT}/access/keys")
    );
    assert_eq!(first.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(first.credential, "ci");
    assert_eq!(first.status, 200);
    assert_eq!(first.fault, None);
    assert!(first.time <= h.sim().now());
    assert_eq!(
        (records[1].credential.as_str(), records[1].status),
        ("anonymous", 400)
    );
    assert_eq!(
        (records[2].credential.as_str(), records[2].status),
        ("unknown", 403)
    );
    let raw = answer.json();
    for field in [
        "seq",
        "time",
        "method",
        "path",
        "accountId",
        "credential",
        "status",
        "fault",
    ] {
        assert!(raw[0].get(field).is_some(), "{field} missing: {raw}");
    }
}

#[tokio::test]
async fn request_log_never_contains_secrets() {
    let h = start().await;
    h.get_keys(ACCOUNT).await;
    h.send(
        Method::GET,
        &h.keys_url(ACCOUNT),
        &global_key(API_KEY, EMAIL),
        None,
    )
    .await;
    h.send(
        Method::GET,
        &h.keys_url(ACCOUNT),
        &global_key(API_KEY, "x@example.com"),
        None,
    )
    .await;
    h.send(
        Method::GET,
        &h.keys_url(ACCOUNT),
        &[("x-auth-email", EMAIL.to_owned())],
        None,
    )
    .await;
    let mut both = bearer(TOKEN);
    both.extend(global_key(API_KEY, EMAIL));
    h.send(Method::GET, &h.keys_url(ACCOUNT), &both, None).await;
    h.sim()
        .set_faults(serde_json::from_value(json!({"html": 1})).expect("faults"));
    h.get_keys(ACCOUNT).await;
    let text = h.control(Method::GET, "/requests", None).await.text;
    for secret in [TOKEN, API_KEY, EMAIL, "SECRET"] {
        assert!(!text.contains(secret), "log shows {secret}: {text}");
    }
    let credentials: Vec<String> = h
        .sim()
        .requests()
        .into_iter()
        .map(|r| r.credential)
        .collect();
    assert_eq!(
        credentials,
        ["ci", "legacy", "unknown", "unknown", "unknown", "ci"]
    );
}

#[tokio::test]
async fn clearing_the_log_empties_it() {
    let h = start().await;
    h.get_keys(ACCOUNT).await;
    let answer = h.control(Method::DELETE, "/requests", None).await;
    assert_eq!(answer.status, 204);
    assert!(h.sim().requests().is_empty());
    h.get_keys(ACCOUNT).await;
    assert_eq!(h.sim().requests().len(), 1);
}

#[tokio::test]
async fn reset_returns_to_the_configured_state() {
    let h = start().await;
    h.put_keys(ACCOUNT, r#"{"key_rotation_interval_days": 90}"#)
        .await;
    h.rotate(ACCOUNT).await;
    h.control(
        Method::PUT,
        "/credentials/extra",
        Some(json!({"token": "extra-token"})),
    )
    .await;
    h.control(Method::PUT, "/accounts/new-account", Some(json!({})))
        .await;
    h.control(
        Method::POST,
        "/clock/advance",
        Some(json!({"seconds": 1_000_000})),
    )
    .await;
    h.control(Method::PUT, "/faults", Some(json!({"latencyMs": 5})))
        .await;
    h.control(
        Method::PUT,
        "/rate-limit",
        Some(json!({"limit": 1, "windowSeconds": 60})),
    )
    .await;

    let answer = h.control(Method::POST, "/reset", None).await;
    assert_eq!(answer.status, 204);

    assert!(h.sim().requests().is_empty());
    assert_eq!(h.sim().faults(), Default::default());
    assert_eq!(h.sim().rate_limit(), Default::default());
    assert!(
        h.sim().now().duration_since(jiff::Timestamp::now()) < jiff::SignedDuration::from_secs(5)
    );
    assert!(h.sim().account("new-account").is_none());
    let view = h.sim().account(ACCOUNT).expect("configured account");
    assert_eq!((view.key_rotation_interval_days, view.rotations), (42, 0));
    let extra = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &bearer("extra-token"),
            None,
        )
        .await;
    assert_eq!(extra.code(), Some(9109));
    assert_eq!(h.get_keys(ACCOUNT).await.status, 200);
}

#[tokio::test]
async fn accounts_can_be_read_created_and_drifted() {
    let h = start().await;
    let answer = h
        .control(Method::GET, &format!("/accounts/{ACCOUNT}"), None)
        .await;
    assert_eq!(answer.status, 200);
    let view = answer.json();
    assert_eq!(view["id"], ACCOUNT);
    assert_eq!(view["keyRotationIntervalDays"], 42);
    assert_eq!(view["accessKeysEnabled"], true);
    assert_eq!(view["rotations"], 0);
    assert!(view["lastKeyRotationAt"].is_string());
    assert!(view["daysUntilNextRotation"].is_i64());

    let answer = h.control(Method::GET, "/accounts/missing", None).await;
    assert_eq!(answer.status, 404);

    // Drift: an interval the API would refuse, and an old rotation time.
    let answer = h
        .control(
            Method::PUT,
            &format!("/accounts/{ACCOUNT}"),
            Some(
                json!({"keyRotationIntervalDays": 7, "lastKeyRotationAt": "2026-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let api = h.get_keys(ACCOUNT).await.json();
    assert_eq!(api["result"]["key_rotation_interval_days"], 7);
    assert!(
        api["result"]["days_until_next_rotation"]
            .as_i64()
            .is_some_and(|days| days < 7)
    );

    let answer = h
        .control(
            Method::PUT,
            "/accounts/brand-new",
            Some(json!({"accessKeysEnabled": false})),
        )
        .await;
    assert_eq!(answer.json()["keyRotationIntervalDays"], 42);
    assert_eq!(h.get_keys("brand-new").await.code(), Some(12109));
    h.control(
        Method::PUT,
        "/accounts/brand-new",
        Some(json!({"accessKeysEnabled": true})),
    )
    .await;
    assert_eq!(h.get_keys("brand-new").await.status, 200);

    let answer = h
        .control(
            Method::PUT,
            "/accounts/bad",
            Some(json!({"keyRotationIntervalDays": 0})),
        )
        .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn library_calls_change_accounts_too() {
    let h = start().await;
    assert!(h.sim().set_interval(ACCOUNT, 400));
    assert!(!h.sim().set_interval("missing", 30));
    assert_eq!(
        h.get_keys(ACCOUNT).await.json()["result"]["key_rotation_interval_days"],
        400
    );
    h.sim()
        .upsert_account(keyrotor_cloudflare_sim::AccountSeed::new("lib").with_interval(30));
    assert_eq!(
        h.get_keys("lib").await.json()["result"]["key_rotation_interval_days"],
        30
    );
}

#[tokio::test]
async fn credentials_can_be_added_limited_and_removed() {
    let h = start().await;
    let answer = h
        .control(
            Method::PUT,
            "/credentials/ops",
            Some(json!({"apiKey": "ops-key", "email": "ops2@example.com", "accounts": [OTHER_ACCOUNT], "readOnly": true})),
        )
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let ops = global_key("ops-key", "ops2@example.com");
    assert_eq!(
        h.send(Method::GET, &h.keys_url(OTHER_ACCOUNT), &ops, None)
            .await
            .status,
        200
    );
    assert_eq!(
        h.send(Method::GET, &h.keys_url(ACCOUNT), &ops, None)
            .await
            .code(),
        Some(10000)
    );
    assert_eq!(
        h.send(Method::POST, &h.rotate_url(OTHER_ACCOUNT), &ops, None)
            .await
            .code(),
        Some(10000)
    );

    h.control(
        Method::PUT,
        "/credentials/ci",
        Some(json!({"token": "rotated-token"})),
    )
    .await;
    assert_eq!(
        h.get_keys(ACCOUNT).await.code(),
        Some(9109),
        "old token no longer works"
    );
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &bearer("rotated-token"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200);

    assert_eq!(
        h.control(Method::DELETE, "/credentials/ci", None)
            .await
            .status,
        204
    );
    assert_eq!(
        h.control(Method::DELETE, "/credentials/ci", None)
            .await
            .status,
        404
    );
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &bearer("rotated-token"),
            None,
        )
        .await;
    assert_eq!(answer.code(), Some(9109));

    for body in [
        json!({}),
        json!({"token": "t", "apiKey": "k", "email": "e"}),
        json!({"apiKey": "k"}),
    ] {
        let answer = h
            .control(Method::PUT, "/credentials/bad", Some(body.clone()))
            .await;
        assert_eq!(answer.status, 400, "{body}");
    }
}

#[tokio::test]
async fn clock_advance_refuses_negative_seconds() {
    let h = start().await;
    let answer = h
        .control(Method::POST, "/clock/advance", Some(json!({"seconds": -1})))
        .await;
    assert_eq!(answer.status, 400);
    let answer = h
        .control(Method::POST, "/clock/advance", Some(json!({"sec": 1})))
        .await;
    assert_eq!(answer.status, 400);
}

/// Times in answers take the form the control API sets, alternating per
/// answer when asked; every answer's `Date` header is the simulated clock.
#[tokio::test]
async fn the_form_of_times_follows_the_control_api_and_date_is_the_simulated_clock() {
    let h = start().await;
    let first = h.get_keys(ACCOUNT).await;
    let micros = first.json()["result"]["last_key_rotation_at"]
        .as_str()
        .expect("a time")
        .to_owned();
    assert!(micros.ends_with('Z'), "{micros}");
    let set = h
        .control(
            Method::PUT,
            "/timestamps",
            Some(json!({"precision": "seconds", "offset": "alternating"})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let forms: Vec<String> = [h.get_keys(ACCOUNT).await, h.get_keys(ACCOUNT).await]
        .iter()
        .map(|a| {
            a.json()["result"]["last_key_rotation_at"]
                .as_str()
                .expect("a time")
                .to_owned()
        })
        .collect();
    let second = &micros[..19];
    assert!(forms.contains(&format!("{second}Z")), "{forms:?}");
    assert!(forms.contains(&format!("{second}+00:00")), "{forms:?}");
    let read = h.control(Method::GET, "/timestamps", None).await;
    assert_eq!(
        read.json(),
        json!({"precision": "seconds", "offset": "alternating"})
    );
    assert_eq!(
        h.control(
            Method::PUT,
            "/timestamps",
            Some(json!({"precision": "nanos"}))
        )
        .await
        .status,
        400
    );

    // Date: the simulator's clock, also when moved a year ahead.
    h.sim()
        .advance_clock(std::time::Duration::from_secs(365 * 86_400));
    let answer = h.get_keys(ACCOUNT).await;
    let date = answer.header("date").expect("a Date header");
    let parsed = jiff::fmt::rfc2822::parse(&date)
        .expect("an HTTP date")
        .timestamp();
    let now = h.sim().now();
    assert!(
        (now.as_second() - parsed.as_second()).abs() <= 1,
        "Date {date} is not the simulated now {now}"
    );
}
