//! The simulated `/client/v4` API: routes, the three key handlers, and the
//! gateway every call passes through (latency, faults, request log).

use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use rand::Rng;

use crate::auth::{AuthError, AuthHeaders, log_label};
use crate::config::CredentialSeed;
use crate::envelope::{method_not_allowed, no_route};
use crate::faults::{Injection, html_response, server_error_response, throttle_response, truncate};
use crate::keys::{KeysCall, KeysOperation, answer};
use crate::log::Entry;
use crate::simulator::Simulator;

/// How long a hang fault holds a request unless released.
const HANG: Duration = Duration::from_secs(3600);

/// Who the gateway found the caller to be; handlers read it instead of
/// checking the headers again.
#[derive(Debug, Clone)]
struct Caller(Result<CredentialSeed, AuthError>);

/// The `/client/v4` routes, with unknown paths under the prefix answering
/// 7000 and known paths with another method answering 7001.
pub(crate) fn router(simulator: &Simulator) -> Router<Simulator> {
    Router::new()
        .route(
            "/client/v4/accounts/{account_id}/access/keys",
            get(read_keys).put(update_keys),
        )
        .route(
            "/client/v4/accounts/{account_id}/access/keys/rotate",
            post(rotate_keys),
        )
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .route("/client/v4", any(|| async { no_route() }))
        .route("/client/v4/{*rest}", any(|| async { no_route() }))
        .layer(middleware::from_fn_with_state(simulator.clone(), gateway))
}

async fn read_keys(
    State(simulator): State<Simulator>,
    Extension(caller): Extension<Caller>,
    Path(account_id): Path<String>,
) -> Response {
    call_keys(
        &simulator,
        &caller,
        account_id,
        "access/keys",
        KeysOperation::Read,
    )
}

async fn update_keys(
    State(simulator): State<Simulator>,
    Extension(caller): Extension<Caller>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> Response {
    let operation = KeysOperation::Update(body);
    call_keys(&simulator, &caller, account_id, "access/keys", operation)
}

async fn rotate_keys(
    State(simulator): State<Simulator>,
    Extension(caller): Extension<Caller>,
    Path(account_id): Path<String>,
) -> Response {
    let operation = KeysOperation::Rotate;
    call_keys(
        &simulator,
        &caller,
        account_id,
        "access/keys/rotate",
        operation,
    )
}

fn call_keys(
    simulator: &Simulator,
    caller: &Caller,
    account_id: String,
    suffix: &str,
    operation: KeysOperation,
) -> Response {
    let call = KeysCall {
        route: format!("/accounts/{account_id}/{suffix}"),
        account_id,
        operation,
    };
    simulator
        .with_world(|world| answer(world, &caller.0, call))
        .into_response()
}

/// Runs in front of every `/client/v4` route: adds latency, injects the
/// fault due (if any), and logs the request with its outcome.
async fn gateway(State(simulator): State<Simulator>, mut request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let headers = AuthHeaders::from_headers(request.headers());
    let (arrival, latency_ms) =
        simulator.with_world(|world| (world.now(), world.faults.latency_ms));
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let (caller, injection) = simulator.with_world(|world| {
        let mut rng = rand::rng();
        let injection = world.faults.draw(rng.random(), rng.random());
        (world.authenticate(&headers), injection)
    });
    let credential = log_label(&caller);
    let mut entry = Entry {
        time: arrival,
        method,
        path,
        credential,
        status: 0,
        fault: injection
            .map(|injection| injection.label().to_owned())
            .or_else(|| (latency_ms > 0).then(|| "latency".to_owned())),
    };
    let response = match injection {
        Some(Injection::Hang) => return hang(&simulator, entry).await,
        Some(Injection::Throttle {
            retry_after_seconds,
        }) => throttle_response(retry_after_seconds),
        Some(Injection::Html { status }) => html_response(status),
        Some(Injection::ServerError { status }) => server_error_response(status),
        Some(Injection::Truncate) => {
            request.extensions_mut().insert(Caller(caller));
            truncate_body(next.run(request).await).await
        }
        None => {
            request.extensions_mut().insert(Caller(caller));
            next.run(request).await
        }
    };
    entry.status = response.status().as_u16();
    record(&simulator, entry);
    with_date(&simulator, response)
}

/// Every answer carries the account's clock in its `Date` header, as HTTP
/// servers do (RFC 9110: whole seconds, GMT). It is the simulated clock, not
/// the host's, so a moved clock shows there too.
fn with_date(simulator: &Simulator, mut response: Response) -> Response {
    let now = simulator.with_world(|world| world.now());
    let printer = jiff::fmt::rfc2822::DateTimePrinter::new();
    if let Ok(date) = printer.timestamp_to_rfc9110_string(&now)
        && let Ok(value) = header::HeaderValue::from_str(&date)
    {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// Holds a request for [`HANG`] or until the simulator lets hangs go. It is
/// logged on arrival with status 0, since it never gets an answer.
async fn hang(simulator: &Simulator, entry: Entry) -> Response {
    let mut release = simulator.hang_release();
    record(simulator, entry);
    tokio::select! {
        () = tokio::time::sleep(HANG) => {}
        _ = release.changed() => {}
    }
    // Only reached on shutdown, reset or after an hour; the caller gave up long ago.
    server_error_response(503)
}

async fn truncate_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(Bytes::copy_from_slice(truncate(&bytes))))
}

fn record(simulator: &Simulator, entry: Entry) {
    let record = simulator.with_world(|world| world.log.push(entry));
    // Only the credential's id is logged; secrets never reach the entry.
    tracing::info!(
        seq = record.seq,
        method = %record.method,
        path = %record.path,
        credential = %record.credential,
        status = record.status,
        fault = record.fault.as_deref().unwrap_or("-"),
        "api request"
    );
}
