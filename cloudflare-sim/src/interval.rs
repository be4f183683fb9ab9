//! Validation of the `PUT /accounts/{id}/access/keys` body.
//!
//! Cloudflare does not document the error for a bad interval; the simulator
//! answers 400 with code [`CODE_INVALID_INTERVAL`] and a `source.pointer` at
//! the field, which is what the public facts lead a client to expect.

use axum::http::StatusCode;
use serde_json::Value;

use crate::envelope::{ApiFailure, ErrorItem};

/// Smallest interval the API accepts (OpenAPI schema, Terraform validator).
pub(crate) const MIN_INTERVAL_DAYS: i64 = 21;
/// Largest interval the API accepts.
pub(crate) const MAX_INTERVAL_DAYS: i64 = 365;
/// Simulator's choice of code for every invalid-body answer.
pub(crate) const CODE_INVALID_INTERVAL: u32 = 12001;
/// JSON pointer of the only field of the body.
pub(crate) const INTERVAL_POINTER: &str = "/key_rotation_interval_days";
const FIELD: &str = "key_rotation_interval_days";

/// Why a PUT body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IntervalError {
    /// The body is not JSON at all (or empty).
    #[error("Request body is not valid JSON")]
    NotJson,
    /// The body is JSON but not an object.
    #[error("Request body must be a JSON object")]
    NotAnObject,
    /// The object lacks the field.
    #[error("key_rotation_interval_days is required")]
    Missing,
    /// The field is a string, boolean, null, array or object.
    #[error("key_rotation_interval_days must be a number")]
    NotANumber,
    /// The field has a fractional part.
    #[error("key_rotation_interval_days must be a whole number of days")]
    Fractional,
    /// The field is outside 21..=365.
    #[error("key_rotation_interval_days must be between 21 and 365")]
    OutOfRange,
}

impl ApiFailure for IntervalError {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    fn item(&self) -> ErrorItem {
        ErrorItem::new(CODE_INVALID_INTERVAL, self.to_string()).with_pointer(INTERVAL_POINTER)
    }
}

/// The interval a PUT body asks for. A whole number written with a
/// fraction (`30.0`) is accepted: it is the same JSON number.
pub(crate) fn parse_interval_body(body: &[u8]) -> Result<i64, IntervalError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| IntervalError::NotJson)?;
    let object = value.as_object().ok_or(IntervalError::NotAnObject)?;
    let field = object.get(FIELD).ok_or(IntervalError::Missing)?;
    let Value::Number(number) = field else {
        return Err(IntervalError::NotANumber);
    };
    let days = match number.as_i64() {
        Some(days) => days,
        None => {
            let float = number.as_f64().ok_or(IntervalError::NotANumber)?;
            if float.fract() != 0.0 {
                return Err(IntervalError::Fractional);
            }
            // Whole but beyond i64 (or a negative u64 edge): out of range either way.
            if !(MIN_INTERVAL_DAYS as f64..=MAX_INTERVAL_DAYS as f64).contains(&float) {
                return Err(IntervalError::OutOfRange);
            }
            float as i64
        }
    };
    if !(MIN_INTERVAL_DAYS..=MAX_INTERVAL_DAYS).contains(&days) {
        return Err(IntervalError::OutOfRange);
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bodies_give_the_interval() {
        let cases: &[(&str, i64)] = &[
            (r#"{"key_rotation_interval_days": 21}"#, 21),
            (r#"{"key_rotation_interval_days": 365}"#, 365),
            (r#"{"key_rotation_interval_days": 30.0}"#, 30),
            (r#"{"key_rotation_interval_days": 90, "extra": true}"#, 90),
        ];
        for (body, days) in cases {
            assert_eq!(parse_interval_body(body.as_bytes()), Ok(*days), "{body}");
        }
    }

    #[test]
    fn invalid_bodies_say_why() {
        let cases: &[(&str, IntervalError)] = &[
            ("", IntervalError::NotJson),
            ("key_rotation_interval_days=30", IntervalError::NotJson),
            ("[30]", IntervalError::NotAnObject),
            ("30", IntervalError::NotAnObject),
            ("{}", IntervalError::Missing),
            (r#"{"keyRotationIntervalDays": 30}"#, IntervalError::Missing),
            (
                r#"{"key_rotation_interval_days": "30"}"#,
                IntervalError::NotANumber,
            ),
            (
                r#"{"key_rotation_interval_days": null}"#,
                IntervalError::NotANumber,
            ),
            (
                r#"{"key_rotation_interval_days": true}"#,
                IntervalError::NotANumber,
            ),
            (
                r#"{"key_rotation_interval_days": 30.5}"#,
                IntervalError::Fractional,
            ),
            (
                r#"{"key_rotation_interval_days": 20}"#,
                IntervalError::OutOfRange,
            ),
            (
                r#"{"key_rotation_interval_days": 366}"#,
                IntervalError::OutOfRange,
            ),
            (
                r#"{"key_rotation_interval_days": -30}"#,
                IntervalError::OutOfRange,
            ),
            (
                r#"{"key_rotation_interval_days": 1e20}"#,
                IntervalError::OutOfRange,
            ),
            (
                r#"{"key_rotation_interval_days": 18446744073709551615}"#,
                IntervalError::OutOfRange,
            ),
        ];
        for (body, error) in cases {
            assert_eq!(
                parse_interval_body(body.as_bytes()),
                Err(error.clone()),
                "{body}"
            );
        }
    }

    #[test]
    fn every_error_points_at_the_field() {
        let item = serde_json::to_value(IntervalError::OutOfRange.item()).unwrap_or_default();
        assert_eq!(item["code"], CODE_INVALID_INTERVAL);
        assert_eq!(item["source"]["pointer"], INTERVAL_POINTER);
        assert_eq!(IntervalError::NotJson.status(), StatusCode::BAD_REQUEST);
    }
}
