//! Event reasons, as the public contract names them.

use kube::runtime::events::{Event, EventType};

/// Reasons of the events keyrotor publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    /// The interval was set because the spec changed.
    IntervalUpdated,
    /// The interval was set back after someone changed the account.
    DriftCorrected,
    /// The key was rotated on request.
    Rotated,
    /// A rotate request was refused.
    RotationRefused,
    /// The Secret is missing or broken, or Cloudflare refused the credentials.
    CredentialsError,
    /// Cloudflare failed.
    ApiError,
    /// Another policy owns the account.
    Conflict,
    /// The original interval was put back on deletion.
    Restored,
    /// The credential's request budget cannot check every policy within its interval.
    BudgetExhausted,
}

impl EventReason {
    /// The reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IntervalUpdated => "IntervalUpdated",
            Self::DriftCorrected => "DriftCorrected",
            Self::Rotated => "Rotated",
            Self::RotationRefused => "RotationRefused",
            Self::CredentialsError => "CredentialsError",
            Self::ApiError => "ApiError",
            Self::Conflict => "Conflict",
            Self::Restored => "Restored",
            Self::BudgetExhausted => "BudgetExhausted",
        }
    }

    /// Warning for problems, Normal for changes that went well.
    fn event_type(self) -> EventType {
        match self {
            Self::IntervalUpdated | Self::DriftCorrected | Self::Rotated | Self::Restored => {
                EventType::Normal
            }
            Self::RotationRefused
            | Self::CredentialsError
            | Self::ApiError
            | Self::Conflict
            | Self::BudgetExhausted => EventType::Warning,
        }
    }

    /// The event to publish.
    pub fn event(self, note: impl Into<String>) -> Event {
        let mut note: String = note.into();
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        Event {
            type_: self.event_type(),
            reason: self.as_str().to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        }
    }
}
