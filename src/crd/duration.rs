//! Durations in Go/Kubernetes syntax (`90s`, `10m`, `1h30m`), as the spec's
//! `driftCheckInterval` and `rotationCooldown` carry them.
//!
//! Not `kube::core::Duration` (kube 5), for four reasons (issue 14):
//! - its schema is a bare `type: string`, so the API server would no longer
//!   reject `10x` or `-5m` at admission; ours carries [`GO_DURATION_PATTERN`];
//! - it is signed (`-5m` parses) and reads `""` as zero; ours refuses both;
//! - it adds with `+=` and `Duration::mul_f64`, which panic on a huge value
//!   (`99999999999999999h`), where ours reports `Overflow`, and a stored object
//!   with one saturates instead of making the whole list unreadable;
//! - its errors (`invalid unit: ...`) do not quote the text, ours do; and it
//!   prints a normalised form (`1m30s` for `90s`), ours keeps the text as written.

use std::{fmt, str::FromStr, time::Duration};

/// The schema pattern every duration field carries; the API server rejects
/// anything else before the operator sees it.
pub const GO_DURATION_PATTERN: &str = r"^(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|ms|s|m|h))+$";

/// What a too-long duration in a stored object reads as: 100 years.
const SATURATED: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A non-negative duration written the way Go's `time.ParseDuration` reads it.
/// Keeps the text it was parsed from, so a round trip never rewrites a manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

/// Why a duration text is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A number is missing where one was expected.
    #[error("expected a number at {0:?}")]
    MissingNumber(String),
    /// A number without one of the units ns, us, µs, ms, s, m, h.
    #[error("missing or unknown unit in {0:?} (use ns, us, ms, s, m or h)")]
    BadUnit(String),
    /// Larger than this program can represent.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl GoDuration {
    /// The duration as a standard library value.
    pub fn as_duration(&self) -> Duration {
        self.value
    }

    /// A duration whose text is known to be valid (used for schema defaults).
    pub(crate) fn from_parts(text: &str, value: Duration) -> Self {
        Self {
            text: text.to_owned(),
            value,
        }
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for GoDuration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        let mut rest = text;
        let mut total_nanos: f64 = 0.0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            if number.is_empty() || number == "." || number.matches('.').count() > 1 {
                return Err(ParseDurationError::MissingNumber(rest.to_owned()));
            }
            let value: f64 = number
                .parse()
                .map_err(|_| ParseDurationError::MissingNumber(rest.to_owned()))?;
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            let nanos_per_unit = match unit {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(ParseDurationError::BadUnit(rest.to_owned())),
            };
            total_nanos += value * nanos_per_unit;
            rest = next;
        }
        // Go limits durations to about 290 years; anything near that is a typo.
        if !total_nanos.is_finite() || total_nanos > i64::MAX as f64 {
            return Err(ParseDurationError::Overflow(text.to_owned()));
        }
        Ok(Self {
            text: text.to_owned(),
            value: Duration::from_nanos(total_nanos.round() as u64),
        })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoDuration({:?})", self.text)
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.parse() {
            // The schema's pattern admits lengths Go itself rejects; one such
            // policy must not make the whole list unreadable, so it saturates.
            Err(ParseDurationError::Overflow(_)) => Ok(Self::from_parts(&text, SATURATED)),
            other => other.map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 64,
            "pattern": GO_DURATION_PATTERN,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Duration, ParseDurationError> {
        text.parse::<GoDuration>().map(|d| d.as_duration())
    }

    #[test]
    fn reads_the_forms_kubernetes_users_write() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("168h"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_go_rejects_or_what_we_never_want() {
        assert_eq!(parse(""), Err(ParseDurationError::Empty));
        assert!(matches!(parse("10"), Err(ParseDurationError::BadUnit(_))));
        assert!(matches!(parse("10d"), Err(ParseDurationError::BadUnit(_))));
        assert!(matches!(
            parse("-5m"),
            Err(ParseDurationError::MissingNumber(_))
        ));
        assert!(matches!(
            parse("m"),
            Err(ParseDurationError::MissingNumber(_))
        ));
        assert!(matches!(
            parse("1..5s"),
            Err(ParseDurationError::MissingNumber(_))
        ));
        assert!(parse("ten minutes").is_err());
        assert!(matches!(
            parse("99999999999999999999h"),
            Err(ParseDurationError::Overflow(_))
        ));
    }

    #[test]
    fn a_stored_overlong_duration_saturates_instead_of_failing_the_list() {
        let d: GoDuration = serde_json::from_str("\"99999999999999999999h\"").expect("reads");
        assert_eq!(d.as_duration(), SATURATED);
        assert_eq!(d.as_str(), "99999999999999999999h");
        assert!(serde_json::from_str::<GoDuration>("\"10x\"").is_err());
    }

    #[test]
    fn round_trips_the_text_unchanged() {
        let d: GoDuration = "1h30m".parse().expect("valid");
        assert_eq!(serde_json::to_string(&d).expect("serializes"), "\"1h30m\"");
    }
}
