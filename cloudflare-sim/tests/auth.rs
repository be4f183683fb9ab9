//! Authentication and permission answers, in Cloudflare's order.

mod common;

use common::*;
use reqwest::Method;

#[tokio::test]
async fn bearer_and_global_key_together_is_6003_with_both_chain_items() {
    let h = start().await;
    let mut headers = bearer(TOKEN);
    headers.extend(global_key(API_KEY, EMAIL));
    let answer = h
        .send(Method::GET, &h.keys_url(ACCOUNT), &headers, None)
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.code(), Some(6003));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Invalid request headers"
    );
    assert_eq!(answer.chain(), vec![6111, 6103]);
    assert_eq!(answer.json()["success"], false);
    assert_eq!(answer.json()["result"], serde_json::Value::Null);
}

#[tokio::test]
async fn no_credentials_is_10001() {
    let h = start().await;
    let answer = h.send(Method::GET, &h.keys_url(ACCOUNT), &[], None).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.code(), Some(10001));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Unable to authenticate request"
    );
}

#[tokio::test]
async fn half_a_global_key_is_6003_naming_the_missing_header() {
    let h = start().await;
    let email_only = [("x-auth-email", EMAIL.to_owned())];
    let answer = h
        .send(Method::GET, &h.keys_url(ACCOUNT), &email_only, None)
        .await;
    assert_eq!((answer.status, answer.code()), (400, Some(6003)));
    assert_eq!(answer.chain(), vec![6103]);

    let key_only = [("x-auth-key", API_KEY.to_owned())];
    let answer = h
        .send(Method::GET, &h.keys_url(ACCOUNT), &key_only, None)
        .await;
    assert_eq!((answer.status, answer.code()), (400, Some(6003)));
    assert_eq!(answer.chain(), vec![6102]);
}

#[tokio::test]
async fn malformed_authorization_is_6003_with_6111() {
    let h = start().await;
    let basic = [("authorization", "Basic dXNlcjpwYXNz".to_owned())];
    let answer = h
        .send(Method::GET, &h.keys_url(ACCOUNT), &basic, None)
        .await;
    assert_eq!((answer.status, answer.code()), (400, Some(6003)));
    assert_eq!(answer.chain(), vec![6111]);
}

#[tokio::test]
async fn unknown_token_is_403_9109() {
    let h = start().await;
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &bearer("not-a-known-token"),
            None,
        )
        .await;
    assert_eq!((answer.status, answer.code()), (403, Some(9109)));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Invalid access token"
    );
}

#[tokio::test]
async fn unknown_global_key_is_403_9103() {
    let h = start().await;
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &global_key(API_KEY, "other@example.com"),
            None,
        )
        .await;
    assert_eq!((answer.status, answer.code()), (403, Some(9103)));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Unknown X-Auth-Key or X-Auth-Email"
    );
}

#[tokio::test]
async fn global_key_with_email_authenticates() {
    let h = start().await;
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &global_key(API_KEY, EMAIL),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["success"], true);
}

#[tokio::test]
async fn scoped_credential_is_refused_other_accounts_with_10000() {
    let h = start().await;
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(ACCOUNT),
            &bearer(SCOPED_TOKEN),
            None,
        )
        .await;
    assert_eq!((answer.status, answer.code()), (403, Some(10000)));
    assert_eq!(
        answer.json()["errors"][0]["message"],
        "Authentication error"
    );
    let answer = h
        .send(
            Method::GET,
            &h.keys_url(OTHER_ACCOUNT),
            &bearer(SCOPED_TOKEN),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn read_only_credential_reads_but_cannot_write() {
    let h = start().await;
    let reader = bearer(READ_ONLY_TOKEN);
    let answer = h
        .send(Method::GET, &h.keys_url(ACCOUNT), &reader, None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = r#"{"key_rotation_interval_days": 30}"#;
    let answer = h
        .send(Method::PUT, &h.keys_url(ACCOUNT), &reader, Some(body))
        .await;
    assert_eq!((answer.status, answer.code()), (403, Some(10000)));
    let answer = h
        .send(Method::POST, &h.rotate_url(ACCOUNT), &reader, None)
        .await;
    assert_eq!((answer.status, answer.code()), (403, Some(10000)));
    let view = h.sim().account(ACCOUNT).expect("account exists");
    assert_eq!((view.key_rotation_interval_days, view.rotations), (42, 0));
}

#[tokio::test]
async fn authentication_is_checked_before_the_account() {
    let h = start().await;
    let answer = h
        .send(Method::GET, &h.keys_url("no-such-account"), &[], None)
        .await;
    assert_eq!(answer.code(), Some(10001));
    let answer = h
        .send(
            Method::GET,
            &h.keys_url("no-such-account"),
            &bearer("wrong"),
            None,
        )
        .await;
    assert_eq!(answer.code(), Some(9109));
}
