//! Maintenance windows (pure): reading `spec.rotationWindow`, and planning
//! the next rotation into the last window that starts before the account
//! would rotate on its own.
//!
//! The rule (docs/concepts.md, "Maintenance windows"):
//!
//! - The account rotates on its own at `last + interval`, or as early as a
//!   day before: Cloudflare rotates when `days_until_next_rotation` reaches
//!   zero, which a whole-day count does up to a day early. That earlier
//!   instant is the **deadline**.
//! - The operator rotates in the last window that starts before the deadline,
//!   at the window's start or, when the cooldown after the last rotation ends
//!   later, at the cooldown's end, provided that is still inside the window
//!   and before the deadline.
//! - When that window cannot hold the rotation, no earlier one can either (it
//!   ends earlier still), so no window fits; and once that window has passed
//!   (the operator was down), none is left. Then the account rotates on its
//!   own and the operator does not rotate outside a window.

use std::{str::FromStr, time::Duration};

use jiff::{
    SignedDuration, Timestamp,
    civil::{Date, Time},
    tz::TimeZone,
};
use jiff_cron::TimeUnitSpec as _;

use crate::crd::RotationWindow;

/// How much earlier than `last + interval` the account may rotate on its own.
pub const AUTOMATIC_ROTATION_MARGIN: SignedDuration = SignedDuration::from_hours(24);

/// The prefix of a window rotation's request value (`window/<start>`).
pub const WINDOW_REQUEST_PREFIX: &str = "window/";

/// Why a `rotationWindow` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The zone is not in the time zone database.
    #[error(
        "rotationWindow.timeZone {zone:?} is not a known IANA time zone (for example Europe/Berlin, America/New_York, UTC)"
    )]
    UnknownZone {
        /// The zone as written.
        zone: String,
    },
    /// The schedule is not a five-field cron expression the operator can read.
    #[error("rotationWindow.schedule {schedule:?} cannot be read: {reason}")]
    Schedule {
        /// The schedule as written.
        schedule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The schedule has no start in the foreseeable future.
    #[error("rotationWindow.schedule {schedule:?} never occurs (no window starts after {now})")]
    NeverOccurs {
        /// The schedule as written.
        schedule: String,
        /// When that was found.
        now: Timestamp,
    },
}

/// A readable `rotationWindow`.
#[derive(Debug, Clone)]
pub struct WindowSchedule {
    /// The cron crate parses the expression; the walk over days is ours (see [`Self::starts_on`]).
    schedule: jiff_cron::Schedule,
    /// The starts' times of day, earliest first.
    times: Vec<(i8, i8)>,
    length: SignedDuration,
    zone: TimeZone,
    source: String,
}

/// How far the walk looks for a start: five years holds every day a
/// five-field schedule can name, 29 February included.
const SEARCH_DAYS: i32 = 5 * 366;

impl WindowSchedule {
    /// Reads a window: its zone, its schedule and its length.
    pub fn parse(window: &RotationWindow) -> Result<Self, WindowError> {
        let zone = TimeZone::get(&window.time_zone).map_err(|_| WindowError::UnknownZone {
            zone: window.time_zone.clone(),
        })?;
        let schedule_error = |reason: String| WindowError::Schedule {
            schedule: window.schedule.clone(),
            reason,
        };
        let expression = seconds_field_form(&window.schedule).map_err(schedule_error)?;
        let schedule = jiff_cron::Schedule::from_str(&expression)
            .map_err(|err| schedule_error(err.to_string()))?;
        let length = SignedDuration::try_from(window.duration.as_duration())
            .ok()
            .filter(|d| d.is_positive())
            .ok_or_else(|| schedule_error("the duration must be positive".to_owned()))?;
        let times = schedule
            .hours()
            .iter()
            .flat_map(|h| schedule.minutes().iter().map(move |m| (h, m)))
            .filter_map(|(h, m)| Some((i8::try_from(h).ok()?, i8::try_from(m).ok()?)))
            .collect();
        Ok(Self {
            schedule,
            times,
            length,
            zone,
            source: window.schedule.clone(),
        })
    }

    /// How long each window lasts.
    pub fn length(&self) -> SignedDuration {
        self.length
    }

    /// Whether windows start on this (local) day.
    fn starts_on(&self, day: Date) -> bool {
        let ordinal = |n: i8| u32::try_from(n).unwrap_or(0);
        self.schedule.months().includes(ordinal(day.month()))
            && self.schedule.days_of_month().includes(ordinal(day.day()))
            && self
                .schedule
                .days_of_week()
                .includes(ordinal(day.weekday().to_sunday_one_offset()))
    }

    /// The instant a start on `day` at `time` is: a time the clocks skip
    /// moves past the gap, a time they repeat is its first occurrence
    /// (jiff's `compatible` rule, as RFC 5545 calendars do).
    fn instant(&self, day: Date, (hour, minute): (i8, i8)) -> Option<Timestamp> {
        let civil = day.to_datetime(Time::new(hour, minute, 0, 0).ok()?);
        self.zone.to_ambiguous_timestamp(civil).compatible().ok()
    }

    /// The starts on the local days from `first`, `step` days at a time.
    ///
    /// Written here rather than taken from the cron crate's iterators:
    /// those skip starts on days whose clocks change (after 00:00 on
    /// 2029-03-25 in Europe/Berlin the next start they give is in May, and
    /// walking back they miss that 00:00), and a window must be found
    /// whatever the calendar does. Days are walked instead, each day's starts
    /// turned into instants by [`Self::instant`].
    fn starts_from(&self, first: Date, step: i32) -> impl Iterator<Item = Timestamp> + '_ {
        (0..SEARCH_DAYS)
            .filter_map(move |n| first.checked_add(jiff::Span::new().days(n * step)).ok())
            .filter(|day| self.starts_on(*day))
            .flat_map(move |day| {
                let times: Box<dyn Iterator<Item = &(i8, i8)>> = if step > 0 {
                    Box::new(self.times.iter())
                } else {
                    Box::new(self.times.iter().rev())
                };
                times.filter_map(move |time| self.instant(day, *time))
            })
    }

    /// The first window start strictly after `at`.
    pub fn next_start_after(&self, at: Timestamp) -> Option<Timestamp> {
        let day = at.to_zoned(self.zone.clone()).date().yesterday().ok()?;
        self.starts_from(day, 1).find(|start| *start > at)
    }

    /// The last window start strictly before `at`.
    pub fn last_start_before(&self, at: Timestamp) -> Option<Timestamp> {
        let day = at.to_zoned(self.zone.clone()).date().tomorrow().ok()?;
        self.starts_from(day, -1).find(|start| *start < at)
    }

    /// Whether `at` lies inside a window: a start at most one length before it.
    pub fn contains(&self, at: Timestamp) -> bool {
        let Some(after) = at.checked_add(SignedDuration::from_nanos(1)).ok() else {
            return false;
        };
        self.last_start_before(after)
            .and_then(|start| start.checked_add(self.length).ok())
            .is_some_and(|end| at < end)
    }
}

/// Rewrites a five-field expression (or a macro) in the seconds-first form
/// the cron crate reads. Written here because the crate follows Quartz, not
/// Unix cron: its day of week counts 1 = Sunday (Unix: 0 or 7 = Sunday,
/// 1 = Monday) and it ANDs day of month with day of week where Unix ORs them.
/// So the day-of-week field is turned into day names, and restricting both
/// day fields is refused rather than read differently from a CronJob.
fn seconds_field_form(schedule: &str) -> Result<String, String> {
    let expanded = match schedule.trim() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
        return Err(format!(
            "expected five fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    };
    let restricted = |field: &str| field != "*" && field != "?";
    if restricted(day_of_month) && restricted(day_of_week) {
        return Err(
            "restrict either the day of month or the day of week, not both (cron reads the two as either-or, which is rarely what a window means)"
                .to_owned(),
        );
    }
    let day_of_month = if day_of_month == "?" {
        "*"
    } else {
        day_of_month
    };
    let day_of_week = if restricted(day_of_week) {
        weekday_names(day_of_week)?
    } else {
        "*".to_owned()
    };
    Ok(format!(
        "0 {minute} {hour} {day_of_month} {month} {day_of_week}"
    ))
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A Unix day-of-week field (`1-5`, `MON,WED`, `*/2`, `0`, `7`) as a list of day names.
fn weekday_names(field: &str) -> Result<String, String> {
    let day = |text: &str| -> Result<usize, String> {
        if let Ok(n) = text.parse::<usize>() {
            return (n <= 7)
                .then_some(n % 7)
                .ok_or_else(|| format!("day of week {n} is not 0 to 7"));
        }
        WEEKDAYS
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("{text:?} is not a day of week (SUN..SAT or 0..7)"))
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: usize = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{item:?}: the step must be a positive number"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (first, last) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                // A range may end on 7 (Sunday): 5-7 is Friday to Sunday.
                Some((a, b)) => (day(a)?, if b == "7" { 7 } else { day(b)? }),
                None if step > 1 => (day(range)?, 6),
                None => {
                    let d = day(range)?;
                    (d, d)
                }
            },
        };
        if first > last {
            return Err(format!("{item:?}: the range runs backwards"));
        }
        for d in (first..=last).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(WEEKDAYS
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(","))
}

/// The request value a window's rotation is recorded under.
pub fn window_request(start: Timestamp) -> String {
    format!("{WINDOW_REQUEST_PREFIX}{start}")
}

/// What the plan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The account reports no last rotation: its own schedule is unknown.
    Unknown,
    /// The rotation belongs in the window starting `window_start`, at `at`.
    InWindow {
        /// The window's start.
        window_start: Timestamp,
        /// When the rotation may happen: the window's start or the cooldown's end.
        at: Timestamp,
        /// The rotation must happen before this (and before the window's end).
        until: Timestamp,
        /// `at` has come: rotate now.
        open: bool,
    },
    /// No window fits before the deadline; the account rotates on its own.
    NoFit(NoFit),
}

/// Why no window fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoFit {
    /// No window starts between the cooldown's end and the deadline.
    NoWindow {
        /// When the cooldown after the last rotation ends.
        cooldown_ends: Timestamp,
    },
    /// The cooldown after the last rotation ends after the deadline.
    CooldownTooLong {
        /// When it ends.
        cooldown_ends: Timestamp,
    },
    /// The window that fitted has passed without a rotation (the operator was not running).
    Missed {
        /// Its start.
        window_start: Timestamp,
    },
    /// The window that fitted had its rotation already.
    Used {
        /// Its start.
        window_start: Timestamp,
    },
}

/// The plan for a policy with a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPlan {
    /// The next window's start after now.
    pub next_window_start: Option<Timestamp>,
    /// When the account would rotate on its own (`last + interval`).
    pub automatic: Option<Timestamp>,
    /// The earliest the account may rotate on its own (the deadline).
    pub deadline: Option<Timestamp>,
    /// The verdict.
    pub verdict: Verdict,
}

/// What the account tells the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSchedule {
    /// The last rotation, as the account reports it.
    pub last_rotation: Option<Timestamp>,
    /// The account's interval in days.
    pub interval_days: Option<i64>,
}

/// Plans the next rotation: the last window that starts before the deadline,
/// if it can hold a rotation at least `cooldown` after the last one and has
/// not been `used` for one already. `now` is the account's clock.
pub fn plan_window(
    window: &WindowSchedule,
    account: AccountSchedule,
    cooldown: Duration,
    used: Option<Timestamp>,
    now: Timestamp,
) -> Result<WindowPlan, WindowError> {
    let next_window_start = window.next_start_after(now);
    let automatic = match (account.last_rotation, account.interval_days) {
        (Some(last), Some(days)) if (1..=36_500).contains(&days) => {
            last.checked_add(SignedDuration::from_hours(24 * days)).ok()
        }
        _ => None,
    };
    let deadline = automatic.and_then(|at| at.checked_sub(AUTOMATIC_ROTATION_MARGIN).ok());
    let plan = |verdict| WindowPlan {
        next_window_start,
        automatic,
        deadline,
        verdict,
    };
    let (Some(last), Some(deadline)) = (account.last_rotation, deadline) else {
        if next_window_start.is_none() {
            return Err(never(window, now));
        }
        return Ok(plan(Verdict::Unknown));
    };
    let earliest = last
        .checked_add(SignedDuration::try_from(cooldown).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    if earliest >= deadline {
        return Ok(plan(Verdict::NoFit(NoFit::CooldownTooLong {
            cooldown_ends: earliest,
        })));
    }
    let no_window = Verdict::NoFit(NoFit::NoWindow {
        cooldown_ends: earliest,
    });
    let Some(window_start) = window.last_start_before(deadline) else {
        if next_window_start.is_none() {
            return Err(never(window, now));
        }
        return Ok(plan(no_window));
    };
    let end = window_start
        .checked_add(window.length())
        .unwrap_or(Timestamp::MAX);
    let at = window_start.max(earliest);
    let until = end.min(deadline);
    if at >= until {
        // The last window before the deadline ends before the cooldown does:
        // every earlier window ends earlier still.
        return Ok(plan(no_window));
    }
    if used == Some(window_start) {
        return Ok(plan(Verdict::NoFit(NoFit::Used { window_start })));
    }
    if now >= until {
        return Ok(plan(Verdict::NoFit(NoFit::Missed { window_start })));
    }
    Ok(plan(Verdict::InWindow {
        window_start,
        at,
        until,
        open: now >= at,
    }))
}

fn never(window: &WindowSchedule, now: Timestamp) -> WindowError {
    WindowError::NeverOccurs {
        schedule: window.source.clone(),
        now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GoDuration;

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn window(schedule: &str, duration: &str, zone: &str) -> Result<WindowSchedule, WindowError> {
        WindowSchedule::parse(&RotationWindow {
            schedule: schedule.to_owned(),
            duration: duration.parse::<GoDuration>().expect("duration"),
            time_zone: zone.to_owned(),
        })
    }

    fn tuesdays() -> WindowSchedule {
        window("0 3 * * TUE", "2h", "Europe/Berlin").expect("valid window")
    }

    fn account(last: &str, days: i64) -> AccountSchedule {
        AccountSchedule {
            last_rotation: Some(ts(last)),
            interval_days: Some(days),
        }
    }

    #[test]
    fn unix_day_numbers_mean_what_a_cronjob_means() {
        let cases = [
            ("0 3 * * 2", "0 0 3 * * TUE"),
            ("0 3 * * 0", "0 0 3 * * SUN"),
            ("0 3 * * 7", "0 0 3 * * SUN"),
            ("0 3 * * 1-5", "0 0 3 * * MON,TUE,WED,THU,FRI"),
            ("0 3 * * 5-7", "0 0 3 * * SUN,FRI,SAT"),
            ("0 3 * * */2", "0 0 3 * * SUN,TUE,THU,SAT"),
            ("0 3 * * 1/3", "0 0 3 * * MON,THU"),
            ("0 3 * * sat,Sun", "0 0 3 * * SUN,SAT"),
            ("30 2 1 * *", "0 30 2 1 * *"),
            ("@weekly", "0 0 0 * * SUN"),
            ("@daily", "0 0 0 * * *"),
        ];
        for (unix, seconds_first) in cases {
            assert_eq!(
                seconds_field_form(unix).as_deref(),
                Ok(seconds_first),
                "{unix}"
            );
        }
        let refused = [
            ("0 3 1 * TUE", "not both"),
            ("0 3 * *", "five fields"),
            ("0 3 * * 8", "not 0 to 7"),
            ("0 3 * * FUNDAY", "not a day of week"),
            ("0 3 * * 5-2", "backwards"),
            ("0 3 * * */0", "positive"),
        ];
        for (schedule, why) in refused {
            let err = seconds_field_form(schedule).expect_err(schedule);
            assert!(err.contains(why), "{schedule}: {err}");
        }
    }

    #[test]
    fn the_schedule_is_read_in_its_zone_across_daylight_saving() {
        let w = tuesdays();
        // Berlin is UTC+1 in winter and UTC+2 in summer (from 2027-03-28).
        assert_eq!(
            w.next_start_after(ts("2027-03-20T00:00:00Z")),
            Some(ts("2027-03-23T02:00:00Z"))
        );
        assert_eq!(
            w.next_start_after(ts("2027-03-27T00:00:00Z")),
            Some(ts("2027-03-30T01:00:00Z"))
        );
        assert_eq!(
            w.last_start_before(ts("2027-03-30T01:00:00Z")),
            Some(ts("2027-03-23T02:00:00Z")),
            "strictly before"
        );
        assert!(w.contains(ts("2027-03-30T02:59:59Z")));
        assert!(!w.contains(ts("2027-03-30T03:00:00Z")));
        assert!(!w.contains(ts("2027-03-30T00:59:59Z")));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        let err = window("0 3 * * TUE", "2h", "Europe/Berlinn").expect_err("unknown zone");
        assert!(err.to_string().contains("Europe/Berlinn"), "{err}");
        let err = window("0 3 * * TUE", "2h", "Mars/Olympus").expect_err("unknown zone");
        assert!(matches!(err, WindowError::UnknownZone { .. }), "{err}");
        let err = window("61 3 * * TUE", "2h", "UTC").expect_err("bad minute");
        assert!(err.to_string().contains("61 3 * * TUE"), "{err}");
        // February 30th never comes.
        let never = window("0 3 30 2 *", "2h", "UTC").expect("parses");
        let err = plan_window(
            &never,
            account("2027-01-01T00:00:00Z", 30),
            WEEK,
            None,
            ts("2027-01-02T00:00:00Z"),
        )
        .expect_err("never occurs");
        assert!(matches!(err, WindowError::NeverOccurs { .. }), "{err}");
        assert!(err.to_string().contains("never occurs"), "{err}");
    }

    #[test]
    fn the_last_window_before_the_deadline_is_planned() {
        // Last rotation Friday 2027-01-01; 30 days: automatic 2027-01-31,
        // deadline 2027-01-30. The last Tuesday 03:00 Berlin before: 2027-01-26.
        let plan = plan_window(
            &tuesdays(),
            account("2027-01-01T00:00:00Z", 30),
            WEEK,
            None,
            ts("2027-01-10T00:00:00Z"),
        )
        .expect("plans");
        assert_eq!(plan.automatic, Some(ts("2027-01-31T00:00:00Z")));
        assert_eq!(plan.deadline, Some(ts("2027-01-30T00:00:00Z")));
        assert_eq!(plan.next_window_start, Some(ts("2027-01-12T02:00:00Z")));
        assert_eq!(
            plan.verdict,
            Verdict::InWindow {
                window_start: ts("2027-01-26T02:00:00Z"),
                at: ts("2027-01-26T02:00:00Z"),
                until: ts("2027-01-26T04:00:00Z"),
                open: false,
            }
        );
        // Inside that window it is open; after it, missed.
        let inside = plan_window(
            &tuesdays(),
            account("2027-01-01T00:00:00Z", 30),
            WEEK,
            None,
            ts("2027-01-26T03:30:00Z"),
        )
        .expect("plans");
        assert!(matches!(
            inside.verdict,
            Verdict::InWindow { open: true, .. }
        ));
        let after = plan_window(
            &tuesdays(),
            account("2027-01-01T00:00:00Z", 30),
            WEEK,
            None,
            ts("2027-01-26T04:00:00Z"),
        )
        .expect("plans");
        assert_eq!(
            after.verdict,
            Verdict::NoFit(NoFit::Missed {
                window_start: ts("2027-01-26T02:00:00Z")
            })
        );
    }

    #[test]
    fn the_cooldown_can_move_the_rotation_inside_the_window_or_rule_it_out() {
        let weekly_long = window("0 0 * * MON", "72h", "UTC").expect("valid");
        // Deadline 2027-01-21 (21-day interval); last window start before it:
        // Monday 2027-01-18. A cooldown ending on the 19th moves the rotation there.
        let plan = plan_window(
            &weekly_long,
            account("2027-01-01T00:00:00Z", 21),
            Duration::from_secs(18 * 86_400),
            None,
            ts("2027-01-05T00:00:00Z"),
        )
        .expect("plans");
        assert_eq!(
            plan.verdict,
            Verdict::InWindow {
                window_start: ts("2027-01-18T00:00:00Z"),
                at: ts("2027-01-19T00:00:00Z"),
                until: ts("2027-01-21T00:00:00Z"),
                open: false,
            }
        );
        // A monthly window on the 1st: the last before the deadline is the
        // day of the last rotation, inside the cooldown: no window fits.
        let monthly = window("0 0 1 * *", "2h", "UTC").expect("valid");
        let plan = plan_window(
            &monthly,
            account("2027-01-01T00:30:00Z", 21),
            WEEK,
            None,
            ts("2027-01-05T00:00:00Z"),
        )
        .expect("plans");
        assert_eq!(
            plan.verdict,
            Verdict::NoFit(NoFit::NoWindow {
                cooldown_ends: ts("2027-01-08T00:30:00Z")
            })
        );
        let plan = plan_window(
            &tuesdays(),
            account("2027-01-01T00:00:00Z", 21),
            Duration::from_secs(30 * 86_400),
            None,
            ts("2027-01-05T00:00:00Z"),
        )
        .expect("plans");
        assert_eq!(
            plan.verdict,
            Verdict::NoFit(NoFit::CooldownTooLong {
                cooldown_ends: ts("2027-01-31T00:00:00Z")
            })
        );
    }

    #[test]
    fn an_unknown_last_rotation_plans_nothing() {
        let plan = plan_window(
            &tuesdays(),
            AccountSchedule {
                last_rotation: None,
                interval_days: Some(30),
            },
            WEEK,
            None,
            ts("2027-01-05T00:00:00Z"),
        )
        .expect("plans");
        assert_eq!(plan.verdict, Verdict::Unknown);
        assert_eq!(plan.next_window_start, Some(ts("2027-01-05T02:00:00Z")));
    }
}
