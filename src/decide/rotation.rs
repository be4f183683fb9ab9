//! The exactly-once rotation decision (pure). The account's own
//! `last_key_rotation_at` is the witness: a pending request whose baseline the
//! account has moved past was rotated, whatever happened to the operator since.
//! [`super::witness`] keeps that comparison sound at any reported precision.

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use jiff::Timestamp;

use super::witness::{AccountClock, canonical, hold_before_rotating, rotated_since};
use crate::crd::{
    ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicyStatus,
    MAX_ROTATE_REQUEST_CHARS, ManagementPolicy, RotateOutcome,
};

/// How many characters of an over-long request value its stand-in in status keeps.
const STAND_IN_PREFIX_CHARS: usize = 64;

/// A rotate request read from the policy's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateRequest {
    /// The annotation value; any new value is one request. The cache keeps
    /// at most [`MAX_ROTATE_REQUEST_CHARS`] + 1 characters of it, enough to
    /// see that a value is too long.
    pub value: String,
    /// `keyrotor.dev/rotate-force` equals this request's value: skip the
    /// cooldown for this request only (a force left from an earlier request
    /// never forces a later one, as Flux's `forceAt`).
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
            force: annotations.get(ANNOTATION_ROTATE_FORCE) == Some(value),
        })
    }

    /// Longer than [`MAX_ROTATE_REQUEST_CHARS`]: an invalid request, never rotated.
    pub fn too_long(&self) -> bool {
        self.value.chars().count() > MAX_ROTATE_REQUEST_CHARS
    }

    /// The value status records for this request (`lastHandledRotateRequest`):
    /// the value itself, or for an over-long one a stand-in within the
    /// status field's own limit, so the refusal is recorded once and a
    /// corrected (shorter) value is a new request.
    pub fn recorded(&self) -> Cow<'_, str> {
        if !self.too_long() {
            return Cow::Borrowed(&self.value);
        }
        let prefix: String = self.value.chars().take(STAND_IN_PREFIX_CHARS).collect();
        Cow::Owned(format!(
            "{prefix}… (invalid: longer than {MAX_ROTATE_REQUEST_CHARS} characters)"
        ))
    }
}

/// Writes a whole duration the way the spec does (`168h`, `90m`, `45s`), for messages.
pub fn duration_text(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        format!("{}ms", duration.as_millis())
    } else if secs != 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// What to do about the rotate request this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// No request, or it was handled already.
    Idle,
    /// Record a refusal as the request's outcome.
    Refuse {
        /// The request value (as status records it).
        request: String,
        /// `RefusedCooldown`, `RefusedObserveOnly`, or `Failed` for an invalid value.
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
    /// A maintenance window is open: record its rotation as pending (with
    /// the baseline), then POST once.
    WindowBegin {
        /// The window's start.
        window_start: Timestamp,
        /// The account's last rotation just before.
        baseline: Option<Timestamp>,
    },
    /// The account shows the window's rotation happened: record it, no POST.
    WindowConfirmed {
        /// The window's start.
        window_start: Timestamp,
    },
    /// A window rotation in flight that can no longer be made: record its outcome.
    WindowEnded {
        /// The window's start.
        window_start: Timestamp,
        /// `Failed` (the window closed), or `RefusedObserveOnly`.
        outcome: RotateOutcome,
        /// Why.
        message: String,
    },
}

/// Decides the rotation step from the request, what status recorded, what
/// the account says now and the account's clock (cooldown and the witness are
/// judged on the account's clock, not the operator's). `cooldown` is the one
/// in force: the policy's, held to the operator's minimum.
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
    if status.last_handled_rotate_request.as_deref() == Some(request.recorded().as_ref()) {
        return RotationStep::Idle;
    }
    if request.too_long() {
        return RotationStep::Refuse {
            request: request.recorded().into_owned(),
            outcome: RotateOutcome::Failed,
            message: format!(
                "rotate request refused: the {ANNOTATION_ROTATE_REQUESTED_AT} value is longer than {MAX_ROTATE_REQUEST_CHARS} characters; \
                 use a short value such as an RFC 3339 timestamp (nothing was rotated)"
            ),
        };
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
                    "rotation refused: the key was last rotated at {last}, inside the cooldown of {}; \
                     a rotation is allowed after {allowed_at}, or make a new request with annotation \
                     {ANNOTATION_ROTATE_FORCE} set to the same value as {ANNOTATION_ROTATE_REQUESTED_AT} \
                     (kubectl keyrotor rotate --force) to rotate now",
                    duration_text(cooldown)
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
            pending_rotation: Some(Box::new(PendingRotation {
                request: value.into(),
                baseline_key_rotation_at: baseline.map(ts),
                window_start: None,
            })),
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
        // "true" (the old form) no longer forces; only the request's own value does.
        for stale in ["true", "True", "r0", "r1 ", ""] {
            annotations.insert(ANNOTATION_ROTATE_FORCE.to_owned(), stale.into());
            assert_eq!(
                RotateRequest::from_annotations(&annotations),
                Some(request("r1", false)),
                "{stale:?}"
            );
        }
        annotations.insert(ANNOTATION_ROTATE_FORCE.to_owned(), "r1".into());
        assert_eq!(
            RotateRequest::from_annotations(&annotations),
            Some(request("r1", true))
        );
        // The next request with the force of the one before is not forced.
        annotations.insert(ANNOTATION_ROTATE_REQUESTED_AT.to_owned(), "r2".into());
        assert_eq!(
            RotateRequest::from_annotations(&annotations),
            Some(request("r2", false))
        );
    }

    #[test]
    fn a_force_left_from_an_earlier_request_does_not_skip_the_cooldown() {
        let mut annotations = BTreeMap::from([
            (ANNOTATION_ROTATE_REQUESTED_AT.to_owned(), "r2".to_owned()),
            (ANNOTATION_ROTATE_FORCE.to_owned(), "r1".to_owned()),
        ]);
        let decide = |annotations: &BTreeMap<String, String>| {
            decide_rotation(
                RotateRequest::from_annotations(annotations).as_ref(),
                &handled("r1"),
                ManagementPolicy::Manage,
                WEEK,
                Some(ts("2026-11-25T00:00:00Z")),
                at("2026-11-26T10:00:00Z"),
            )
        };
        assert!(matches!(
            decide(&annotations),
            RotationStep::Refuse {
                outcome: RotateOutcome::RefusedCooldown,
                ..
            }
        ));
        annotations.insert(ANNOTATION_ROTATE_FORCE.to_owned(), "r2".to_owned());
        assert!(matches!(decide(&annotations), RotationStep::Begin { .. }));
    }

    #[test]
    fn a_request_longer_than_253_characters_is_refused_as_invalid_once() {
        let longest = "x".repeat(MAX_ROTATE_REQUEST_CHARS);
        assert!(!request(&longest, false).too_long());
        assert_eq!(request(&longest, false).recorded(), longest.as_str());
        // Characters, not bytes: 253 Cyrillic letters are 506 bytes and valid.
        assert!(!request(&"я".repeat(MAX_ROTATE_REQUEST_CHARS), false).too_long());
        let over = request(&"x".repeat(MAX_ROTATE_REQUEST_CHARS + 1), true);
        assert!(over.too_long());
        let recorded = over.recorded().into_owned();
        assert!(
            recorded.chars().count() <= MAX_ROTATE_REQUEST_CHARS,
            "{recorded}"
        );
        assert!(recorded.contains("invalid"), "{recorded}");
        let decide = |status: &AccessKeyPolicyStatus| {
            decide_rotation(
                Some(&over),
                status,
                ManagementPolicy::Manage,
                Duration::ZERO,
                None,
                at("2026-11-26T10:00:00Z"),
            )
        };
        let step = decide(&Default::default());
        let RotationStep::Refuse {
            request: value,
            outcome,
            message,
        } = step
        else {
            panic!("expected a refusal, got {step:?}");
        };
        assert_eq!(value, recorded);
        assert_eq!(outcome, RotateOutcome::Failed);
        assert!(message.contains("longer than 253"), "{message}");
        assert!(!message.contains(&over.value), "the value is not repeated");
        // Recorded once: the next pass is idle; a corrected value is a new request.
        assert_eq!(decide(&handled(&recorded)), RotationStep::Idle);
        let corrected = request(&longest, false);
        assert!(matches!(
            decide_rotation(
                Some(&corrected),
                &handled(&recorded),
                ManagementPolicy::Manage,
                Duration::ZERO,
                None,
                at("2026-11-26T10:00:00Z"),
            ),
            RotationStep::Begin { .. }
        ));
    }

    #[test]
    fn durations_are_written_as_the_spec_would() {
        assert_eq!(duration_text(WEEK), "168h");
        assert_eq!(duration_text(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
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
        assert!(message.contains("cooldown of 168h"), "{message}");
        assert!(message.contains(ANNOTATION_ROTATE_FORCE), "{message}");
        assert!(!message.contains("\"true\""), "{message}");
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
