//! Hostile envelopes: Cloudflare answers of every odd shape, each with the one
//! exact result `parse_response` must give. Moved here from `tests/hostile.rs`,
//! where they went through a raw TCP server; what the HTTP client adds
//! (retries, timeouts, body limits, transport errors) is still tested there.

use std::time::Duration;

use super::*;

const HTML: &str = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>";
const HTML_DETAIL: &str = "body is HTML, not JSON (a proxy or error page)";
const NOT_JSON: &str = "body is not valid JSON (truncated or corrupt)";
const NO_RESULT: &str = "the response has no `result` object";
const NOT_A_TIMESTAMP: &str =
    "`last_key_rotation_at` is not a timestamp; without it a rotation cannot be verified";
const GOOD: &str = r#"{"key_rotation_interval_days":30,"days_until_next_rotation":12,"last_key_rotation_at":"2026-11-14T09:12:44.5Z"}"#;

fn ok_result(result: &str) -> String {
    format!(r#"{{"success":true,"errors":[],"messages":[],"result":{result}}}"#)
}

fn config(interval: Option<i64>, days: Option<f64>, last: Option<&str>) -> AccountKeyConfig {
    AccountKeyConfig {
        key_rotation_interval_days: interval,
        days_until_next_rotation: days,
        last_key_rotation_at: last.map(|t| t.parse().expect("timestamp")),
        served_at: None,
    }
}

fn malformed(status: u16, detail: &str) -> Result<AccountKeyConfig, CloudflareError> {
    Err(CloudflareError::Malformed {
        status,
        detail: detail.to_owned(),
    })
}

fn rejected(
    status: u16,
    code: Option<i64>,
    message: &str,
) -> Result<AccountKeyConfig, CloudflareError> {
    Err(CloudflareError::Rejected {
        status,
        code,
        message: message.to_owned(),
        pointer: None,
    })
}

fn rate_limited(seconds: u64) -> Result<AccountKeyConfig, CloudflareError> {
    Err(CloudflareError::RateLimited {
        retry_after: Duration::from_secs(seconds),
    })
}

/// One answer: its name, HTTP status, `Retry-After`, body and the one result.
struct Case {
    name: &'static str,
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
    want: Result<AccountKeyConfig, CloudflareError>,
}

fn case(
    name: &'static str,
    status: u16,
    body: impl Into<String>,
    want: Result<AccountKeyConfig, CloudflareError>,
) -> Case {
    Case {
        name,
        status,
        retry_after: None,
        body: body.into(),
        want,
    }
}

#[test]
fn odd_envelopes_each_end_in_one_exact_result() {
    let cases = [
        case("html 200", 200, HTML, malformed(200, HTML_DETAIL)),
        case(
            "truncated json",
            200,
            r#"{"success":true,"result":{"key_rot"#,
            malformed(200, NOT_JSON),
        ),
        case("empty body", 200, "", malformed(200, "empty body")),
        case("204 no content", 204, "", malformed(204, "empty body")),
        case(
            "json with a byte-order mark",
            200,
            format!("\u{feff}{{\"success\":true,\"result\":{GOOD}}}"),
            malformed(200, NOT_JSON),
        ),
        case(
            "wrong types are read as absent",
            200,
            ok_result(
                r#"{"key_rotation_interval_days":"30","days_until_next_rotation":"12","last_key_rotation_at":"2026-11-14T09:12:44Z"}"#,
            ),
            Ok(config(None, None, Some("2026-11-14T09:12:44Z"))),
        ),
        case(
            "negative numbers are kept as sent",
            200,
            ok_result(
                r#"{"key_rotation_interval_days":-5,"days_until_next_rotation":-3,"last_key_rotation_at":"2026-11-14T09:12:44Z"}"#,
            ),
            Ok(config(Some(-5), Some(-3.0), Some("2026-11-14T09:12:44Z"))),
        ),
        case(
            "huge numbers: a non-integral interval is absent, days kept",
            200,
            ok_result(
                r#"{"key_rotation_interval_days":1e300,"days_until_next_rotation":1e308,"last_key_rotation_at":null}"#,
            ),
            Ok(config(None, Some(1e308), None)),
        ),
        case(
            "i64::MAX interval is an integer, beyond it is absent",
            200,
            ok_result(
                r#"{"key_rotation_interval_days":9223372036854775807,"days_until_next_rotation":18446744073709551616}"#,
            ),
            Ok(config(
                Some(i64::MAX),
                Some(18_446_744_073_709_551_616.0),
                None,
            )),
        ),
        case(
            "success false with status 200 is a refusal",
            200,
            r#"{"success":false,"errors":[{"code":1234,"message":"nope"}],"messages":[],"result":null}"#,
            rejected(200, Some(1234), "nope"),
        ),
        case(
            "success false with status 200 and an auth code",
            200,
            r#"{"success":false,"errors":[{"code":9109,"message":"Invalid access token"}],"result":null}"#,
            Err(CloudflareError::Authentication {
                status: 200,
                code: Some(9109),
                message: "Invalid access token".into(),
            }),
        ),
        case(
            "success false without errors",
            200,
            r#"{"success":false}"#,
            rejected(200, None, "HTTP 200 without an error message"),
        ),
        case(
            "missing result",
            200,
            r#"{"success":true,"errors":[]}"#,
            malformed(200, NO_RESULT),
        ),
        case(
            "null result",
            200,
            r#"{"success":true,"result":null}"#,
            malformed(200, NO_RESULT),
        ),
        case(
            "array result",
            200,
            format!(r#"{{"success":true,"result":[{GOOD}]}}"#),
            malformed(200, NO_RESULT),
        ),
        case(
            "success as a string is not false",
            200,
            format!(r#"{{"success":"yes","result":{GOOD}}}"#),
            Ok(config(Some(30), Some(12.0), Some("2026-11-14T09:12:44.5Z"))),
        ),
        case(
            "unknown fields everywhere are ignored",
            200,
            r#"{"success":true,"errors":[],"messages":[{"code":1,"message":"hi"}],"result_info":{"page":1},"result":{"key_rotation_interval_days":30,"days_until_next_rotation":12,"last_key_rotation_at":"2026-11-14T09:12:44Z","new_field":{"deep":[1,2,3]},"aud":"x"},"zzz":null}"#,
            Ok(config(Some(30), Some(12.0), Some("2026-11-14T09:12:44Z"))),
        ),
        case(
            "date with a space and no zone is UTC",
            200,
            ok_result(r#"{"last_key_rotation_at":"2026-11-14 09:12:44"}"#),
            Ok(config(None, None, Some("2026-11-14T09:12:44Z"))),
        ),
        case(
            "date with an offset",
            200,
            ok_result(r#"{"last_key_rotation_at":"2026-11-14T09:12:44+02:00"}"#),
            Ok(config(None, None, Some("2026-11-14T07:12:44Z"))),
        ),
        case(
            "date with nanoseconds",
            200,
            ok_result(r#"{"last_key_rotation_at":"2026-11-14T09:12:44.123456789Z"}"#),
            Ok(config(None, None, Some("2026-11-14T09:12:44.123456789Z"))),
        ),
        case(
            "date day-first is malformed",
            200,
            ok_result(r#"{"last_key_rotation_at":"14/11/2026"}"#),
            malformed(200, NOT_A_TIMESTAMP),
        ),
        case(
            "date as epoch seconds is malformed",
            200,
            ok_result(r#"{"last_key_rotation_at":1763111564}"#),
            malformed(200, NOT_A_TIMESTAMP),
        ),
        case(
            "date empty is malformed",
            200,
            ok_result(r#"{"last_key_rotation_at":""}"#),
            malformed(200, NOT_A_TIMESTAMP),
        ),
        Case {
            retry_after: Some("soon"),
            ..case(
                "429 with a Retry-After that is not a number waits 300 s",
                429,
                "",
                rate_limited(300),
            )
        },
        Case {
            retry_after: Some("Wed, 21 Oct 2026 07:28:00 GMT"),
            ..case(
                "429 with an HTTP-date Retry-After waits 300 s",
                429,
                "",
                rate_limited(300),
            )
        },
        Case {
            retry_after: Some("18446744073709551615"),
            ..case(
                "429 with an absurd Retry-After is capped at an hour",
                429,
                "",
                rate_limited(3600),
            )
        },
        case(
            "a 404 HTML page from a proxy reads as account not found",
            404,
            HTML,
            Err(CloudflareError::AccountNotFound {
                status: 404,
                code: None,
                message: HTML_DETAIL.into(),
            }),
        ),
        case(
            "an odd 4xx is a rejected request",
            418,
            "short and stout",
            rejected(418, None, NOT_JSON),
        ),
        case(
            "an html 502 is a server error (the client retries it)",
            502,
            HTML,
            Err(CloudflareError::Server {
                status: 502,
                code: None,
                message: HTML_DETAIL.into(),
                attempts: 1,
            }),
        ),
    ];
    for Case {
        name,
        status,
        retry_after,
        body,
        want,
    } in cases
    {
        assert_eq!(
            parse_response(status, retry_after, body.as_bytes(), false),
            want,
            "{name}"
        );
    }
}

#[test]
fn an_error_message_of_a_megabyte_is_cut_to_512_characters() {
    let body = format!(
        r#"{{"success":false,"errors":[{{"code":1,"message":"{}"}}]}}"#,
        "m".repeat(1_000_000)
    );
    match parse_response(200, None, body.as_bytes(), false) {
        Err(CloudflareError::Rejected { message, .. }) => {
            assert_eq!(
                message.chars().count(),
                513,
                "512 characters and an ellipsis"
            )
        }
        other => panic!("want Rejected, got {other:?}"),
    }
}

#[test]
fn a_body_cut_at_the_size_limit_is_malformed_whatever_it_held() {
    for body in [&b"{"[..], GOOD.as_bytes()] {
        assert_eq!(
            parse_response(200, None, body, true),
            malformed(200, "body larger than 1048576 bytes, not read")
        );
    }
}
