//! How the simulated API writes times. Cloudflare's schema says only "RFC 3339
//! date-time" for `last_key_rotation_at`: its example has fractional seconds,
//! but nothing promises a precision or an offset style, so the simulator can
//! answer in any form the contract allows, fixed or changing from one answer
//! to the next. The default is the form Cloudflare's example shows
//! (microseconds, trailing zeros dropped, `Z`).

use jiff::{Timestamp, fmt::temporal::DateTimePrinter, tz::Offset};
use serde::{Deserialize, Serialize};

/// How many fractional digits `last_key_rotation_at` carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Precision {
    /// Up to six digits, trailing zeros dropped (`…:25.27713Z`).
    #[default]
    Micros,
    /// Exactly three digits (`…:25.277Z`).
    Millis,
    /// Whole seconds (`…:25Z`): the time cut, not rounded.
    Seconds,
    /// Micros, seconds, millis, micros, … one per answer.
    Alternating,
}

/// How the UTC offset is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum OffsetStyle {
    /// `Z`.
    #[default]
    Z,
    /// `+00:00`.
    Numeric,
    /// `Z`, `+00:00`, `Z`, … one per answer.
    Alternating,
}

/// The form of the times in the API's answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TimestampStyle {
    /// Fractional digits.
    pub precision: Precision,
    /// Offset style.
    pub offset: OffsetStyle,
}

impl TimestampStyle {
    /// Writes `at` in this style; `answer` counts the answers so far, which
    /// picks the form when a style alternates.
    pub(crate) fn render(self, at: Timestamp, answer: u64) -> String {
        let digits = match self.precision {
            Precision::Micros => None,
            Precision::Millis => Some(3),
            Precision::Seconds => Some(0),
            Precision::Alternating => [None, Some(0), Some(3)][(answer % 3) as usize],
        };
        let numeric = match self.offset {
            OffsetStyle::Z => false,
            OffsetStyle::Numeric => true,
            OffsetStyle::Alternating => answer % 2 == 1,
        };
        // The printer rounds toward zero: a coarser form is the finer one cut short.
        let printer = DateTimePrinter::new().precision(digits);
        if numeric {
            printer.timestamp_with_offset_to_string(&at, Offset::UTC)
        } else {
            printer.timestamp_to_string(&at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        "2026-12-02T06:12:25.27713Z".parse().expect("timestamp")
    }

    #[test]
    fn the_default_is_cloudflares_example_form() {
        assert_eq!(
            TimestampStyle::default().render(at(), 7),
            "2026-12-02T06:12:25.27713Z"
        );
    }

    #[test]
    fn coarser_forms_cut_the_time_short() {
        let style = |precision, offset| TimestampStyle { precision, offset };
        assert_eq!(
            style(Precision::Seconds, OffsetStyle::Numeric).render(at(), 0),
            "2026-12-02T06:12:25+00:00"
        );
        let late: Timestamp = "2026-12-02T06:12:25.9999Z".parse().expect("timestamp");
        assert_eq!(
            style(Precision::Millis, OffsetStyle::Z).render(late, 0),
            "2026-12-02T06:12:25.999Z"
        );
    }

    #[test]
    fn alternating_styles_change_with_every_answer() {
        let style = TimestampStyle {
            precision: Precision::Alternating,
            offset: OffsetStyle::Alternating,
        };
        let forms: Vec<String> = (0..6).map(|n| style.render(at(), n)).collect();
        assert_eq!(
            forms,
            [
                "2026-12-02T06:12:25.27713Z",
                "2026-12-02T06:12:25+00:00",
                "2026-12-02T06:12:25.277Z",
                "2026-12-02T06:12:25.27713+00:00",
                "2026-12-02T06:12:25Z",
                "2026-12-02T06:12:25.277+00:00",
            ]
        );
        // Every form reads back as the same second.
        for form in &forms {
            let back: Timestamp = form.parse().expect("RFC 3339");
            assert_eq!(back.as_second(), at().as_second(), "{form}");
        }
    }
}
