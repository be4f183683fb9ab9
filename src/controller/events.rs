//! Event reasons, as the public contract names them: each string is the
//! variant's name (strum's `IntoStaticStr`), pinned by the test below.

/// Reasons of the events keyrotor publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
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
    /// No maintenance window fits before the account rotates on its own.
    NoWindowFits,
    /// The spec holds a value the operator cannot use (an invalid rotation window).
    InvalidSpec,
}

impl EventReason {
    /// The reason string.
    pub fn as_str(self) -> &'static str {
        self.into()
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
            | Self::BudgetExhausted
            | Self::NoWindowFits
            | Self::InvalidSpec => "Warning",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray as _;

    #[test]
    fn the_troubleshooting_guide_lists_every_reason_with_its_type() {
        let guide = include_str!("../../docs/troubleshooting.md");
        let table = guide
            .split("## Event reasons")
            .nth(1)
            .expect("docs/troubleshooting.md has an Event reasons section");
        for reason in EventReason::VARIANTS {
            let row = format!("| `{}` | {} |", reason.as_str(), reason.event_type());
            assert!(table.contains(&row), "no row {row:?}");
        }
    }

    #[test]
    fn strings_are_the_public_contract() {
        let reasons: Vec<&str> = EventReason::VARIANTS.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "IntervalUpdated",
                "DriftCorrected",
                "Rotated",
                "RotationRefused",
                "CredentialsError",
                "ApiError",
                "Conflict",
                "Restored",
                "BudgetExhausted",
                "NoWindowFits",
                "InvalidSpec",
            ]
        );
    }
}
