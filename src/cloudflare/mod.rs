//! The Cloudflare API client for the Access key configuration endpoints:
//! authentication, the response envelope, typed errors, retries and the
//! per-credential request budget.

mod budget;
mod client;
mod credentials;
mod envelope;
mod error;
mod observer;
mod retry;

pub use budget::{
    BUDGET_HOLD, BudgetRegistry, CredentialBudget, DEFAULT_TOTAL_REQUESTS, Demand, PutOff,
};
pub use client::{ClientSettings, CloudflareClient, DEFAULT_BASE_URL, Operation};
pub use credentials::{CredentialId, Credentials};
pub use envelope::{AccountKeyConfig, MAX_BODY_BYTES, parse_http_date, parse_response};
pub use error::{CloudflareError, TransportKind};
pub use observer::{NoObserver, RequestObserver};
pub use retry::RetryPolicy;
