//! Building the status (pure): conditions that keep their transition time while
//! their status holds, and the account fields as Cloudflare reported them.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::witness::canonical;
use crate::{
    cloudflare::AccountKeyConfig,
    crd::{
        AccessKeyPolicyStatus, AccountInSyncReason, ConditionType, MAX_STATUS_MESSAGE_CHARS,
        ReadyReason,
    },
};

/// Sets one condition. `lastTransitionTime` moves only when the status flips,
/// so a steady state rebuilds a byte-identical status and nothing is written.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    is_true: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if is_true { "True" } else { "False" };
    let previous = conditions.iter().position(|c| c.type_ == kind.as_str());
    let transition = previous
        .map(|i| &conditions[i])
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let condition = Condition {
        type_: kind.as_str().to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        // The schema's limit: a longer message would make the whole status write fail.
        message: message.chars().take(MAX_STATUS_MESSAGE_CHARS).collect(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Sets `Ready`, and kstatus's `Reconciling` or `Stalled` to match (present
/// only while True, as kstatus expects of abnormal-true conditions).
pub fn set_ready(
    status: &mut AccessKeyPolicyStatus,
    reason: ReadyReason,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        &mut status.conditions,
        ConditionType::Ready,
        reason.is_ready(),
        reason.as_str(),
        message,
        generation,
        now,
    );
    let kstatus = reason.kstatus_condition();
    for kind in [ConditionType::Reconciling, ConditionType::Stalled] {
        if kstatus == Some(kind) {
            set_condition(
                &mut status.conditions,
                kind,
                true,
                reason.as_str(),
                message,
                generation,
                now,
            );
        } else {
            status.conditions.retain(|c| c.type_ != kind.as_str());
        }
    }
}

/// Sets `AccountInSync` from the wanted and the actual interval.
pub fn set_account_in_sync(
    status: &mut AccessKeyPolicyStatus,
    wanted: i64,
    actual: Option<i64>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let in_sync = actual == Some(wanted);
    let (reason, message) = if in_sync {
        (
            AccountInSyncReason::InSync,
            format!("the account rotates every {wanted} days, as the spec says"),
        )
    } else {
        (
            AccountInSyncReason::Drifted,
            format!(
                "the account's interval is {}, the spec wants {wanted} days",
                actual.map_or("unknown".to_owned(), |d| format!("{d} days"))
            ),
        )
    };
    set_condition(
        &mut status.conditions,
        ConditionType::AccountInSync,
        in_sync,
        reason.as_str(),
        &message,
        generation,
        now,
    );
}

/// Copies the account's state into the status, in canonical form: times cut
/// to whole seconds (the account may report one instant at any precision and
/// offset style; none of those differences is a change), whole days until the
/// next rotation (fractions cut; when the account leaves the field out, the
/// days from its own clock to the next rotation).
pub fn record_account(status: &mut AccessKeyPolicyStatus, account: &AccountKeyConfig) {
    status.account_key_rotation_interval_days = account.key_rotation_interval_days;
    let last = account.last_key_rotation_at.map(canonical);
    status.last_key_rotation_at = last;
    status.next_key_rotation_at = match (last, account.key_rotation_interval_days) {
        (Some(last), Some(days)) if (1..=36_500).contains(&days) => {
            last.checked_add(SignedDuration::from_hours(24 * days)).ok()
        }
        _ => None,
    };
    let reported = account
        .days_until_next_rotation
        .filter(|d| d.is_finite())
        .map(|d| d.floor().clamp(0.0, 1e6) as i64);
    let derived = || {
        let days = status
            .next_key_rotation_at?
            .duration_since(account.served_at?)
            .as_secs()
            .div_euclid(86_400);
        Some(days.clamp(0, 1_000_000))
    };
    status.days_until_next_rotation = reported.or_else(derived);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut status = AccessKeyPolicyStatus::default();
        let t1 = ts("2026-11-26T10:00:00Z");
        let t2 = ts("2026-11-26T11:00:00Z");
        let t3 = ts("2026-11-26T12:00:00Z");
        set_ready(&mut status, ReadyReason::ApiError, "boom", Some(1), t1);
        set_ready(&mut status, ReadyReason::RateLimited, "slow", Some(1), t2);
        assert_eq!(
            status.conditions.len(),
            2,
            "Ready and kstatus's Reconciling"
        );
        assert_eq!(status.conditions[1].type_, "Reconciling");
        assert_eq!(status.conditions[0].last_transition_time, Time(t1));
        assert_eq!(status.conditions[0].reason, "RateLimited");
        set_ready(&mut status, ReadyReason::Reconciled, "ok", Some(2), t3);
        assert_eq!(
            status.conditions.len(),
            1,
            "no kstatus condition once Ready"
        );
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.conditions[0].last_transition_time, Time(t3));
        assert_eq!(status.conditions[0].observed_generation, Some(2));
        let before = status.clone();
        set_ready(
            &mut status,
            ReadyReason::Reconciled,
            "ok",
            Some(2),
            ts("2026-11-27T00:00:00Z"),
        );
        assert_eq!(status, before, "a steady state rebuilds the same status");
    }

    #[test]
    fn kstatus_conditions_follow_the_ready_reason() {
        let now = ts("2026-11-26T10:00:00Z");
        for reason in ReadyReason::ALL {
            let mut status = AccessKeyPolicyStatus::default();
            set_ready(&mut status, ReadyReason::ApiError, "before", Some(1), now);
            set_ready(&mut status, reason, "m", Some(1), now);
            let kinds: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
            let expected: Vec<&str> = match reason {
                ReadyReason::SecretNotFound
                | ReadyReason::InvalidCredentials
                | ReadyReason::AccountNotFound
                | ReadyReason::Conflict
                | ReadyReason::InvalidSpec => vec!["Ready", "Stalled"],
                ReadyReason::RateLimited | ReadyReason::ApiError | ReadyReason::Reconciling => {
                    vec!["Ready", "Reconciling"]
                }
                ReadyReason::Reconciled | ReadyReason::Suspended => vec!["Ready"],
            };
            assert_eq!(kinds, expected, "{reason:?}");
            assert!(status.conditions.iter().skip(1).all(|c| c.status == "True"));
        }
    }

    #[test]
    fn account_in_sync_reports_drift_with_both_values() {
        let mut status = AccessKeyPolicyStatus::default();
        let now = ts("2026-11-26T10:00:00Z");
        set_account_in_sync(&mut status, 30, Some(42), Some(1), now);
        assert_eq!(status.conditions[0].reason, "Drifted");
        assert!(status.conditions[0].message.contains("42 days"));
        set_account_in_sync(&mut status, 30, Some(30), Some(1), now);
        assert_eq!(
            (
                status.conditions[0].status.as_str(),
                status.conditions[0].reason.as_str()
            ),
            ("True", "InSync")
        );
    }

    /// One rotation reported at every precision and offset style the contract
    /// allows builds one status: a drift check at rest writes nothing.
    #[test]
    fn every_form_of_the_same_rotation_records_the_same_status() {
        let forms = [
            ("2026-12-02T06:12:22.27713Z", Some(12.0)),
            ("2026-12-02T06:12:22Z", Some(12.4)),
            ("2026-12-02T06:12:22+00:00", Some(12.999)),
            ("2026-12-02T06:12:22.277Z", Some(12.0)),
            ("2026-12-02T07:12:22.5+01:00", Some(12.5)),
        ];
        let recorded: Vec<AccessKeyPolicyStatus> = forms
            .iter()
            .map(|(at, days)| {
                let mut status = AccessKeyPolicyStatus::default();
                record_account(
                    &mut status,
                    &AccountKeyConfig {
                        key_rotation_interval_days: Some(30),
                        days_until_next_rotation: *days,
                        last_key_rotation_at: Some(ts(at)),
                        served_at: Some(ts("2026-12-19T00:00:00Z")),
                    },
                );
                status
            })
            .collect();
        assert!(recorded.windows(2).all(|w| w[0] == w[1]), "{recorded:#?}");
        let json = serde_json::to_value(&recorded[0]).expect("serializes");
        assert_eq!(json["lastKeyRotationAt"], "2026-12-02T06:12:22Z");
        assert_eq!(json["nextKeyRotationAt"], "2027-01-01T06:12:22Z");
        assert_eq!(json["daysUntilNextRotation"], 12);
    }

    #[test]
    fn missing_days_are_counted_on_the_accounts_clock() {
        let mut status = AccessKeyPolicyStatus::default();
        let mut account = AccountKeyConfig {
            key_rotation_interval_days: Some(30),
            days_until_next_rotation: None,
            last_key_rotation_at: Some(ts("2026-12-02T06:12:22Z")),
            served_at: Some(ts("2026-12-19T08:00:00Z")),
        };
        record_account(&mut status, &account);
        assert_eq!(status.days_until_next_rotation, Some(12));
        account.served_at = Some(ts("2027-02-01T00:00:00Z"));
        record_account(&mut status, &account);
        assert_eq!(status.days_until_next_rotation, Some(0), "overdue is zero");
        account.served_at = None;
        record_account(&mut status, &account);
        assert_eq!(status.days_until_next_rotation, None, "no clock, no guess");
    }

    #[test]
    fn next_rotation_is_last_rotation_plus_the_interval() {
        let mut status = AccessKeyPolicyStatus::default();
        record_account(
            &mut status,
            &AccountKeyConfig {
                key_rotation_interval_days: Some(30),
                days_until_next_rotation: Some(12.7),
                last_key_rotation_at: Some(ts("2026-11-14T09:12:44.5Z")),
                served_at: None,
            },
        );
        assert_eq!(
            status.next_key_rotation_at,
            Some(ts("2026-12-14T09:12:44Z"))
        );
        assert_eq!(status.days_until_next_rotation, Some(12));
        assert_eq!(status.account_key_rotation_interval_days, Some(30));
        record_account(
            &mut status,
            &AccountKeyConfig {
                key_rotation_interval_days: Some(-5),
                days_until_next_rotation: Some(f64::NAN),
                last_key_rotation_at: None,
                served_at: None,
            },
        );
        assert_eq!(
            (status.next_key_rotation_at, status.days_until_next_rotation),
            (None, None)
        );
    }
}
