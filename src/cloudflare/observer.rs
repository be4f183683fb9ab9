//! A hook for counting Cloudflare calls (metrics) without tying the client to them.

use std::time::Duration;

use super::client::Operation;

/// Told about every Cloudflare request the client makes.
pub trait RequestObserver: Send + Sync {
    /// One HTTP request finished: its HTTP status (`None` when no answer came) and duration.
    fn request(&self, operation: Operation, status: Option<u16>, took: Duration);
    /// A call waited this long for the credential's budget (zero when it did not wait).
    fn budget_wait(&self, waited: Duration);
}

/// Observes nothing.
pub struct NoObserver;

impl RequestObserver for NoObserver {
    fn request(&self, _: Operation, _: Option<u16>, _: Duration) {}
    fn budget_wait(&self, _: Duration) {}
}
