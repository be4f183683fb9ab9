//! Cloudflare's response envelope and the error codes the simulator answers with.
//!
//! Success: `{"success":true,"errors":[],"messages":[],"result":{...}}`.
//! Failure: `{"success":false,"errors":[{"code":..,"message":..}],"messages":[],"result":null}`,
//! where an error may carry `source.pointer` and an `error_chain`.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// `No route for that URI` (unknown path).
pub(crate) const CODE_NO_ROUTE: u32 = 7000;
/// `Method not allowed for this endpoint` (known path, other method).
pub(crate) const CODE_METHOD_NOT_ALLOWED: u32 = 7001;
/// `Please wait and consider throttling your request speed`.
pub(crate) const CODE_THROTTLED: u32 = 971;
/// Simulator's choice for injected 5xx answers; Cloudflare documents none.
pub(crate) const CODE_INTERNAL: u32 = 10002;

/// One item of `errors` or of an `error_chain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ErrorItem {
    code: u32,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<ErrorSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    error_chain: Vec<ErrorItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct ErrorSource {
    pointer: &'static str,
}

impl ErrorItem {
    /// An error with a code and message only.
    pub(crate) fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
            error_chain: Vec::new(),
        }
    }

    /// Points at the offending field of the request body (JSON pointer).
    pub(crate) fn with_pointer(mut self, pointer: &'static str) -> Self {
        self.source = Some(ErrorSource { pointer });
        self
    }

    /// Adds the finer-grained causes Cloudflare lists under `error_chain`.
    pub(crate) fn with_chain(mut self, chain: Vec<ErrorItem>) -> Self {
        self.error_chain = chain;
        self
    }
}

/// An error the simulated API can answer with: each one knows its HTTP
/// status and envelope item, so handlers never pick codes by hand.
pub(crate) trait ApiFailure {
    /// HTTP status of the answer.
    fn status(&self) -> StatusCode;
    /// The single item of `errors`.
    fn item(&self) -> ErrorItem;
}

/// A finished answer of the simulated API, before it becomes HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// 200 with `result` in a success envelope.
    pub(crate) fn success(result: impl Serialize) -> Self {
        let result = serde_json::to_value(result).unwrap_or(Value::Null);
        Self {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: json!({"success": true, "errors": [], "messages": [], "result": result}),
        }
    }

    /// A failure envelope for any [`ApiFailure`].
    pub(crate) fn failure(error: &impl ApiFailure) -> Self {
        Self::error(error.status(), error.item())
    }

    /// A failure envelope with an explicit status and item.
    pub(crate) fn error(status: StatusCode, item: ErrorItem) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: json!({"success": false, "errors": [item], "messages": [], "result": null}),
        }
    }

    /// The same reply with extra headers.
    pub(crate) fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, self.headers, axum::Json(self.body)).into_response()
    }
}

/// 404 `7000 No route for that URI`.
pub(crate) fn no_route() -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        ErrorItem::new(CODE_NO_ROUTE, "No route for that URI"),
    )
}

/// 405 `7001 Method not allowed for this endpoint`.
pub(crate) fn method_not_allowed() -> Reply {
    Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorItem::new(
            CODE_METHOD_NOT_ALLOWED,
            "Method not allowed for this endpoint",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_envelope_has_cloudflare_shape() {
        let item =
            ErrorItem::new(6003, "Invalid request headers").with_chain(vec![ErrorItem::new(
                6111,
                "Invalid format for Authorization header",
            )]);
        let reply = Reply::error(StatusCode::BAD_REQUEST, item);
        assert_eq!(
            reply.body,
            json!({
                "success": false,
                "errors": [{
                    "code": 6003,
                    "message": "Invalid request headers",
                    "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}]
                }],
                "messages": [],
                "result": null
            })
        );
    }

    #[test]
    fn pointer_goes_under_source() {
        let item = ErrorItem::new(12001, "bad").with_pointer("/key_rotation_interval_days");
        let value = serde_json::to_value(item).unwrap_or(Value::Null);
        assert_eq!(value["source"]["pointer"], "/key_rotation_interval_days");
        assert!(value.get("error_chain").is_none());
    }

    #[test]
    fn success_envelope_wraps_result() {
        let reply = Reply::success(json!({"key_rotation_interval_days": 42}));
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["success"], true);
        assert_eq!(reply.body["errors"], json!([]));
        assert_eq!(reply.body["messages"], json!([]));
        assert_eq!(reply.body["result"]["key_rotation_interval_days"], 42);
    }
}
