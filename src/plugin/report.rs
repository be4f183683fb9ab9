//! How each rotate request ended, the line printed for it, and the exit code.

use std::fmt;

use crate::crd::{AccessKeyPolicy, RotateOutcome};

/// Exit codes of `kubectl keyrotor` (2 is clap's code for a usage error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// Every request was rotated (with `--wait`) or recorded (without).
    Success,
    /// At least one request was refused (`RefusedCooldown`, `RefusedObserveOnly`).
    Refused,
    /// At least one request was not handled before `--timeout`.
    TimedOut,
    /// At least one rotation failed at Cloudflare (`Failed`).
    Failed,
    /// The plugin could not do its job (configuration, API, not found, usage).
    Error,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Error => 1,
            Self::Refused => 3,
            Self::Failed => 4,
            Self::TimedOut => 5,
        }
    }

    /// The exit status of several requests: the most serious one, in the
    /// order error > failed > timed out > refused > success.
    pub fn worst(statuses: impl IntoIterator<Item = Self>) -> Self {
        statuses.into_iter().max().unwrap_or(Self::Success)
    }
}

/// A policy by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PolicyKey {
    /// The key of a policy read from the API server.
    pub fn of(policy: &AccessKeyPolicy) -> Self {
        Self {
            namespace: policy.metadata.namespace.clone().unwrap_or_default(),
            name: policy.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How one rotate request ended, as far as the plugin saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateResult {
    /// The annotation was set; the plugin did not wait.
    Requested {
        /// Whether the request skips the cooldown.
        forced: bool,
    },
    /// The operator handled the request.
    Handled {
        /// Its outcome.
        outcome: RotateOutcome,
        /// What the user should know about it.
        detail: String,
    },
    /// The operator did not handle the request in time.
    TimedOut {
        /// Why, as far as the policy's status tells.
        detail: String,
    },
    /// The request can no longer be handled: the policy is gone, or another
    /// request replaced ours before the operator saw it.
    Abandoned {
        /// What happened.
        detail: String,
    },
    /// The request could not be made, or its answer read.
    Error {
        /// The error.
        detail: String,
    },
}

impl RotateResult {
    /// The exit status this result alone calls for.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::Requested { .. } => ExitStatus::Success,
            Self::Handled { outcome, .. } => match outcome {
                RotateOutcome::Rotated => ExitStatus::Success,
                RotateOutcome::RefusedCooldown | RotateOutcome::RefusedObserveOnly => {
                    ExitStatus::Refused
                }
                RotateOutcome::Failed => ExitStatus::Failed,
            },
            Self::TimedOut { .. } => ExitStatus::TimedOut,
            Self::Abandoned { .. } | Self::Error { .. } => ExitStatus::Error,
        }
    }
}

/// One rotate request and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// The policy.
    pub key: PolicyKey,
    /// The annotation value sent (empty if the patch failed before one was sent).
    pub request: String,
    /// The result.
    pub result: RotateResult,
}

impl RotateReport {
    /// The line printed for this request.
    pub fn line(&self) -> String {
        let Self {
            key,
            request,
            result,
        } = self;
        match result {
            RotateResult::Requested { forced } => format!(
                "{key}: rotation requested ({}={request}{})",
                crate::crd::ANNOTATION_ROTATE_REQUESTED_AT,
                if *forced { ", forced" } else { "" }
            ),
            RotateResult::Handled { outcome, detail } => {
                format!("{key}: {}: {detail}", outcome_name(*outcome))
            }
            RotateResult::TimedOut { detail } => format!("{key}: TimedOut: {detail}"),
            RotateResult::Abandoned { detail } => format!("{key}: Abandoned: {detail}"),
            RotateResult::Error { detail } => format!("{key}: Error: {detail}"),
        }
    }
}

/// The outcome's name as the status spells it.
pub fn outcome_name(outcome: RotateOutcome) -> &'static str {
    match outcome {
        RotateOutcome::Rotated => "Rotated",
        RotateOutcome::RefusedCooldown => "RefusedCooldown",
        RotateOutcome::RefusedObserveOnly => "RefusedObserveOnly",
        RotateOutcome::Failed => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(result: RotateResult) -> RotateReport {
        RotateReport {
            key: PolicyKey {
                namespace: "security".into(),
                name: "prod".into(),
            },
            request: "2026-11-26T10:00:00.000000000Z".into(),
            result,
        }
    }

    fn handled(outcome: RotateOutcome) -> RotateResult {
        RotateResult::Handled {
            outcome,
            detail: "d".into(),
        }
    }

    #[test]
    fn each_result_has_its_documented_exit_code() {
        let code = |r: RotateResult| r.exit_status().code();
        assert_eq!(code(RotateResult::Requested { forced: false }), 0);
        assert_eq!(code(handled(RotateOutcome::Rotated)), 0);
        assert_eq!(code(handled(RotateOutcome::RefusedCooldown)), 3);
        assert_eq!(code(handled(RotateOutcome::RefusedObserveOnly)), 3);
        assert_eq!(code(handled(RotateOutcome::Failed)), 4);
        assert_eq!(code(RotateResult::TimedOut { detail: "".into() }), 5);
        assert_eq!(code(RotateResult::Abandoned { detail: "".into() }), 1);
        assert_eq!(code(RotateResult::Error { detail: "".into() }), 1);
    }

    #[test]
    fn many_requests_exit_with_the_most_serious_result() {
        use ExitStatus::*;
        assert_eq!(ExitStatus::worst([]), Success);
        assert_eq!(ExitStatus::worst([Success, Success]), Success);
        assert_eq!(ExitStatus::worst([Success, Refused, Success]), Refused);
        assert_eq!(ExitStatus::worst([Refused, TimedOut]), TimedOut);
        assert_eq!(ExitStatus::worst([TimedOut, Failed, Refused]), Failed);
        assert_eq!(ExitStatus::worst([Failed, Error, Success]), Error);
    }

    #[test]
    fn lines_name_the_policy_and_the_outcome() {
        assert_eq!(
            report(RotateResult::Requested { forced: true }).line(),
            "security/prod: rotation requested (keyrotor.dev/rotate-requested-at=2026-11-26T10:00:00.000000000Z, forced)"
        );
        assert_eq!(
            report(handled(RotateOutcome::RefusedCooldown)).line(),
            "security/prod: RefusedCooldown: d"
        );
        assert_eq!(
            report(RotateResult::TimedOut {
                detail: "after 2m".into()
            })
            .line(),
            "security/prod: TimedOut: after 2m"
        );
    }
}
