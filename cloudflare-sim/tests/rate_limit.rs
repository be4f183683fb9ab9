//! Per-credential rate limit: budget headers, 429 with Retry-After, block length.

mod common;

use std::time::Duration;

use common::*;
use keyrotor_cloudflare_sim::RateLimitConfig;
use reqwest::Method;
use serde_json::json;

async fn small_budget() -> Harness {
    let mut config = config();
    config.rate_limit = RateLimitConfig {
        limit: 3,
        window: Duration::from_secs(60),
    };
    start_with(config).await
}

#[tokio::test]
async fn normal_answers_describe_the_default_budget() {
    let h = start().await;
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(
        answer.header("ratelimit-policy").as_deref(),
        Some("\"default\";q=1200;w=300")
    );
    assert_eq!(
        answer.header("ratelimit").as_deref(),
        Some("\"default\";r=1199;t=300")
    );
    assert_eq!(answer.header("retry-after"), None);
}

#[tokio::test]
async fn going_over_blocks_the_credential_for_a_full_window() {
    let h = small_budget().await;
    for remaining in [2, 1, 0] {
        let answer = h.get_keys(ACCOUNT).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("ratelimit").as_deref(),
            Some(format!("\"default\";r={remaining};t=60").as_str())
        );
    }
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!((answer.status, answer.code()), (429, Some(971)));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Please wait and consider throttling your request speed"
    );
    assert_eq!(answer.header("retry-after").as_deref(), Some("60"));

    // Still blocked half-way through, with the wait counting down.
    h.sim().advance_clock(Duration::from_secs(30));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 429);
    let retry: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((29..=30).contains(&retry), "{retry}");

    // Writes are refused too, and change nothing.
    let answer = h.rotate(ACCOUNT).await;
    assert_eq!(answer.status, 429);
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 0);

    h.sim().advance_clock(Duration::from_secs(31));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.header("ratelimit").as_deref(),
        Some("\"default\";r=2;t=60")
    );
}

#[tokio::test]
async fn budgets_are_per_credential() {
    let h = small_budget().await;
    for _ in 0..4 {
        h.get_keys(ACCOUNT).await;
    }
    assert_eq!(h.get_keys(ACCOUNT).await.status, 429);
    let other = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &global_key(API_KEY, EMAIL),
            None,
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
}

#[tokio::test]
async fn an_elapsed_window_refills_without_a_block() {
    let h = small_budget().await;
    for _ in 0..3 {
        assert_eq!(h.get_keys(ACCOUNT).await.status, 200);
    }
    h.sim().advance_clock(Duration::from_secs(61));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("ratelimit").as_deref(),
        Some("\"default\";r=2;t=60")
    );
}

#[tokio::test]
async fn control_call_changes_the_limit() {
    let h = start().await;
    let answer = h
        .control(
            Method::PUT,
            "/rate-limit",
            Some(json!({"limit": 1, "windowSeconds": 10})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json(), json!({"limit": 1, "windowSeconds": 10}));
    assert_eq!(
        h.get_keys(ACCOUNT)
            .await
            .header("ratelimit-policy")
            .as_deref(),
        Some("\"default\";q=1;w=10")
    );
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after").as_deref(), Some("10"));
    let answer = h
        .control(
            Method::PUT,
            "/rate-limit",
            Some(json!({"limit": 1, "windowSeconds": 0})),
        )
        .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn authentication_failures_carry_no_budget_headers() {
    let h = small_budget().await;
    let answer = h
        .send(Method::GET, &h.keys_url(ACCOUNT), &bearer("wrong"), None)
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.header("ratelimit"), None);
}
