//! Logging set-up: text or JSON, level from the settings.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level/filter text is not valid.
    #[error("invalid log level {0:?}: {1}")]
    BadFilter(String, String),
    /// A subscriber was already installed.
    #[error("logging already initialised")]
    AlreadySet,
}

/// Installs the global subscriber.
pub fn init(level: &str, json: bool) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| TelemetryError::BadFilter(level.to_owned(), e.to_string()))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        // The event's fields at the top of the line (`message`, ...), next to
        // `timestamp`, `level`, `target` and the spans. A span's fields must
        // not be called `name`: the formatter writes the span's own name
        // under that key in the same object (the reconcile span names its
        // policy `policy`).
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
    } else {
        // Colours only on a terminal: log files and collectors get plain text.
        let ansi = std::io::stdout().is_terminal();
        registry.with(fmt::layer().with_ansi(ansi)).try_init()
    };
    result.map_err(|_| TelemetryError::AlreadySet)
}
