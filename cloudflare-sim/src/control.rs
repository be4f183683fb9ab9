//! The `/__sim` control API tests use to inspect and steer the simulator.
//! JSON in and out, camelCase; errors are `{"error": "..."}`.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::{AccountPatch, AccountView};
use crate::config::{ConfigError, CredentialFields, RateLimitConfig};
use crate::faults::{Faults, FaultsError};
use crate::log::RequestRecord;
use crate::simulator::Simulator;
use crate::timestamps::TimestampStyle;

/// The `/__sim` routes.
pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/__sim/requests", get(requests).delete(clear_requests))
        .route("/__sim/reset", post(reset))
        .route("/__sim/clock", get(clock))
        .route("/__sim/clock/advance", post(advance_clock))
        .route("/__sim/accounts/{id}", get(account).put(put_account))
        .route(
            "/__sim/credentials/{id}",
            put(put_credential).delete(delete_credential),
        )
        .route(
            "/__sim/faults",
            get(faults).put(put_faults).delete(clear_faults),
        )
        .route("/__sim/rate-limit", get(rate_limit).put(put_rate_limit))
        .route("/__sim/timestamps", get(timestamps).put(put_timestamps))
}

/// Why a control call was refused.
#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error("invalid JSON body: {0}")]
    Body(#[from] serde_json::Error),
    #[error("no account {0:?}")]
    UnknownAccount(String),
    #[error("no credential {0:?}")]
    UnknownCredential(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Faults(#[from] FaultsError),
    #[error("seconds must be a finite, non-negative number, got {0}")]
    Seconds(f64),
    #[error("keyRotationIntervalDays must be at least 1, got {0}")]
    Interval(i64),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::UnknownAccount(_) | Self::UnknownCredential(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// Parses a JSON body; an empty body reads as `{}` so `curl -X PUT` works.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    Ok(serde_json::from_slice(text)?)
}

async fn requests(State(simulator): State<Simulator>) -> Json<Vec<RequestRecord>> {
    Json(simulator.requests())
}

async fn clear_requests(State(simulator): State<Simulator>) -> StatusCode {
    simulator.clear_requests();
    StatusCode::NO_CONTENT
}

async fn reset(State(simulator): State<Simulator>) -> StatusCode {
    simulator.reset();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Serialize)]
struct ClockView {
    now: jiff::Timestamp,
}

async fn clock(State(simulator): State<Simulator>) -> Json<ClockView> {
    Json(ClockView {
        now: simulator.now(),
    })
}

#[derive(Debug, Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance_clock(
    State(simulator): State<Simulator>,
    body: Bytes,
) -> Result<Json<ClockView>, ControlError> {
    let Advance { seconds } = parse(&body)?;
    let by = Duration::try_from_secs_f64(seconds).map_err(|_| ControlError::Seconds(seconds))?;
    simulator.advance_clock(by);
    Ok(Json(ClockView {
        now: simulator.now(),
    }))
}

async fn account(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ControlError> {
    simulator
        .account(&id)
        .map(Json)
        .ok_or(ControlError::UnknownAccount(id))
}

async fn put_account(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AccountView>, ControlError> {
    let patch: AccountPatch = parse(&body)?;
    if let Some(days) = patch.key_rotation_interval_days.filter(|days| *days < 1) {
        return Err(ControlError::Interval(days));
    }
    simulator
        .patch_account(&id, patch)
        .map(Json)
        .ok_or(ControlError::UnknownAccount(id))
}

async fn put_credential(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let fields: CredentialFields = parse(&body)?;
    simulator.upsert_credential(fields.into_seed(id)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_credential(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
) -> Result<StatusCode, ControlError> {
    if simulator.remove_credential(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::UnknownCredential(id))
    }
}

async fn faults(State(simulator): State<Simulator>) -> Json<Faults> {
    Json(simulator.faults())
}

async fn put_faults(
    State(simulator): State<Simulator>,
    body: Bytes,
) -> Result<Json<Faults>, ControlError> {
    let faults: Faults = parse(&body)?;
    faults.check()?;
    simulator.set_faults(faults.clone());
    Ok(Json(faults))
}

async fn clear_faults(State(simulator): State<Simulator>) -> Json<Faults> {
    simulator.set_faults(Faults::default());
    Json(Faults::default())
}

async fn timestamps(State(simulator): State<Simulator>) -> Json<TimestampStyle> {
    Json(simulator.timestamp_style())
}

async fn put_timestamps(
    State(simulator): State<Simulator>,
    body: Bytes,
) -> Result<Json<TimestampStyle>, ControlError> {
    let style: TimestampStyle = parse(&body)?;
    simulator.set_timestamp_style(style);
    Ok(Json(style))
}

async fn rate_limit(State(simulator): State<Simulator>) -> Json<RateLimitConfig> {
    Json(simulator.rate_limit())
}

async fn put_rate_limit(
    State(simulator): State<Simulator>,
    body: Bytes,
) -> Result<Json<RateLimitConfig>, ControlError> {
    let config: RateLimitConfig = parse(&body)?;
    simulator.set_rate_limit(config);
    Ok(Json(config))
}
