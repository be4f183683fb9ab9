//! Event reasons, as the public contract names them.

/// Reasons of the events keyrotor publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub fn event_type(self) -> &'static str {
        match self {
            Self::IntervalUpdated | Self::DriftCorrected | Self::Rotated | Self::Restored => {
                "Normal"
            }
            Self::RotationRefused
            | Self::CredentialsError
            | Self::ApiError
            | Self::Conflict
            | Self::BudgetExhausted => "Warning",
        }
    }
}
