//! The rotation step a maintenance window asks for (pure): the same
//! exactly-once protocol as an annotation request, with the window's start as
//! the request. A window rotation in flight is settled first; a new one
//! begins only while its window is open, in Manage mode, and once per window.

use super::{
    rotation::RotationStep,
    window::{Verdict, WindowPlan, window_request},
    witness::{AccountClock, canonical, hold_before_rotating, rotated_since},
};
use crate::crd::{AccessKeyPolicyStatus, ManagementPolicy, RotateOutcome};

/// The window's step this pass, if it has one.
pub fn decide_window_rotation(
    plan: Option<&WindowPlan>,
    status: &AccessKeyPolicyStatus,
    mode: ManagementPolicy,
    account_last_rotation: Option<jiff::Timestamp>,
    clock: AccountClock,
) -> Option<RotationStep> {
    let open_window = plan.and_then(|plan| match plan.verdict {
        Verdict::InWindow {
            window_start,
            open: true,
            ..
        } => Some(window_start),
        _ => None,
    });
    let begin = |window_start| match hold_before_rotating(account_last_rotation, clock) {
        Some(wait) => RotationStep::Hold {
            request: window_request(window_start),
            wait,
        },
        None => RotationStep::WindowBegin {
            window_start,
            baseline: account_last_rotation.map(canonical),
        },
    };
    if let Some(pending) = &status.pending_rotation
        && let Some(window_start) = pending.window_start
    {
        if rotated_since(pending.baseline_key_rotation_at, account_last_rotation) {
            return Some(RotationStep::WindowConfirmed { window_start });
        }
        if mode == ManagementPolicy::Manage && open_window == Some(window_start) {
            // Not rotated yet and the window still open: POST again.
            return Some(begin(window_start));
        }
        let (outcome, message) = match mode {
            ManagementPolicy::Observe => (
                RotateOutcome::RefusedObserveOnly,
                format!(
                    "the rotation of the window starting {window_start} was not made: the policy switched to Observe mode"
                ),
            ),
            ManagementPolicy::Manage => (
                RotateOutcome::Failed,
                format!(
                    "the rotation of the window starting {window_start} could not be confirmed before the window closed; the operator does not rotate outside a window"
                ),
            ),
        };
        return Some(RotationStep::WindowEnded {
            window_start,
            outcome,
            message,
        });
    }
    let window_start = open_window?;
    let used = status
        .last_window_rotation
        .as_ref()
        .is_some_and(|last| last.window_start == window_start);
    (mode == ManagementPolicy::Manage && !used).then(|| begin(window_start))
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::crd::{PendingRotation, WindowRotation};

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn clock(now: &str) -> AccountClock {
        AccountClock {
            served_at: Some(ts(now)),
            operator_now: ts(now),
        }
    }

    fn plan(open: bool) -> WindowPlan {
        WindowPlan {
            next_window_start: Some(ts("2027-01-12T02:00:00Z")),
            automatic: Some(ts("2027-01-31T00:00:00Z")),
            deadline: Some(ts("2027-01-30T00:00:00Z")),
            verdict: Verdict::InWindow {
                window_start: ts("2027-01-05T02:00:00Z"),
                at: ts("2027-01-05T02:00:00Z"),
                until: ts("2027-01-05T04:00:00Z"),
                open,
            },
        }
    }

    fn pending_window() -> AccessKeyPolicyStatus {
        AccessKeyPolicyStatus {
            pending_rotation: Some(Box::new(PendingRotation {
                request: window_request(ts("2027-01-05T02:00:00Z")),
                baseline_key_rotation_at: Some(ts("2027-01-01T00:00:00Z")),
                window_start: Some(ts("2027-01-05T02:00:00Z")),
            })),
            ..Default::default()
        }
    }

    const LAST: Option<&str> = Some("2027-01-01T00:00:00Z");

    fn decide(
        plan: Option<&WindowPlan>,
        status: &AccessKeyPolicyStatus,
        mode: ManagementPolicy,
        last: Option<&str>,
    ) -> Option<RotationStep> {
        decide_window_rotation(
            plan,
            status,
            mode,
            last.map(ts),
            clock("2027-01-05T02:30:00Z"),
        )
    }

    #[test]
    fn an_open_window_begins_once_and_only_in_manage_mode() {
        let none = AccessKeyPolicyStatus::default();
        assert_eq!(
            decide(Some(&plan(true)), &none, ManagementPolicy::Manage, LAST),
            Some(RotationStep::WindowBegin {
                window_start: ts("2027-01-05T02:00:00Z"),
                baseline: LAST.map(ts),
            })
        );
        assert_eq!(
            decide(Some(&plan(false)), &none, ManagementPolicy::Manage, LAST),
            None
        );
        assert_eq!(
            decide(Some(&plan(true)), &none, ManagementPolicy::Observe, LAST),
            None
        );
        assert_eq!(decide(None, &none, ManagementPolicy::Manage, LAST), None);
        let used = AccessKeyPolicyStatus {
            last_window_rotation: Some(WindowRotation {
                window_start: ts("2027-01-05T02:00:00Z"),
                outcome: RotateOutcome::Rotated,
            }),
            ..Default::default()
        };
        assert_eq!(
            decide(Some(&plan(true)), &used, ManagementPolicy::Manage, LAST),
            None,
            "a window rotates once"
        );
    }

    #[test]
    fn a_pending_window_rotation_is_confirmed_retried_or_given_up() {
        let pending = pending_window();
        let start = ts("2027-01-05T02:00:00Z");
        assert_eq!(
            decide(
                Some(&plan(true)),
                &pending,
                ManagementPolicy::Manage,
                Some("2027-01-05T02:00:03Z")
            ),
            Some(RotationStep::WindowConfirmed {
                window_start: start
            })
        );
        // Confirmed even after the window closed, or in Observe mode.
        assert_eq!(
            decide(
                Some(&plan(false)),
                &pending,
                ManagementPolicy::Observe,
                Some("2027-01-05T02:00:03Z")
            ),
            Some(RotationStep::WindowConfirmed {
                window_start: start
            })
        );
        assert!(matches!(
            decide(Some(&plan(true)), &pending, ManagementPolicy::Manage, LAST),
            Some(RotationStep::WindowBegin { .. })
        ));
        let ended = decide(None, &pending, ManagementPolicy::Manage, LAST);
        assert!(
            matches!(
                ended,
                Some(RotationStep::WindowEnded {
                    outcome: RotateOutcome::Failed,
                    ..
                })
            ),
            "{ended:?}"
        );
        assert!(matches!(
            decide(Some(&plan(true)), &pending, ManagementPolicy::Observe, LAST),
            Some(RotationStep::WindowEnded {
                outcome: RotateOutcome::RefusedObserveOnly,
                ..
            })
        ));
    }

    #[test]
    fn a_rotation_in_the_same_second_as_the_last_one_is_held() {
        let step = decide_window_rotation(
            Some(&plan(true)),
            &AccessKeyPolicyStatus::default(),
            ManagementPolicy::Manage,
            Some(ts("2027-01-05T02:29:59.5Z")),
            clock("2027-01-05T02:30:00Z"),
        );
        assert!(matches!(step, Some(RotationStep::Hold { .. })), "{step:?}");
    }
}
