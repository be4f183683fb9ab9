//! What the status says about the next rotation (pure): `plannedRotation`,
//! `nextWindowStart` and the `RotationWindow` condition, planned again from
//! the account as the pass left it (after any rotation it made).

use std::time::Duration;

use jiff::Timestamp;

use super::{
    plan::window_plan,
    rotation::duration_text,
    status::set_condition,
    window::{AUTOMATIC_ROTATION_MARGIN, AccountSchedule, NoFit, Verdict, WindowPlan},
};
use crate::crd::{
    AccessKeyPolicyStatus, ConditionType, ManagementPolicy, PlannedRotation, PlannedRotationReason,
    RotationWindow, RotationWindowReason,
};

/// What the report asks of the pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowReport {
    /// Nothing.
    Quiet,
    /// Look again after this long: a planned rotation comes sooner than the next check.
    Wake(Duration),
    /// The window cannot be used: Ready is False with reason `InvalidSpec` and this message.
    Invalid(String),
}

/// Writes the plan into `status` and says what the pass must do about it.
/// `account_now` is the account's clock when it was read.
pub fn report_window(
    status: &mut AccessKeyPolicyStatus,
    window: Option<&RotationWindow>,
    cooldown: Duration,
    mode: ManagementPolicy,
    account_now: Option<Timestamp>,
    generation: Option<i64>,
    now: Timestamp,
) -> WindowReport {
    let own_schedule = status.next_key_rotation_at.map(|at| PlannedRotation {
        at,
        reason: PlannedRotationReason::CloudflareSchedule,
        window_start: None,
    });
    let account = AccountSchedule {
        last_rotation: status.last_key_rotation_at,
        interval_days: status.account_key_rotation_interval_days,
    };
    let plan = account_now
        .and_then(|account_now| window_plan(window, cooldown, account, status, account_now));
    let (Some(window), Some(plan)) = (window, plan) else {
        status.next_window_start = None;
        status.planned_rotation = own_schedule;
        status
            .conditions
            .retain(|c| c.type_ != ConditionType::RotationWindow.as_str());
        return WindowReport::Quiet;
    };
    let mut condition = |reason: RotationWindowReason, message: &str| {
        set_condition(
            &mut status.conditions,
            ConditionType::RotationWindow,
            reason == RotationWindowReason::Planned,
            reason.as_str(),
            message,
            generation,
            now,
        );
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(err) => {
            let message =
                format!("{err}; the account rotates on its own schedule until the window is fixed");
            condition(RotationWindowReason::InvalidWindow, &message);
            status.next_window_start = None;
            status.planned_rotation = own_schedule;
            return WindowReport::Invalid(message);
        }
    };
    let observe = match mode {
        ManagementPolicy::Manage => "",
        ManagementPolicy::Observe => {
            " (Observe mode: the operator would rotate then, and makes no change)"
        }
    };
    let (reason, message, planned, wake) = match plan.verdict {
        Verdict::InWindow {
            window_start, at, ..
        } => (
            RotationWindowReason::Planned,
            format!(
                "the key rotates at {at}, in the window starting {window_start}, before the account's own rotation at {}{observe}",
                describe(plan.automatic)
            ),
            Some(PlannedRotation {
                at,
                reason: PlannedRotationReason::Window,
                window_start: Some(window_start),
            }),
            account_now
                .filter(|account_now| at > *account_now)
                .and_then(|account_now| Duration::try_from(at.duration_since(account_now)).ok()),
        ),
        // Observe mode lets every window pass: the one it would have used
        // is what it reports, not a failure to fit.
        Verdict::NoFit(NoFit::Missed { window_start }) if mode == ManagementPolicy::Observe => (
            RotationWindowReason::Planned,
            format!(
                "Observe mode: the operator would have rotated in the window starting {window_start}, and made no change; the account rotates on its own at {}",
                describe(plan.automatic)
            ),
            own_schedule,
            None,
        ),
        Verdict::NoFit(why) => (
            RotationWindowReason::NoWindowFits,
            no_fit_message(window, &plan, why, cooldown) + observe,
            own_schedule,
            None,
        ),
        Verdict::Unknown => (
            RotationWindowReason::NoWindowFits,
            "the account reports no last rotation, so its own schedule and the window to rotate in are unknown".to_owned(),
            None,
            None,
        ),
    };
    condition(reason, &message);
    status.next_window_start = plan.next_window_start;
    status.planned_rotation = planned;
    wake.map_or(WindowReport::Quiet, WindowReport::Wake)
}

fn no_fit_message(
    window: &RotationWindow,
    plan: &WindowPlan,
    why: NoFit,
    cooldown: Duration,
) -> String {
    let own = format!(
        "the account rotates on its own at {} (as early as {}, when days_until_next_rotation reaches zero), and the operator does not rotate outside a window",
        describe(plan.automatic),
        describe(plan.deadline)
    );
    let margin = AUTOMATIC_ROTATION_MARGIN.as_hours();
    match why {
        NoFit::NoWindow { cooldown_ends } => format!(
            "no window of {:?} ({}, {}) is open between the end of the rotation cooldown at {cooldown_ends} and {margin}h before the account's own rotation; {own}",
            window.schedule, window.duration, window.time_zone
        ),
        NoFit::CooldownTooLong { cooldown_ends } => format!(
            "the rotation cooldown of {} after the last rotation ends at {cooldown_ends}, after the account's own rotation; {own}",
            duration_text(cooldown)
        ),
        NoFit::Missed { window_start } => format!(
            "the last window before the account's own rotation, starting {window_start}, passed without a rotation (the operator was not running, or could not reach the account); {own}"
        ),
        NoFit::Used { window_start } => format!(
            "the last window before the account's own rotation, starting {window_start}, had its rotation already; {own}"
        ),
    }
}

fn describe(at: Option<Timestamp>) -> String {
    at.map_or("an unknown time".to_owned(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GoDuration;

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn tuesdays(zone: &str) -> RotationWindow {
        RotationWindow {
            schedule: "0 3 * * TUE".into(),
            duration: "2h".parse::<GoDuration>().expect("duration"),
            time_zone: zone.into(),
        }
    }

    /// An account last rotated 2027-01-01 with a 30-day interval, as recorded.
    fn recorded() -> AccessKeyPolicyStatus {
        AccessKeyPolicyStatus {
            account_key_rotation_interval_days: Some(30),
            last_key_rotation_at: Some(ts("2027-01-01T00:00:00Z")),
            next_key_rotation_at: Some(ts("2027-01-31T00:00:00Z")),
            ..Default::default()
        }
    }

    fn report(
        status: &mut AccessKeyPolicyStatus,
        window: Option<&RotationWindow>,
        mode: ManagementPolicy,
        now: &str,
    ) -> WindowReport {
        report_window(status, window, WEEK, mode, Some(ts(now)), Some(1), ts(now))
    }

    fn window_condition(status: &AccessKeyPolicyStatus) -> Option<(&str, &str, &str)> {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "RotationWindow")
            .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
    }

    #[test]
    fn without_a_window_the_plan_is_the_accounts_own_schedule() {
        let mut status = recorded();
        let window = tuesdays("Europe/Berlin");
        report(
            &mut status,
            Some(&window),
            ManagementPolicy::Manage,
            "2027-01-10T00:00:00Z",
        );
        assert!(window_condition(&status).is_some());
        let quiet = report(
            &mut status,
            None,
            ManagementPolicy::Manage,
            "2027-01-10T00:00:00Z",
        );
        assert_eq!(quiet, WindowReport::Quiet);
        assert_eq!(
            window_condition(&status),
            None,
            "the condition goes with the window"
        );
        assert_eq!(status.next_window_start, None);
        assert_eq!(
            status.planned_rotation,
            Some(PlannedRotation {
                at: ts("2027-01-31T00:00:00Z"),
                reason: PlannedRotationReason::CloudflareSchedule,
                window_start: None,
            })
        );
    }

    #[test]
    fn a_planned_window_is_reported_and_woken_for() {
        let mut status = recorded();
        let window = tuesdays("Europe/Berlin");
        let wake = report(
            &mut status,
            Some(&window),
            ManagementPolicy::Manage,
            "2027-01-26T01:00:00Z",
        );
        assert_eq!(wake, WindowReport::Wake(Duration::from_secs(3600)));
        assert_eq!(
            status.planned_rotation,
            Some(PlannedRotation {
                at: ts("2027-01-26T02:00:00Z"),
                reason: PlannedRotationReason::Window,
                window_start: Some(ts("2027-01-26T02:00:00Z")),
            })
        );
        assert_eq!(status.next_window_start, Some(ts("2027-01-26T02:00:00Z")));
        let (state, reason, message) = window_condition(&status).expect("condition");
        assert_eq!((state, reason), ("True", "Planned"));
        assert!(message.contains("2027-01-31T00:00:00Z"), "{message}");
        assert!(!message.contains("Observe"), "{message}");
    }

    #[test]
    fn a_missed_window_is_no_fit_except_in_observe_mode() {
        let window = tuesdays("Europe/Berlin");
        let after = "2027-01-27T00:00:00Z";
        let mut manage = recorded();
        report(&mut manage, Some(&window), ManagementPolicy::Manage, after);
        let (state, reason, message) = window_condition(&manage).expect("condition");
        assert_eq!((state, reason), ("False", "NoWindowFits"));
        assert!(message.contains("passed without a rotation"), "{message}");
        assert_eq!(
            manage.planned_rotation.map(|p| p.reason),
            Some(PlannedRotationReason::CloudflareSchedule)
        );
        let mut observe = recorded();
        report(
            &mut observe,
            Some(&window),
            ManagementPolicy::Observe,
            after,
        );
        let (state, reason, message) = window_condition(&observe).expect("condition");
        assert_eq!((state, reason), ("True", "Planned"));
        assert!(message.contains("would have rotated"), "{message}");
    }

    #[test]
    fn an_unusable_window_is_invalid_and_the_accounts_schedule_stands() {
        let mut status = recorded();
        let window = tuesdays("Europe/Nowhere");
        let report = report(
            &mut status,
            Some(&window),
            ManagementPolicy::Manage,
            "2027-01-10T00:00:00Z",
        );
        let WindowReport::Invalid(message) = report else {
            panic!("expected Invalid, got {report:?}");
        };
        assert!(message.contains("Europe/Nowhere"), "{message}");
        let (state, reason, _) = window_condition(&status).expect("condition");
        assert_eq!((state, reason), ("False", "InvalidWindow"));
        assert_eq!(
            status.planned_rotation.map(|p| p.reason),
            Some(PlannedRotationReason::CloudflareSchedule)
        );
    }
}
