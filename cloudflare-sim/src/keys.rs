//! What the three Access key endpoints do, once a request has reached the
//! API: authenticate, count against the rate limit, find the account, check
//! permission, then read, update or rotate.

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::auth::{AuthError, permits};
use crate::config::CredentialSeed;
use crate::envelope::{ApiFailure, ErrorItem, Reply};
use crate::interval::parse_interval_body;
use crate::rate_limit::{Admission, Throttled};
use crate::state::World;

/// Which endpoint was called.
#[derive(Debug, Clone)]
pub(crate) enum KeysOperation {
    /// `GET /accounts/{id}/access/keys`.
    Read,
    /// `PUT /accounts/{id}/access/keys` with its raw body.
    Update(Bytes),
    /// `POST /accounts/{id}/access/keys/rotate`.
    Rotate,
}

impl KeysOperation {
    fn writes(&self) -> bool {
        !matches!(self, Self::Read)
    }
}

/// One call to a key endpoint.
#[derive(Debug, Clone)]
pub(crate) struct KeysCall {
    /// Account id from the path.
    pub(crate) account_id: String,
    /// Path below `/client/v4`, quoted in the 7003 message.
    pub(crate) route: String,
    /// What to do.
    pub(crate) operation: KeysOperation,
}

/// Why an authenticated call cannot touch the account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AccessError {
    /// No such account.
    #[error("Could not route to {route}, perhaps your object identifier is invalid?")]
    UnknownAccount { route: String },
    /// The account exists but has no Access keys.
    #[error("Access Keys Configuration not enabled for account")]
    NotEnabled,
    /// The credential is limited to other accounts, or read-only and writing.
    #[error("Authentication error")]
    NotPermitted,
}

impl ApiFailure for AccessError {
    fn status(&self) -> StatusCode {
        match self {
            Self::UnknownAccount { .. } => StatusCode::NOT_FOUND,
            // Status undocumented; 404 because Terraform treats 12109 as "gone".
            Self::NotEnabled => StatusCode::NOT_FOUND,
            Self::NotPermitted => StatusCode::FORBIDDEN,
        }
    }

    fn item(&self) -> ErrorItem {
        let code = match self {
            Self::UnknownAccount { .. } => 7003,
            Self::NotEnabled => 12109,
            Self::NotPermitted => 10000,
        };
        ErrorItem::new(code, self.to_string())
    }
}

/// Answers a key-endpoint call. Authentication errors carry no rate-limit
/// headers (the budget is per credential, and there is none); every other
/// answer does.
pub(crate) fn answer(
    world: &mut World,
    caller: &Result<CredentialSeed, AuthError>,
    call: KeysCall,
) -> Reply {
    let credential = match caller {
        Ok(credential) => credential,
        Err(error) => return Reply::failure(error),
    };
    let now = world.now();
    let admission = world.rate_limiter.check(&credential.id, now);
    let headers = world.rate_limiter.headers(&admission);
    let reply = match admission {
        Admission::Throttled { .. } => Reply::failure(&Throttled),
        Admission::Admitted { .. } => perform(world, credential, call),
    };
    reply.with_headers(headers)
}

fn perform(world: &mut World, credential: &CredentialSeed, call: KeysCall) -> Reply {
    let now = world.now();
    let writes = call.operation.writes();
    let Some(account) = world.account_mut(&call.account_id) else {
        return Reply::failure(&AccessError::UnknownAccount { route: call.route });
    };
    if !account.enabled() {
        return Reply::failure(&AccessError::NotEnabled);
    }
    if !permits(credential, &call.account_id, writes) {
        return Reply::failure(&AccessError::NotPermitted);
    }
    match call.operation {
        KeysOperation::Read => {}
        KeysOperation::Update(body) => match parse_interval_body(&body) {
            Ok(days) => {
                account.set_interval(days);
                // A shorter interval may already be over.
                account.catch_up(now);
            }
            Err(error) => return Reply::failure(&error),
        },
        KeysOperation::Rotate => account.rotate(now),
    }
    let config = account.key_config(now);
    Reply::success(config.answer(|at| world.render_time(at)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{AccountSeed, RateLimitConfig, SimConfig};

    fn world(limit: u32) -> World {
        World::new(&SimConfig {
            accounts: vec![
                AccountSeed::new("on").with_interval(30),
                AccountSeed::new("off").disabled(),
            ],
            credentials: Vec::new(),
            rate_limit: RateLimitConfig {
                limit,
                window: Duration::from_secs(60),
            },
            timestamps: Default::default(),
        })
    }

    fn call(account_id: &str, operation: KeysOperation) -> KeysCall {
        KeysCall {
            account_id: account_id.to_owned(),
            route: format!("/accounts/{account_id}/access/keys"),
            operation,
        }
    }

    fn code(reply: &Reply) -> Option<u64> {
        reply.body["errors"][0]["code"].as_u64()
    }

    #[test]
    fn checks_run_in_order_account_enabled_permission_body() {
        let mut world = world(10);
        let writer = Ok(CredentialSeed::token("w", "t"));
        let reader = Ok(CredentialSeed::token("r", "t").read_only());
        let reply = answer(&mut world, &writer, call("missing", KeysOperation::Read));
        assert_eq!((reply.status.as_u16(), code(&reply)), (404, Some(7003)));
        assert_eq!(
            reply.body["errors"][0]["message"],
            "Could not route to /accounts/missing/access/keys, perhaps your object identifier is invalid?"
        );
        let reply = answer(&mut world, &writer, call("off", KeysOperation::Rotate));
        assert_eq!((reply.status.as_u16(), code(&reply)), (404, Some(12109)));
        let reply = answer(
            &mut world,
            &reader,
            call("on", KeysOperation::Update(Bytes::from_static(b"x"))),
        );
        assert_eq!((reply.status.as_u16(), code(&reply)), (403, Some(10000)));
        let reply = answer(
            &mut world,
            &writer,
            call("on", KeysOperation::Update(Bytes::from_static(b"x"))),
        );
        assert_eq!((reply.status.as_u16(), code(&reply)), (400, Some(12001)));
    }

    #[test]
    fn rate_limit_comes_before_the_account_lookup() {
        let mut world = world(2);
        let caller = Ok(CredentialSeed::token("w", "t"));
        for _ in 0..2 {
            answer(&mut world, &caller, call("missing", KeysOperation::Read));
        }
        let reply = answer(&mut world, &caller, call("missing", KeysOperation::Read));
        assert_eq!((reply.status.as_u16(), code(&reply)), (429, Some(971)));
        assert_eq!(reply.headers["retry-after"], "60");
    }

    #[test]
    fn authentication_errors_skip_the_budget() {
        let mut world = world(10);
        let reply = answer(
            &mut world,
            &Err(AuthError::NoCredentials),
            call("on", KeysOperation::Read),
        );
        assert_eq!((reply.status.as_u16(), code(&reply)), (400, Some(10001)));
        assert!(reply.headers.get("ratelimit").is_none());
    }

    #[test]
    fn update_and_rotate_change_the_account() {
        let mut world = world(10);
        let caller = Ok(CredentialSeed::token("w", "t"));
        let body = Bytes::from_static(br#"{"key_rotation_interval_days": 90}"#);
        let reply = answer(&mut world, &caller, call("on", KeysOperation::Update(body)));
        assert_eq!(reply.body["result"]["key_rotation_interval_days"], 90);
        assert!(reply.headers.get("ratelimit").is_some());
        let reply = answer(&mut world, &caller, call("on", KeysOperation::Rotate));
        assert_eq!(reply.body["result"]["days_until_next_rotation"], 90);
        assert_eq!(world.account_view("on").map(|view| view.rotations), Some(1));
    }
}
