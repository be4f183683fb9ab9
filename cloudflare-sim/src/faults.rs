//! Injected misbehaviour for `/client/v4` calls: latency, random 5xx,
//! forced 429s, hangs, HTML error pages and truncated JSON.
//!
//! Faults act like a proxy in front of the API: a hang, a forced 429, an HTML
//! page or a 5xx answers before the API sees the request, so nothing changes
//! and no rate budget is spent. A truncated answer is different: the API
//! does the work (a rotate really rotates) and only the body is cut, which is
//! the case a client must not mistake for "nothing happened".

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::envelope::{CODE_INTERNAL, ErrorItem, Reply};
use crate::rate_limit::Throttled;

/// Status of injected 5xx answers when none is configured: one of these at random.
const RANDOM_ERROR_STATUSES: [u16; 3] = [500, 502, 503];
/// Status of injected HTML pages when `errorStatus` is not set.
const DEFAULT_HTML_STATUS: u16 = 502;

/// What to inject; counters go down by one per affected call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Delay added before every `/client/v4` answer, in milliseconds.
    pub latency_ms: u64,
    /// Share (0.0..=1.0) of calls answered with a 5xx JSON envelope.
    pub error_rate: f64,
    /// Status of injected 5xx answers and HTML pages; random 500/502/503
    /// (HTML: 502) when unset.
    pub error_status: Option<u16>,
    /// Answer the next calls with 429.
    pub force_429: Option<Force429>,
    /// Never answer the next this many calls (held for an hour).
    pub hang: u32,
    /// Answer the next this many calls with an HTML error page.
    pub html: u32,
    /// Cut the body of the next this many answers in the middle.
    pub truncated: u32,
}

/// Forced 429 answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Force429 {
    /// How many calls get a 429.
    pub count: u32,
    /// `Retry-After` to send; none when unset, as a proxy might.
    pub retry_after_seconds: Option<u64>,
}

/// The fault chosen for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injection {
    /// Hold the request and never answer.
    Hang,
    /// Answer 429, with `Retry-After` if given.
    Throttle { retry_after_seconds: Option<u64> },
    /// Answer with an HTML page and this status.
    Html { status: u16 },
    /// Answer with a 5xx JSON envelope and this status.
    ServerError { status: u16 },
    /// Let the API answer, then cut the body.
    Truncate,
}

impl Injection {
    /// Name in the request log.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Hang => "hang",
            Self::Throttle { .. } => "force429",
            Self::Html { .. } => "html",
            Self::ServerError { .. } => "error",
            Self::Truncate => "truncated",
        }
    }
}

/// Why a fault configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum FaultsError {
    /// Error rate not a share.
    #[error("errorRate must be between 0.0 and 1.0, got {0}")]
    ErrorRate(f64),
    /// Error status not a 5xx.
    #[error("errorStatus must be between 500 and 599, got {0}")]
    ErrorStatus(u16),
}

impl Faults {
    /// Checks values a control call sent.
    pub(crate) fn check(&self) -> Result<(), FaultsError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(FaultsError::ErrorRate(self.error_rate));
        }
        match self.error_status {
            Some(status) if !(500..=599).contains(&status) => Err(FaultsError::ErrorStatus(status)),
            _ => Ok(()),
        }
    }

    /// Chooses this call's fault and uses up one count of it. `roll` and
    /// `pick` are uniform in `0.0..1.0`, passed in to keep this testable:
    /// `roll` decides a random 5xx, `pick` which status. Counted faults go
    /// first, in the order hang, 429, HTML; then the random 5xx; truncation
    /// last, since it needs a real answer to cut.
    pub(crate) fn draw(&mut self, roll: f64, pick: f64) -> Option<Injection> {
        if take(&mut self.hang) {
            return Some(Injection::Hang);
        }
        if let Some(force) = self.force_429.as_mut()
            && take(&mut force.count)
        {
            let retry_after_seconds = force.retry_after_seconds;
            if force.count == 0 {
                self.force_429 = None;
            }
            return Some(Injection::Throttle {
                retry_after_seconds,
            });
        }
        if take(&mut self.html) {
            let status = self.error_status.unwrap_or(DEFAULT_HTML_STATUS);
            return Some(Injection::Html { status });
        }
        // `roll < rate` is false for NaN and for a rate of 0, true always for 1.
        if roll < self.error_rate {
            let status = self.error_status.unwrap_or_else(|| {
                let index = (pick * RANDOM_ERROR_STATUSES.len() as f64) as usize;
                RANDOM_ERROR_STATUSES[index.min(RANDOM_ERROR_STATUSES.len() - 1)]
            });
            return Some(Injection::ServerError { status });
        }
        if take(&mut self.truncated) {
            return Some(Injection::Truncate);
        }
        None
    }
}

/// Decrements a counter if it is above zero; true if it was.
fn take(counter: &mut u32) -> bool {
    if *counter == 0 {
        return false;
    }
    *counter -= 1;
    true
}

fn status_or_bad_gateway(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// A 429 envelope, as Cloudflare's edge sends it.
pub(crate) fn throttle_response(retry_after_seconds: Option<u64>) -> Response {
    let mut response = Reply::failure(&Throttled).into_response();
    if let Some(seconds) = retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A 5xx JSON envelope with the simulator's internal-error code.
pub(crate) fn server_error_response(status: u16) -> Response {
    let status = status_or_bad_gateway(status);
    let message = status.canonical_reason().unwrap_or("Internal Server Error");
    Reply::error(status, ErrorItem::new(CODE_INTERNAL, message)).into_response()
}

/// An HTML error page like the one a proxy in front of the API returns.
pub(crate) fn html_response(status: u16) -> Response {
    let status = status_or_bad_gateway(status);
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = format!(
        "<!DOCTYPE html>\n<html>\n<head><title>{code} {reason}</title></head>\n\
         <body>\n<center><h1>{code} {reason}</h1></center>\n<hr><center>cloudflare</center>\n</body>\n</html>\n",
        code = status.as_u16()
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        page,
    )
        .into_response()
}

/// The first half of a body: invalid JSON for any non-trivial envelope.
pub(crate) fn truncate(body: &[u8]) -> &[u8] {
    &body[..body.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out() {
        let mut faults = Faults {
            hang: 1,
            html: 2,
            ..Faults::default()
        };
        assert_eq!(faults.draw(0.5, 0.5), Some(Injection::Hang));
        assert_eq!(faults.draw(0.5, 0.5), Some(Injection::Html { status: 502 }));
        assert_eq!(faults.draw(0.5, 0.5), Some(Injection::Html { status: 502 }));
        assert_eq!(faults.draw(0.5, 0.5), None);
        assert_eq!(faults, Faults::default());
    }

    #[test]
    fn forced_429_carries_retry_after_and_clears_itself() {
        let mut faults = Faults {
            force_429: Some(Force429 {
                count: 2,
                retry_after_seconds: Some(7),
            }),
            ..Faults::default()
        };
        let expected = Some(Injection::Throttle {
            retry_after_seconds: Some(7),
        });
        assert_eq!(faults.draw(0.5, 0.5), expected);
        assert_eq!(faults.draw(0.5, 0.5), expected);
        assert_eq!(faults.force_429, None);
        assert_eq!(faults.draw(0.5, 0.5), None);
    }

    #[test]
    fn order_is_hang_then_429_then_html_then_errors_then_truncation() {
        let mut faults = Faults {
            error_rate: 1.0,
            force_429: Some(Force429 {
                count: 1,
                retry_after_seconds: None,
            }),
            hang: 1,
            html: 1,
            truncated: 1,
            ..Faults::default()
        };
        let labels: Vec<_> = (0..4)
            .filter_map(|_| faults.draw(0.0, 0.0))
            .map(|injection| injection.label())
            .collect();
        assert_eq!(labels, ["hang", "force429", "html", "error"]);
        faults.error_rate = 0.0;
        assert_eq!(faults.draw(0.0, 0.0), Some(Injection::Truncate));
    }

    #[test]
    fn error_rate_compares_with_the_roll() {
        let mut faults = Faults {
            error_rate: 0.25,
            error_status: Some(503),
            ..Faults::default()
        };
        assert_eq!(
            faults.draw(0.1, 0.0),
            Some(Injection::ServerError { status: 503 })
        );
        assert_eq!(faults.draw(0.3, 0.0), None);
        faults.error_rate = f64::NAN;
        assert_eq!(faults.draw(0.0, 0.0), None);
    }

    #[test]
    fn random_status_is_one_of_500_502_503() {
        let mut faults = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        let statuses: Vec<_> = [0.0, 0.5, 0.99, 1.0]
            .iter()
            .filter_map(|pick| match faults.draw(0.0, *pick) {
                Some(Injection::ServerError { status }) => Some(status),
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [500, 502, 503, 503]);
    }

    #[test]
    fn check_refuses_bad_values() {
        let rate = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert_eq!(rate.check(), Err(FaultsError::ErrorRate(1.5)));
        let status = Faults {
            error_status: Some(404),
            ..Faults::default()
        };
        assert_eq!(status.check(), Err(FaultsError::ErrorStatus(404)));
        assert_eq!(Faults::default().check(), Ok(()));
    }

    #[test]
    fn json_shape_is_camel_case() -> Result<(), serde_json::Error> {
        let faults: Faults = serde_json::from_str(
            r#"{"latencyMs":5,"errorRate":0.5,"errorStatus":503,
                "force429":{"count":2,"retryAfterSeconds":null},"hang":1,"html":1,"truncated":1}"#,
        )?;
        assert_eq!(faults.latency_ms, 5);
        assert_eq!(
            faults.force_429,
            Some(Force429 {
                count: 2,
                retry_after_seconds: None
            })
        );
        let partial: Faults = serde_json::from_str(r#"{"hang": 3}"#)?;
        assert_eq!(partial.hang, 3);
        Ok(())
    }

    #[test]
    fn truncation_keeps_the_first_half() {
        assert_eq!(truncate(b"{\"success\":true}"), b"{\"succes");
    }
}
