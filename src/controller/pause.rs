//! Test hook: `KEYROTOR_TEST_PAUSE_AT=<point>` makes the operator stop forever
//! at that point of the rotation protocol, so a crash test can SIGKILL it at an
//! exact moment. Unset (always, in production) it costs one lookup.

use std::sync::OnceLock;

use tracing::warn;

/// Points where the operator can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// The pending request is recorded in status; the POST has not been sent.
    RotateBeforePost,
    /// Cloudflare answered the POST; the outcome is not yet in status.
    RotateAfterPost,
}

impl PausePoint {
    fn as_str(self) -> &'static str {
        match self {
            Self::RotateBeforePost => "rotate-before-post",
            Self::RotateAfterPost => "rotate-after-post",
        }
    }
}

/// Waits forever if the environment asks to pause at `point`.
pub async fn pause_point(point: PausePoint) {
    static CONFIGURED: OnceLock<Option<String>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| std::env::var("KEYROTOR_TEST_PAUSE_AT").ok());
    if configured.as_deref() == Some(point.as_str()) {
        warn!(
            point = point.as_str(),
            "pause point reached (KEYROTOR_TEST_PAUSE_AT)"
        );
        std::future::pending::<()>().await;
    }
}
