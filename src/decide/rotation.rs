//! The exactly-once rotation decision (pure). The account's own
//! `last_key_rotation_at` is the witness: a pending request whose baseline the
//! account has moved past was rotated, whatever happened to the operator since.
//! [`super::witness`] keeps that comparison sound at any reported precision.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;

use super::witness::{AccountClock, canonical, hold_before_rotating, rotated_since};
use crate::crd::{
    ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicyStatus,
    ManagementPolicy, RotateOutcome,
};

/// A rotate request read from the policy's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateRequest {
    /// The annotation value; any new value is one request.
    pub value: String,
    /// `keyrotor.dev/rotate-force: "true"` skips the cooldown.
    pub force: bool,
}

impl RotateRequest {
    /// The request in `annotations`, if any. An empty value is no request.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let value = annotations.get(ANNOTATION_ROTATE_REQUESTED_AT)?;
        if value.is_empty() {
            return None;
        }
        Some(Self {
            value: value.clone(),
            force: annotations
                .get(ANNOTATION_ROTATE_FORCE)
                .is_some_and(|f| f.eq_ignore_ascii_case("true")),
        })
    }
}

/// What to do about the rotate request this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// No request, or it was handled already.
    Idle,
    /// Record a refusal as the request's outcome.
    Refuse {
        /// The request value.
        request: String,
        /// `RefusedCooldown` or `RefusedObserveOnly`.
        outcome: RotateOutcome,
        /// What the user can do about it.
        message: String,
    },
    /// The account shows the rotation happened: record it, no POST.
    Confirmed {
        /// The request value.
        request: String,
    },
    /// The account's last rotation is so recent that a new one could share its
    /// second: read the account again after `wait` (nothing is written).
    Hold {
        /// The request value.
        request: String,
        /// How long until a rotation may begin, on the account's clock.
        wait: Duration,
    },
    /// Record the request and its baseline in status, then POST once.
    Begin {
        /// The request value.
        request: String,
        /// The account's last rotation just before.
        baseline: Option<Timestamp>,
    },
}

/// Decides the rotation step from the request, what status recorded, what
/// the account says now and the account's clock (cooldown and the witness are
/// judged on the account's clock, not the operator's).
pub fn decide_rotation(
    request: Option<&RotateRequest>,
    status: &AccessKeyPolicyStatus,
    mode: ManagementPolicy,
    cooldown: Duration,
    account_last_rotation: Option<Timestamp>,
    clock: AccountClock,
) -> RotationStep {
    let Some(request) = request else {
        return RotationStep::Idle;
    };
    if status.last_handled_rotate_request.as_deref() == Some(request.value.as_str()) {
        return RotationStep::Idle;
    }
    // A pending request the account shows rotated is done; one it does not show
    // goes through the checks below again (the mode may have changed).
    let pending = status
        .pending_rotation
        .as_ref()
        .filter(|p| p.request == request.value);
    if let Some(pending) = pending
        && rotated_since(pending.baseline_key_rotation_at, account_last_rotation)
    {
        return RotationStep::Confirmed {
            request: request.value.clone(),
        };
    }
    if mode == ManagementPolicy::Observe {
        return RotationStep::Refuse {
            request: request.value.clone(),
            outcome: RotateOutcome::RefusedObserveOnly,
            message: "rotation refused: the policy is in Observe mode (managementPolicy: Observe)"
                .to_owned(),
        };
    }
    if let Some(last) = account_last_rotation
        .filter(|_| !request.force)
        .map(canonical)
    {
        let allowed_at = last
            .checked_add(
                jiff::SignedDuration::try_from(cooldown).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MAX);
        if clock.now() < allowed_at {
            return RotationStep::Refuse {
                request: request.value.clone(),
                outcome: RotateOutcome::RefusedCooldown,
                message: format!(
                    "rotation refused: the key was last rotated at {last}, inside the rotationCooldown; \
                     a rotation is allowed after {allowed_at}, or set annotation {ANNOTATION_ROTATE_FORCE}: \"true\" to rotate now"
                ),
            };
        }
    }
    if let Some(wait) = hold_before_rotating(account_last_rotation, clock) {
        return RotationStep::Hold {
            request: request.value.clone(),
            wait,
        };
    }
    RotationStep::Begin {
        request: request.value.clone(),
        baseline: account_last_rotation.map(canonical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PendingRotation;

    /// name, request, recorded status, mode, account's last rotation, expected step
    type Case = (
        &'static str,
        Option<RotateRequest>,
        AccessKeyPolicyStatus,
        ManagementPolicy,
        Option<Timestamp>,
        RotationStep,
    );

    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("valid timestamp")
    }

    /// The account's clock and ours agree.
    fn at(text: &str) -> AccountClock {
        AccountClock {
            served_at: Some(ts(text)),
            operator_now: ts(text),
        }
    }

    fn request(value: &str, force: bool) -> RotateRequest {
        RotateRequest {
            value: value.into(),
            force,
        }
    }

    fn handled(value: &str) -> AccessKeyPolicyStatus {
        AccessKeyPolicyStatus {
            last_handled_rotate_request: Some(value.into()),
            ..Default::default()
        }
    }

    fn pending(value: &str, baseline: Option<&str>) -> AccessKeyPolicyStatus {
        AccessKeyPolicyStatus {
            pending_rotation: Some(PendingRotation {
                request: value.into(),
                baseline_key_rotation_at: baseline.map(ts),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_requests_from_annotations() {
        let mut annotations = BTreeMap::new();
        assert_eq!(RotateRequest::from_annotations(&annotations), None);
        annotations.insert(ANNOTATION_ROTATE_REQUESTED_AT.to_owned(), String::new());
        assert_eq!(RotateRequest::from_annotations(&annotations), None);
        annotations.insert(ANNOTATION_ROTATE_REQUESTED_AT.to_owned(), "r1".into());
        assert_eq!(
            RotateRequest::from_annotations(&annotations),
            Some(request("r1", false))
        );
        annotations.insert(ANNOTATION_ROTATE_FORCE.to_owned(), "True".into());
        assert_eq!(
            RotateRequest::from_annotations(&annotations),
            Some(request("r1", true))
        );
    }

    #[test]
    fn decision_table() {
        let now = at("2026-11-26T10:00:00Z");
        let old = Some(ts("2026-11-01T00:00:00Z"));
        let recent = Some(ts("2026-11-25T00:00:00Z"));
        let manage = ManagementPolicy::Manage;
        let begin = |value: &str, baseline| RotationStep::Begin {
            request: value.into(),
            baseline,
        };
        let cases: Vec<Case> = vec![
            (
                "no request",
                None,
                Default::default(),
                manage,
                old,
                RotationStep::Idle,
            ),
            (
                "already handled",
                Some(request("r1", false)),
                handled("r1"),
                manage,
                old,
                RotationStep::Idle,
            ),
            (
                "new value after a handled one",
                Some(request("r2", false)),
                handled("r1"),
                manage,
                old,
                begin("r2", old),
            ),
            (
                "first rotation of a never-rotated account",
                Some(request("r1", false)),
                Default::default(),
                manage,
                None,
                begin("r1", None),
            ),
            (
                "pending, account moved past baseline",
                Some(request("r1", false)),
                pending("r1", Some("2026-11-01T00:00:00Z")),
                manage,
                recent,
                RotationStep::Confirmed {
                    request: "r1".into(),
                },
            ),
            (
                "pending, never rotated before, now rotated",
                Some(request("r1", false)),
                pending("r1", None),
                manage,
                recent,
                RotationStep::Confirmed {
                    request: "r1".into(),
                },
            ),
            (
                "pending, account unchanged: POST again",
                Some(request("r1", false)),
                pending("r1", Some("2026-11-01T00:00:00Z")),
                manage,
                old,
                begin("r1", old),
            ),
            (
                "pending rotation seen after a switch to Observe",
                Some(request("r1", false)),
                pending("r1", Some("2026-11-01T00:00:00Z")),
                ManagementPolicy::Observe,
                recent,
                RotationStep::Confirmed {
                    request: "r1".into(),
                },
            ),
            (
                "force skips the cooldown",
                Some(request("r1", true)),
                Default::default(),
                manage,
                recent,
                begin("r1", recent),
            ),
        ];
        for (name, req, status, mode, last, expected) in cases {
            assert_eq!(
                decide_rotation(req.as_ref(), &status, mode, WEEK, last, now),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn observe_mode_refuses_even_a_pending_request() {
        let step = decide_rotation(
            Some(&request("r1", false)),
            &pending("r1", Some("2026-11-01T00:00:00Z")),
            ManagementPolicy::Observe,
            WEEK,
            Some(ts("2026-11-01T00:00:00Z")),
            at("2026-11-26T10:00:00Z"),
        );
        assert!(
            matches!(
                step,
                RotationStep::Refuse {
                    outcome: RotateOutcome::RefusedObserveOnly,
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn observe_mode_refuses() {
        let step = decide_rotation(
            Some(&request("r1", true)),
            &Default::default(),
            ManagementPolicy::Observe,
            WEEK,
            None,
            at("2026-11-26T10:00:00Z"),
        );
        assert!(
            matches!(
                step,
                RotationStep::Refuse {
                    outcome: RotateOutcome::RefusedObserveOnly,
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn cooldown_refusal_says_when_it_would_be_allowed() {
        let step = decide_rotation(
            Some(&request("r1", false)),
            &Default::default(),
            ManagementPolicy::Manage,
            WEEK,
            Some(ts("2026-11-25T00:00:00Z")),
            at("2026-11-26T10:00:00Z"),
        );
        let RotationStep::Refuse {
            outcome, message, ..
        } = step
        else {
            panic!("expected a refusal, got {step:?}");
        };
        assert_eq!(outcome, RotateOutcome::RefusedCooldown);
        assert!(message.contains("2026-12-02T00:00:00Z"), "{message}");
        assert!(message.contains(ANNOTATION_ROTATE_FORCE), "{message}");
    }

    #[test]
    fn a_zero_cooldown_never_refuses() {
        let last = ts("2026-11-26T10:00:00Z");
        let step = decide_rotation(
            Some(&request("r1", false)),
            &Default::default(),
            ManagementPolicy::Manage,
            Duration::ZERO,
            Some(last),
            at("2026-11-26T10:00:05Z"),
        );
        assert_eq!(
            step,
            RotationStep::Begin {
                request: "r1".into(),
                baseline: Some(last)
            }
        );
    }

    /// The double rotation found at one-second precision: a forced request in
    /// the same second as the previous rotation is held until the account's
    /// clock has left that second behind, and then begun with the baseline
    /// cut to whole seconds.
    #[test]
    fn a_request_in_the_same_second_as_the_last_rotation_waits_for_the_accounts_clock() {
        let last = ts("2026-12-02T06:12:25.27713Z");
        let decide = |clock| {
            decide_rotation(
                Some(&request("r2", true)),
                &handled("r1"),
                ManagementPolicy::Manage,
                WEEK,
                Some(last),
                clock,
            )
        };
        assert_eq!(
            decide(at("2026-12-02T06:12:25Z")),
            RotationStep::Hold {
                request: "r2".into(),
                wait: Duration::from_secs(2)
            }
        );
        // Our clock says it is much later; the account's Date header decides.
        let skewed = AccountClock {
            served_at: Some(ts("2026-12-02T06:12:26Z")),
            operator_now: ts("2026-12-02T07:00:00Z"),
        };
        assert_eq!(
            decide(skewed),
            RotationStep::Hold {
                request: "r2".into(),
                wait: Duration::from_secs(1)
            }
        );
        assert_eq!(
            decide(at("2026-12-02T06:12:27Z")),
            RotationStep::Begin {
                request: "r2".into(),
                baseline: Some(ts("2026-12-02T06:12:25Z"))
            }
        );
    }

    #[test]
    fn a_pending_request_is_confirmed_by_the_whole_second_only() {
        let step = |baseline: &str, now_at: &str| {
            decide_rotation(
                Some(&request("r1", true)),
                &pending("r1", Some(baseline)),
                ManagementPolicy::Manage,
                WEEK,
                Some(ts(now_at)),
                at("2026-12-02T06:13:00Z"),
            )
        };
        let confirmed = RotationStep::Confirmed {
            request: "r1".into(),
        };
        // The same second at other precisions and offsets: not rotated.
        for now_at in [
            "2026-12-02T06:12:25Z",
            "2026-12-02T06:12:25+00:00",
            "2026-12-02T06:12:25.9Z",
        ] {
            assert!(
                matches!(
                    step("2026-12-02T06:12:25.17Z", now_at),
                    RotationStep::Begin { .. }
                ),
                "{now_at}"
            );
        }
        assert!(matches!(
            step("2026-12-02T06:12:25Z", "2026-12-02T06:12:25.17Z"),
            RotationStep::Begin { .. }
        ));
        assert_eq!(
            step("2026-12-02T06:12:25.9Z", "2026-12-02T06:12:27Z"),
            confirmed
        );
        assert_eq!(
            step("2026-12-02T06:12:25Z", "2026-12-02T06:12:27.000001+00:00"),
            confirmed
        );
    }

    #[test]
    fn the_cooldown_is_judged_on_the_accounts_clock() {
        let last = Some(ts("2026-11-25T00:00:00Z"));
        let decide = |clock| {
            decide_rotation(
                Some(&request("r1", false)),
                &Default::default(),
                ManagementPolicy::Manage,
                WEEK,
                last,
                clock,
            )
        };
        // An operator clock a month fast does not open the cooldown early.
        let fast = AccountClock {
            served_at: Some(ts("2026-11-26T00:00:00Z")),
            operator_now: ts("2026-12-26T00:00:00Z"),
        };
        assert!(matches!(
            decide(fast),
            RotationStep::Refuse {
                outcome: RotateOutcome::RefusedCooldown,
                ..
            }
        ));
        // A slow one does not hold it closed once the account's week is over.
        let slow = AccountClock {
            served_at: Some(ts("2026-12-02T00:00:01Z")),
            operator_now: ts("2026-11-20T00:00:00Z"),
        };
        assert!(matches!(decide(slow), RotationStep::Begin { .. }));
    }
}
