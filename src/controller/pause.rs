//! Test hook: with the `failpoints` feature (test builds only),
//! `KEYROTOR_TEST_PAUSE_AT=<point>` makes the operator stop forever at that point
//! of the rotation protocol, so a crash test can SIGKILL it at an exact moment.
//! The points are the `fail` crate's failpoints; without the feature the hook
//! is compiled out and `pause_point` does nothing.

/// Points where the operator can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// The pending request is recorded in status; the POST has not been sent.
    RotateBeforePost,
    /// Cloudflare answered the POST; the outcome is not yet in status.
    RotateAfterPost,
}

#[cfg(feature = "failpoints")]
impl PausePoint {
    /// The failpoint's name, also the value of `KEYROTOR_TEST_PAUSE_AT`.
    fn as_str(self) -> &'static str {
        match self {
            Self::RotateBeforePost => "rotate-before-post",
            Self::RotateAfterPost => "rotate-after-post",
        }
    }
}

/// Waits forever if the failpoint named after `point` is on.
///
/// The failpoint's `return` action parks only this task: the crate's own
/// `pause` action would block a runtime worker thread instead.
#[cfg(feature = "failpoints")]
pub async fn pause_point(point: PausePoint) {
    static FROM_ENV: std::sync::Once = std::sync::Once::new();
    FROM_ENV.call_once(|| {
        if let Ok(name) = std::env::var("KEYROTOR_TEST_PAUSE_AT")
            && let Err(err) = fail::cfg(name, "return")
        {
            tracing::error!(%err, "KEYROTOR_TEST_PAUSE_AT: cannot configure the failpoint");
        }
    });
    if fail::eval(point.as_str(), |_| ()).is_some() {
        tracing::warn!(
            point = point.as_str(),
            "pause point reached (KEYROTOR_TEST_PAUSE_AT)"
        );
        std::future::pending::<()>().await;
    }
}

/// Does nothing: built without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
pub async fn pause_point(_point: PausePoint) {}
