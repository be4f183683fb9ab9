//! Cloudflare's response envelope, read leniently: unknown fields are ignored,
//! every field is optional, a wrong type is treated as absent, and the HTTP
//! status decides the error class before the body adds detail. One exception:
//! a `last_key_rotation_at` that is there but unreadable makes the answer
//! malformed, because it is the witness of the exactly-once rotation protocol
//! and of the cooldown (read as "never rotated" it would let both through).

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::error::CloudflareError;

/// Responses larger than this are not read whole; the Access key config is tiny.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long to wait after a 429 without `Retry-After` (Cloudflare blocks for five minutes).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The longest `Retry-After` honoured. Cloudflare's block lasts its 5-minute
/// window; a larger value comes from a proxy or a typo, and an unbounded one
/// would block the credential for years or overflow the budget's clock.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Error codes that mean the credentials were not accepted.
const AUTH_CODES: [i64; 5] = [9109, 9103, 10000, 10001, 6003];
/// Error codes that mean the account or its Access key configuration is not there.
const NOT_FOUND_CODES: [i64; 3] = [7003, 7000, 12109];
/// Cloudflare's "please slow down" code.
const RATE_LIMIT_CODE: i64 = 971;

/// An account's Access key configuration, as Cloudflare reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountKeyConfig {
    /// Days between automatic rotations (absent or non-integral values read as `None`).
    pub key_rotation_interval_days: Option<i64>,
    /// Days until the next automatic rotation.
    pub days_until_next_rotation: Option<f64>,
    /// When the key was last rotated.
    pub last_key_rotation_at: Option<Timestamp>,
    /// The answer's `Date` header: the account's clock when it answered
    /// (whole seconds), if the answer had a readable one.
    pub served_at: Option<Timestamp>,
}

/// The first error item of a failure envelope.
#[derive(Debug, Default)]
struct ErrorItem {
    code: Option<i64>,
    message: Option<String>,
    pointer: Option<String>,
}

/// Turns one HTTP answer into a config or a typed error. Pure: the caller
/// has already read (at most [`MAX_BODY_BYTES`] of) the body.
pub fn parse_response(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    truncated: bool,
) -> Result<AccountKeyConfig, CloudflareError> {
    let json: Option<Value> = if truncated {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    let error = json.as_ref().map(first_error).unwrap_or_default();
    let message = error
        .message
        .clone()
        .unwrap_or_else(|| describe_body(status, body, truncated, json.is_some()));

    if status == 429 || error.code == Some(RATE_LIMIT_CODE) {
        return Err(CloudflareError::RateLimited {
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(MAX_RETRY_AFTER),
        });
    }
    if status >= 500 {
        return Err(CloudflareError::Server {
            status,
            code: error.code,
            message,
            attempts: 1,
        });
    }
    let auth_code = error.code.is_some_and(|c| AUTH_CODES.contains(&c));
    let not_found_code = error.code.is_some_and(|c| NOT_FOUND_CODES.contains(&c));
    if status == 401 || status == 403 || (auth_code && status >= 400) {
        return Err(CloudflareError::Authentication {
            status,
            code: error.code,
            message,
        });
    }
    if not_found_code || status == 404 {
        return Err(CloudflareError::AccountNotFound {
            status,
            code: error.code,
            message,
        });
    }
    if status >= 400 {
        return Err(CloudflareError::Rejected {
            status,
            code: error.code,
            message,
            pointer: error.pointer,
        });
    }
    if !(200..300).contains(&status) {
        return Err(CloudflareError::Malformed {
            status,
            detail: format!("unexpected HTTP status {status}"),
        });
    }
    let Some(json) = json else {
        return Err(CloudflareError::Malformed {
            status,
            detail: describe_body(status, body, truncated, false),
        });
    };
    if json.get("success").and_then(Value::as_bool) == Some(false) {
        // A 200 with `success: false` is still a refusal; classify it by its code.
        return Err(if auth_code {
            CloudflareError::Authentication {
                status,
                code: error.code,
                message,
            }
        } else {
            CloudflareError::Rejected {
                status,
                code: error.code,
                message,
                pointer: error.pointer,
            }
        });
    }
    match json.get("result") {
        Some(result @ Value::Object(_)) => {
            read_config(result).map_err(|detail| CloudflareError::Malformed { status, detail })
        }
        _ => Err(CloudflareError::Malformed {
            status,
            detail: "the response has no `result` object".to_owned(),
        }),
    }
}

fn read_config(result: &Value) -> Result<AccountKeyConfig, String> {
    let last_key_rotation_at = match result.get("last_key_rotation_at") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_str().and_then(parse_timestamp).ok_or_else(|| {
            "`last_key_rotation_at` is not a timestamp; without it a rotation cannot be verified"
                .to_owned()
        })?),
    };
    Ok(AccountKeyConfig {
        key_rotation_interval_days: result.get("key_rotation_interval_days").and_then(integral),
        days_until_next_rotation: result
            .get("days_until_next_rotation")
            .and_then(Value::as_f64),
        last_key_rotation_at,
        served_at: None,
    })
}

/// A JSON number that is a whole number in `i64` range (30 and 30.0 both count).
fn integral(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// An HTTP `Date` header (RFC 9110's IMF-fixdate, or the RFC 2822 forms
/// older servers send); anything else is no date.
pub fn parse_http_date(text: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::parse(text.trim())
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// RFC 3339 with or without fractional seconds; also a space instead of `T`
/// and a missing zone (read as UTC), which proxies and old backends produce.
fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    text.parse::<Timestamp>().ok().or_else(|| {
        text.replacen(' ', "T", 1)
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}

fn first_error(json: &Value) -> ErrorItem {
    let Some(item) = json
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    else {
        return ErrorItem::default();
    };
    ErrorItem {
        code: item.get("code").and_then(integral),
        message: item
            .get("message")
            .and_then(Value::as_str)
            .map(|m| bounded(m, 512)),
        pointer: item
            .get("source")
            .and_then(|s| s.get("pointer"))
            .and_then(Value::as_str)
            .map(|p| bounded(p, 256)),
    }
}

/// A short description of a body that is not the JSON we expect.
fn describe_body(status: u16, body: &[u8], truncated: bool, is_json: bool) -> String {
    if truncated {
        return format!("body larger than {MAX_BODY_BYTES} bytes, not read");
    }
    if is_json {
        return format!("HTTP {status} without an error message");
    }
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        "empty body".to_owned()
    } else if trimmed.starts_with('<') {
        "body is HTML, not JSON (a proxy or error page)".to_owned()
    } else {
        "body is not valid JSON (truncated or corrupt)".to_owned()
    }
}

fn bounded(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max_chars).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
#[path = "envelope_cases.rs"]
mod cases;

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates_are_the_accounts_clock_and_anything_else_is_none() {
        let at = |text| super::parse_http_date(text).map(|t| t.to_string());
        assert_eq!(
            at("Wed, 02 Dec 2026 06:12:25 GMT").as_deref(),
            Some("2026-12-02T06:12:25Z")
        );
        assert_eq!(
            at("Wed, 02 Dec 2026 07:12:25 +0100").as_deref(),
            Some("2026-12-02T06:12:25Z")
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-02T06:12:25Z",
            "Wed, 32 Dec 2026 06:12:25 GMT",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn ok_body(result: &str) -> Vec<u8> {
        format!(r#"{{"success":true,"errors":[],"messages":[],"result":{result}}}"#).into_bytes()
    }

    fn fail_body(code: i64, message: &str) -> Vec<u8> {
        format!(r#"{{"success":false,"errors":[{{"code":{code},"message":"{message}"}}],"messages":[],"result":null}}"#).into_bytes()
    }

    #[test]
    fn reads_a_config_with_or_without_fractional_seconds() {
        let with = parse_response(200, None, &ok_body(r#"{"key_rotation_interval_days":30,"days_until_next_rotation":12,"last_key_rotation_at":"2014-01-01T05:20:00.12345Z"}"#), false).expect("parses");
        assert_eq!(with.key_rotation_interval_days, Some(30));
        assert_eq!(with.days_until_next_rotation, Some(12.0));
        assert_eq!(
            with.last_key_rotation_at.map(|t| t.to_string()),
            Some("2014-01-01T05:20:00.12345Z".to_owned())
        );
        let without = parse_response(200, None, &ok_body(r#"{"key_rotation_interval_days":30.0,"last_key_rotation_at":"2014-01-01T05:20:00Z","extra":{"x":1}}"#), false).expect("parses");
        assert_eq!(without.key_rotation_interval_days, Some(30));
        assert_eq!(without.days_until_next_rotation, None);
        assert!(without.last_key_rotation_at.is_some());
    }

    #[test]
    fn tolerates_missing_and_wrongly_typed_fields() {
        let cfg = parse_response(
            200,
            None,
            &ok_body(r#"{"key_rotation_interval_days":"30","days_until_next_rotation":null,"last_key_rotation_at":null}"#),
            false,
        )
        .expect("parses");
        assert_eq!(
            cfg,
            AccountKeyConfig {
                key_rotation_interval_days: None,
                days_until_next_rotation: None,
                last_key_rotation_at: None,
                served_at: None,
            }
        );
        // The rotation time is the exactly-once witness: unreadable is not "never".
        for unreadable in ["17", "\"14/11/2026\"", "\"\"", "{\"at\":1}"] {
            let err = parse_response(
                200,
                None,
                &ok_body(&format!(r#"{{"last_key_rotation_at":{unreadable}}}"#)),
                false,
            )
            .expect_err(unreadable);
            assert!(
                matches!(&err, CloudflareError::Malformed { status: 200, detail } if detail.contains("last_key_rotation_at")),
                "{unreadable}: {err:?}"
            );
        }
        let odd_date = parse_response(
            200,
            None,
            &ok_body(r#"{"last_key_rotation_at":"2026-11-14 09:12:44"}"#),
            false,
        )
        .expect("parses");
        assert_eq!(
            odd_date.last_key_rotation_at.map(|t| t.to_string()),
            Some("2026-11-14T09:12:44Z".to_owned())
        );
    }

    #[test]
    fn classifies_authentication_codes() {
        for (status, code) in [
            (403, 10000),
            (401, 9109),
            (403, 9109),
            (403, 9103),
            (400, 6003),
            (400, 10001),
        ] {
            let err =
                parse_response(status, None, &fail_body(code, "nope"), false).expect_err("fails");
            assert!(
                matches!(err, CloudflareError::Authentication { code: Some(c), .. } if c == code),
                "{status}/{code}: {err:?}"
            );
            assert_eq!(err.reason(), "InvalidCredentials");
        }
    }

    #[test]
    fn classifies_missing_accounts() {
        for (status, code) in [
            (404, 7003),
            (400, 7003),
            (404, 7000),
            (400, 12109),
            (404, 12109),
        ] {
            let err =
                parse_response(status, None, &fail_body(code, "gone"), false).expect_err("fails");
            assert!(
                matches!(err, CloudflareError::AccountNotFound { .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn keeps_the_pointer_of_a_rejected_request() {
        let body = br#"{"success":false,"errors":[{"code":12001,"message":"must be between 21 and 365","source":{"pointer":"/key_rotation_interval_days"},"error_chain":[{"code":1}]}],"messages":[],"result":null}"#;
        let err = parse_response(400, None, body, false).expect_err("fails");
        assert_eq!(
            err,
            CloudflareError::Rejected {
                status: 400,
                code: Some(12001),
                message: "must be between 21 and 365".into(),
                pointer: Some("/key_rotation_interval_days".into())
            }
        );
        assert!(err.to_string().contains("/key_rotation_interval_days"));
        assert!(err.to_string().contains("12001"));
    }

    #[test]
    fn rate_limit_waits_for_retry_after_or_five_minutes() {
        let with = parse_response(429, Some("17"), &fail_body(971, "slow down"), false);
        assert_eq!(
            with,
            Err(CloudflareError::RateLimited {
                retry_after: Duration::from_secs(17)
            })
        );
        let without = parse_response(429, None, b"<html>Too many</html>", false);
        assert_eq!(
            without,
            Err(CloudflareError::RateLimited {
                retry_after: Duration::from_secs(300)
            })
        );
        let absurd = parse_response(429, Some("18446744073709551615"), b"", false);
        assert_eq!(
            absurd,
            Err(CloudflareError::RateLimited {
                retry_after: MAX_RETRY_AFTER
            }),
            "a proxy's absurd Retry-After is capped"
        );
    }

    #[test]
    fn server_errors_and_odd_bodies() {
        let html = parse_response(502, None, b"<html><body>Bad gateway</body></html>", false)
            .expect_err("fails");
        assert!(matches!(html, CloudflareError::Server { status: 502, .. }));
        assert!(html.is_retryable());
        let html_ok =
            parse_response(200, None, b"<!DOCTYPE html><p>hi</p>", false).expect_err("fails");
        assert!(
            matches!(&html_ok, CloudflareError::Malformed { detail, .. } if detail.contains("HTML"))
        );
        let cut = parse_response(200, None, br#"{"success":true,"result":{"key_rot"#, false)
            .expect_err("fails");
        assert!(
            matches!(&cut, CloudflareError::Malformed { detail, .. } if detail.contains("not valid JSON"))
        );
        let huge = parse_response(200, None, b"{", true).expect_err("fails");
        assert!(
            matches!(&huge, CloudflareError::Malformed { detail, .. } if detail.contains("larger"))
        );
        let no_result = parse_response(200, None, br#"{"success":true,"errors":[]}"#, false)
            .expect_err("fails");
        assert!(matches!(no_result, CloudflareError::Malformed { .. }));
        let refused = parse_response(200, None, &fail_body(1234, "no"), false).expect_err("fails");
        assert!(matches!(
            refused,
            CloudflareError::Rejected {
                status: 200,
                code: Some(1234),
                ..
            }
        ));
        assert!(!refused.is_retryable());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..512), retry in proptest::option::of(".{0,8}")) {
            let _ = parse_response(status, retry.as_deref(), &body, false);
        }

        #[test]
        fn arbitrary_json_shapes_never_panic(
            status in prop::sample::select(vec![200u16, 400, 403, 404, 429, 500]),
            interval in prop_oneof![Just(serde_json::json!(null)), any::<i64>().prop_map(|n| serde_json::json!(n)), any::<f64>().prop_map(|f| serde_json::json!(f)), ".*".prop_map(|s| serde_json::json!(s))],
            date in prop_oneof![Just(serde_json::json!(null)), ".*".prop_map(|s| serde_json::json!(s)), any::<i64>().prop_map(|n| serde_json::json!(n))],
            code in prop_oneof![Just(serde_json::json!(null)), any::<i64>().prop_map(|n| serde_json::json!(n)), any::<f64>().prop_map(|f| serde_json::json!(f))],
            success in any::<Option<bool>>(),
        ) {
            let body = serde_json::json!({
                "success": success,
                "errors": [{"code": code, "message": "m", "source": {"pointer": date.clone()}}],
                "result": {"key_rotation_interval_days": interval, "last_key_rotation_at": date, "days_until_next_rotation": interval},
            });
            let bytes = serde_json::to_vec(&body).expect("serializes");
            let _ = parse_response(status, None, &bytes, false);
        }
    }
}
