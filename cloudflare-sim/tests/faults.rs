//! Fault injection: each kind, its counters, and that it spares `/__sim`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use keyrotor_cloudflare_sim::{Faults, Force429};
use reqwest::Method;
use serde_json::json;

fn faults(body: serde_json::Value) -> Faults {
    serde_json::from_value(body).expect("valid faults")
}

#[tokio::test]
async fn latency_delays_every_api_call() {
    let h = start().await;
    h.sim().set_faults(faults(json!({"latencyMs": 150})));
    let started = Instant::now();
    let answer = h.get_keys(ACCOUNT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 200);
    assert_eq!(h.sim().requests()[0].fault.as_deref(), Some("latency"));
}

#[tokio::test]
async fn error_rate_one_answers_5xx_envelopes_and_changes_nothing() {
    let h = start().await;
    h.sim()
        .set_faults(faults(json!({"errorRate": 1.0, "errorStatus": 503})));
    let answer = h.rotate(ACCOUNT).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["success"], false);
    assert!(answer.code().is_some_and(|code| code >= 1000));
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 0);
    assert_eq!(h.sim().requests()[0].fault.as_deref(), Some("error"));
}

#[tokio::test]
async fn random_5xx_status_is_500_502_or_503() {
    let h = start().await;
    h.sim().set_faults(faults(json!({"errorRate": 1.0})));
    for _ in 0..20 {
        let status = h.get_keys(ACCOUNT).await.status;
        assert!([500, 502, 503].contains(&status), "{status}");
    }
}

#[tokio::test]
async fn forced_429_with_and_without_retry_after() {
    let h = start().await;
    h.sim().set_faults(Faults {
        force_429: Some(Force429 {
            count: 2,
            retry_after_seconds: Some(7),
        }),
        ..Faults::default()
    });
    for _ in 0..2 {
        let answer = h.get_keys(ACCOUNT).await;
        assert_eq!((answer.status, answer.code()), (429, Some(971)));
        assert_eq!(answer.header("retry-after").as_deref(), Some("7"));
    }
    assert_eq!(h.get_keys(ACCOUNT).await.status, 200);

    h.sim().set_faults(faults(
        json!({"force429": {"count": 1, "retryAfterSeconds": null}}),
    ));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), None);
    assert_eq!(h.get_keys(ACCOUNT).await.status, 200);
}

#[tokio::test]
async fn hang_never_answers_but_other_requests_go_on() {
    let h = start().await;
    h.sim().set_faults(faults(json!({"hang": 1})));
    let hung = {
        let request = h
            .http
            .get(h.keys_url(ACCOUNT))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_millis(500));
        tokio::spawn(async move { request.send().await })
    };
    // Let the hung request arrive first and take the hang.
    while h.sim().requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 200, "a hang does not block other requests");
    let outcome = hung.await.expect("task runs");
    assert!(
        outcome.is_err_and(|error| error.is_timeout()),
        "the hung request times out"
    );
    let record = &h.sim().requests()[0];
    assert_eq!((record.status, record.fault.as_deref()), (0, Some("hang")));

    // A hang still held does not keep shutdown waiting.
    h.sim().set_faults(faults(json!({"hang": 1})));
    let held = {
        let request = h.http.get(h.keys_url(ACCOUNT)).bearer_auth(TOKEN);
        tokio::spawn(async move { request.send().await })
    };
    while h.sim().requests().len() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    h.running.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn html_fault_answers_an_html_page() {
    let h = start().await;
    h.sim().set_faults(faults(json!({"html": 1})));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.status, 502);
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        answer.text.starts_with("<!DOCTYPE html>"),
        "{}",
        answer.text
    );
    assert!(serde_json::from_str::<serde_json::Value>(&answer.text).is_err());
    assert_eq!(h.get_keys(ACCOUNT).await.status, 200);

    h.sim()
        .set_faults(faults(json!({"html": 1, "errorStatus": 503})));
    assert_eq!(h.get_keys(ACCOUNT).await.status, 503);
}

#[tokio::test]
async fn truncated_answer_is_200_with_cut_json_after_the_work_is_done() {
    let h = start().await;
    h.sim().set_faults(faults(json!({"truncated": 1})));
    let answer = h.rotate(ACCOUNT).await;
    assert_eq!(answer.status, 200);
    assert!(!answer.text.is_empty());
    assert!(
        serde_json::from_str::<serde_json::Value>(&answer.text).is_err(),
        "{}",
        answer.text
    );
    assert_eq!(h.sim().account(ACCOUNT).expect("exists").rotations, 1);
    assert_eq!(h.sim().requests()[0].fault.as_deref(), Some("truncated"));
    let answer = h.get_keys(ACCOUNT).await;
    assert_eq!(answer.json()["success"], true);
}

#[tokio::test]
async fn faults_spare_the_control_api_and_count_down() {
    let h = start().await;
    let answer = h
        .control(
            Method::PUT,
            "/faults",
            Some(json!({"html": 3, "errorRate": 0.0})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = h.control(Method::GET, "/faults", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["html"], 3);
    h.get_keys(ACCOUNT).await;
    let answer = h.control(Method::GET, "/faults", None).await;
    assert_eq!(answer.json()["html"], 2);
    let answer = h.control(Method::DELETE, "/faults", None).await;
    assert_eq!(answer.json()["html"], 0);
    assert_eq!(h.get_keys(ACCOUNT).await.status, 200);
}

#[tokio::test]
async fn invalid_faults_are_refused() {
    let h = start().await;
    for body in [
        json!({"errorRate": 1.5}),
        json!({"errorStatus": 404}),
        json!({"hang": -1}),
    ] {
        let answer = h.control(Method::PUT, "/faults", Some(body.clone())).await;
        assert_eq!(answer.status, 400, "{body}");
        assert!(answer.json()["error"].is_string(), "{}", answer.text);
    }
}
