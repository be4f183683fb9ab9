//! `kubectl keyrotor status NAME`: one policy in detail, laid out as
//! `cmctl status certificate` lays out a Certificate: the spec in short, every
//! condition, the rotate request and how far the operator got with it, the
//! account as last read, the rotation plan (maintenance window, planned
//! rotation and why), and the policy's recent events.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};

use super::{
    connect::Connection,
    error::{PluginError, describe},
    report::{RotateResult, outcome_name},
    selection::Selection,
    status::moment,
    wait::judge,
};
use crate::crd::{
    ANNOTATION_ROTATE_FORCE, ANNOTATION_ROTATE_REQUESTED_AT, AccessKeyPolicy,
    AccessKeyPolicyStatus, ConditionType, DeletionPolicy, ManagementPolicy, PlannedRotationReason,
    RotationWindow, RotationWindowReason,
};

/// How many of the newest events the view lists.
pub const MAX_EVENTS: usize = 10;

/// The policy's events as far as they could be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Events {
    /// The events regarding the policy, oldest first.
    Listed(Vec<Event>),
    /// Listing them failed (e.g. no `list` on events); the rest of the view still shows.
    Unavailable(String),
}

/// Reads the policy and its events.
pub async fn detail(
    connection: &Connection,
    name: &str,
) -> Result<(AccessKeyPolicy, Events), PluginError> {
    let selection = Selection::new(Some(name), None, false, &connection.namespace);
    let policy = selection
        .fetch(&connection.client)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| PluginError::NotFound {
            namespace: connection.namespace.clone(),
            name: name.to_owned(),
        })?;
    let events = events(connection, &policy).await;
    Ok((policy, events))
}

/// The `events.k8s.io/v1` Events whose `regarding` is this very object (by
/// UID, so events of an earlier policy of the same name are left out).
async fn events(connection: &Connection, policy: &AccessKeyPolicy) -> Events {
    let Some(uid) = policy.metadata.uid.as_deref() else {
        return Events::Listed(Vec::new());
    };
    let api: Api<Event> = Api::namespaced(connection.client.clone(), &connection.namespace);
    let params = ListParams::default().fields(&format!("regarding.uid={uid}"));
    match api.list(&params).await {
        Ok(list) => {
            let mut events = list.items;
            events.sort_by_key(last_seen);
            Events::Listed(events)
        }
        Err(err) => Events::Unavailable(describe(&err)),
    }
}

/// When an event (or the last of its series) happened.
fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The detail view as text, times relative to `now`.
pub fn render(policy: &AccessKeyPolicy, events: &Events, now: Timestamp) -> String {
    let mut out = Text::default();
    let meta = &policy.metadata;
    let spec = &policy.spec;
    let status = policy.status.clone().unwrap_or_default();
    out.line(0, "Name", meta.name.as_deref().unwrap_or_default());
    out.line(
        0,
        "Namespace",
        meta.namespace.as_deref().unwrap_or_default(),
    );
    if let Some(created) = &meta.creation_timestamp {
        out.line(0, "Created at", &moment(created.0, now));
    }

    out.heading("Spec");
    out.line(1, "Account", &spec.account_id);
    out.line(
        1,
        "Key rotation interval",
        &format!("{}d", spec.key_rotation_interval_days),
    );
    out.line(
        1,
        "Management policy",
        match spec.management_policy {
            ManagementPolicy::Manage => "Manage",
            ManagementPolicy::Observe => "Observe (reads the account, never writes)",
        },
    );
    out.line(1, "Suspended", if spec.suspend { "yes" } else { "no" });
    out.line(
        1,
        "Credentials",
        &format!("Secret {}", spec.credentials_ref.name),
    );
    out.line(
        1,
        "Drift check interval",
        spec.drift_check_interval.as_str(),
    );
    out.line(1, "Rotation cooldown", spec.rotation_cooldown.as_str());
    out.line(
        1,
        "Deletion policy",
        match spec.deletion_policy {
            DeletionPolicy::Orphan => "Orphan",
            DeletionPolicy::Restore => "Restore",
        },
    );
    out.line(
        1,
        "Rotation window",
        &spec
            .rotation_window
            .as_deref()
            .map_or_else(|| "<none>".to_owned(), window_text),
    );

    out.heading("Conditions");
    match (status.observed_generation, meta.generation) {
        (Some(observed), Some(current)) if observed < current => out.line(
            1,
            "Observed generation",
            &format!(
                "{observed} (the spec is at generation {current}: the operator has not caught up)"
            ),
        ),
        (Some(observed), _) => out.line(1, "Observed generation", &observed.to_string()),
        (None, _) => {}
    }
    if status.conditions.is_empty() {
        out.text(
            1,
            "No conditions yet: the operator has not reconciled this policy.",
        );
    }
    // Every condition the status carries, in its order: the view does not
    // need to know their names.
    for condition in &status.conditions {
        let mut line = format!(
            "{}: {}, Reason: {}",
            condition.type_, condition.status, condition.reason
        );
        if !condition.message.is_empty() {
            line.push_str(&format!(", Message: {}", condition.message));
        }
        out.text(1, &line);
        out.text(
            2,
            &format!(
                "Last transition: {}",
                moment(condition.last_transition_time.0, now)
            ),
        );
    }

    out.heading("Rotate request");
    let annotations = meta.annotations.clone().unwrap_or_default();
    match annotations.get(ANNOTATION_ROTATE_REQUESTED_AT) {
        None => out.line(1, "Requested", "<none>"),
        Some(request) => {
            let forced = annotations.get(ANNOTATION_ROTATE_FORCE) == Some(request);
            out.line(
                1,
                "Requested",
                &format!("{request}{}", if forced { " (forced)" } else { "" }),
            );
            let state = match judge(policy, request) {
                Some(RotateResult::Handled { outcome, detail }) => {
                    format!("handled: {}: {detail}", outcome_name(outcome))
                }
                Some(
                    RotateResult::Error { detail }
                    | RotateResult::Abandoned { detail }
                    | RotateResult::TimedOut { detail },
                ) => detail,
                Some(RotateResult::Requested { .. }) | None => match &status.pending_rotation {
                    Some(pending) if &pending.request == request => {
                        "in progress: the operator has started this rotation and has not recorded its outcome yet".to_owned()
                    }
                    _ => "pending: the operator has not handled it yet".to_owned(),
                },
            };
            out.line(1, "State", &state);
        }
    }
    if let Some(pending) = &status.pending_rotation
        && annotations.get(ANNOTATION_ROTATE_REQUESTED_AT) != Some(&pending.request)
    {
        out.line(1, "In flight", &pending.request);
    }
    out.line(
        1,
        "Last handled",
        status
            .last_handled_rotate_request
            .as_deref()
            .unwrap_or("<none>"),
    );
    out.line(
        1,
        "Last outcome",
        status.last_rotate_outcome.map_or("<none>", outcome_name),
    );

    out.heading("Account");
    match status.account_key_rotation_interval_days {
        None => out.line(1, "Key rotation interval", "<not read yet>"),
        Some(days) if days == i64::from(spec.key_rotation_interval_days) => {
            out.line(
                1,
                "Key rotation interval",
                &format!("{days}d (as the spec)"),
            );
        }
        Some(days) => out.line(
            1,
            "Key rotation interval",
            &format!(
                "{days}d (the spec wants {}d)",
                spec.key_rotation_interval_days
            ),
        ),
    }
    let at = |t: Option<Timestamp>| t.map_or_else(|| "<none>".to_owned(), |t| moment(t, now));
    out.line(1, "Last rotation", &at(status.last_key_rotation_at));
    out.line(1, "Next rotation", &at(status.next_key_rotation_at));
    if let Some(days) = status.days_until_next_rotation {
        out.line(1, "Days until next rotation", &days.to_string());
    }
    if let Some(days) = status.original_key_rotation_interval_days {
        out.line(1, "Interval before adoption", &format!("{days}d"));
    }

    rotation_plan(&mut out, spec.rotation_window.as_deref(), &status, now);

    out.heading("Events");
    match events {
        Events::Unavailable(reason) => out.text(1, &format!("<cannot list events: {reason}>")),
        Events::Listed(events) if events.is_empty() => out.text(1, "<none>"),
        Events::Listed(events) => {
            let skip = events.len().saturating_sub(MAX_EVENTS);
            let mut rows = vec![[
                "Type".to_owned(),
                "Reason".to_owned(),
                "Age".to_owned(),
                "From".to_owned(),
                "Message".to_owned(),
            ]];
            for event in &events[skip..] {
                let age = last_seen(event).map_or_else(
                    || "<unknown>".to_owned(),
                    |t| super::status::short_age(now.duration_since(t).as_secs().max(0)),
                );
                let age = match event.series.as_ref().map(|s| s.count) {
                    Some(count) if count > 1 => format!("{age} (x{count})"),
                    _ => age,
                };
                rows.push([
                    event.type_.clone().unwrap_or_default(),
                    event.reason.clone().unwrap_or_default(),
                    age,
                    event.reporting_controller.clone().unwrap_or_default(),
                    event.note.clone().unwrap_or_default(),
                ]);
            }
            for line in columns(&rows) {
                out.text(1, &line);
            }
        }
    }
    out.0
}

/// `0 3 * * TUE for 2h (Europe/Berlin)`.
fn window_text(window: &RotationWindow) -> String {
    format!(
        "{} for {} ({})",
        window.schedule,
        window.duration.as_str(),
        window.time_zone
    )
}

/// When the key rotates next and why: in a maintenance window, or on the
/// account's own schedule (no window set, or none fits, as the
/// `RotationWindow` condition says), and how the last window rotation ended.
fn rotation_plan(
    out: &mut Text,
    window: Option<&RotationWindow>,
    status: &AccessKeyPolicyStatus,
    now: Timestamp,
) {
    out.heading("Rotation plan");
    let at = |t: Timestamp| moment(t, now);
    if window.is_some() {
        out.line(
            1,
            "Next window start",
            &status
                .next_window_start
                .map_or_else(|| "<none>".to_owned(), at),
        );
    }
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::RotationWindow.as_str());
    let planned = match &status.planned_rotation {
        None => "<not planned yet>".to_owned(),
        Some(planned) => {
            let why = match (planned.reason, planned.window_start) {
                (PlannedRotationReason::Window, Some(start)) => format!(
                    "by the operator, in the maintenance window starting {}",
                    at(start)
                ),
                (PlannedRotationReason::Window, None) => {
                    "by the operator, in a maintenance window".to_owned()
                }
                (PlannedRotationReason::CloudflareSchedule, _) if window.is_none() => {
                    "by Cloudflare, on the account's own schedule (no rotation window set)"
                        .to_owned()
                }
                (PlannedRotationReason::CloudflareSchedule, _) => format!(
                    "by Cloudflare, on the account's own schedule: {} (see Window)",
                    match condition.map(|c| c.reason.as_str()) {
                        Some(reason) if reason == RotationWindowReason::InvalidWindow.as_str() =>
                            "the rotation window is invalid",
                        _ => "no window fits before it",
                    }
                ),
            };
            format!("{}, {why}", at(planned.at))
        }
    };
    out.line(1, "Planned rotation", &planned);
    if let Some(last) = &status.last_window_rotation {
        out.line(
            1,
            "Last window rotation",
            &format!(
                "{} (window starting {})",
                outcome_name(last.outcome),
                at(last.window_start)
            ),
        );
    }
    if let Some(condition) = condition {
        out.line(
            1,
            "Window",
            &format!(
                "{}, Reason: {}, Message: {}",
                condition.status, condition.reason, condition.message
            ),
        );
    }
}

/// Rows padded into columns two spaces apart (kubectl describe's event table).
fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// The view being written: `Key: value` lines indented two spaces a level.
#[derive(Default)]
struct Text(String);

impl Text {
    fn heading(&mut self, name: &str) {
        self.0.push_str(name);
        self.0.push_str(":\n");
    }

    fn line(&mut self, level: usize, key: &str, value: &str) {
        self.text(level, &format!("{key}: {value}"));
    }

    fn text(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
        self.0.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn policy(annotations: Value, status: Value) -> AccessKeyPolicy {
        serde_json::from_value(json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {
                "name": "production", "namespace": "security", "generation": 2,
                "uid": "u-1", "creationTimestamp": "2026-11-01T00:00:00Z",
                "annotations": annotations,
            },
            "spec": {
                "accountId": "023e105f4ecef8ad9ca31a8372d0c353",
                "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "cloudflare-api"},
            },
            "status": status,
        }))
        .expect("fixture")
    }

    fn event(reason: &str, note: &str, time: &str, count: Option<i32>) -> Event {
        let mut event: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("production.{reason}"), "namespace": "security"},
            "eventTime": time,
            "type": "Normal",
            "reason": reason,
            "note": note,
            "reportingController": "keyrotor.dev/operator",
            "reportingInstance": "keyrotor-0",
            "action": "Reconcile",
        }))
        .expect("event");
        if let Some(count) = count {
            event.series = serde_json::from_value(
                json!({"count": count, "lastObservedTime": "2026-11-26T09:59:00.000000Z"}),
            )
            .expect("series");
        }
        event
    }

    const NOW: &str = "2026-11-26T10:00:00Z";

    #[test]
    fn a_handled_request_and_every_condition_show() {
        let p = policy(
            json!({ANNOTATION_ROTATE_REQUESTED_AT: "r1"}),
            json!({
                "observedGeneration": 2,
                "accountKeyRotationIntervalDays": 30,
                "lastKeyRotationAt": "2026-11-14T09:12:44Z",
                "nextKeyRotationAt": "2026-12-14T09:12:44Z",
                "daysUntilNextRotation": 17,
                "lastHandledRotateRequest": "r1",
                "lastRotateOutcome": "Rotated",
                "plannedRotation": {"at": "2026-12-14T09:12:44Z", "reason": "CloudflareSchedule"},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Reconciled",
                     "message": "", "lastTransitionTime": "2026-11-14T09:12:45Z"},
                    {"type": "SomethingNew", "status": "False", "reason": "Whatever",
                     "message": "a message", "lastTransitionTime": "2026-11-26T09:00:00Z"},
                ],
            }),
        );
        let events = Events::Listed(vec![
            event(
                "Rotated",
                "key rotated",
                "2026-11-14T09:12:45.000000Z",
                None,
            ),
            event(
                "DriftCorrected",
                "interval 42d -> 30d",
                "2026-11-20T00:00:00.000000Z",
                Some(3),
            ),
        ]);
        let view = render(&p, &events, at(NOW));
        let expected = "\
Name: production
Namespace: security
Created at: 2026-11-01T00:00:00Z (25d ago)
Spec:
  Account: 023e105f4ecef8ad9ca31a8372d0c353
  Key rotation interval: 30d
  Management policy: Manage
  Suspended: no
  Credentials: Secret cloudflare-api
  Drift check interval: 10m
  Rotation cooldown: 168h
  Deletion policy: Orphan
  Rotation window: <none>
Conditions:
  Observed generation: 2
  Ready: True, Reason: Reconciled
    Last transition: 2026-11-14T09:12:45Z (12d ago)
  SomethingNew: False, Reason: Whatever, Message: a message
    Last transition: 2026-11-26T09:00:00Z (60m ago)
Rotate request:
  Requested: r1
  State: handled: Rotated: key rotated at 2026-11-14T09:12:44Z; next automatic rotation at 2026-12-14T09:12:44Z
  Last handled: r1
  Last outcome: Rotated
Account:
  Key rotation interval: 30d (as the spec)
  Last rotation: 2026-11-14T09:12:44Z (12d ago)
  Next rotation: 2026-12-14T09:12:44Z (in 17d)
  Days until next rotation: 17
Rotation plan:
  Planned rotation: 2026-12-14T09:12:44Z (in 17d), by Cloudflare, on the account's own schedule (no rotation window set)
Events:
  Type    Reason          Age       From                   Message
  Normal  Rotated         12d       keyrotor.dev/operator  key rotated
  Normal  DriftCorrected  60s (x3)  keyrotor.dev/operator  interval 42d -> 30d
";
        assert_eq!(view, expected);
    }

    #[test]
    fn a_pending_forced_request_drift_and_a_stale_generation_show() {
        let p = policy(
            json!({ANNOTATION_ROTATE_REQUESTED_AT: "r2", ANNOTATION_ROTATE_FORCE: "r2"}),
            json!({
                "observedGeneration": 1,
                "accountKeyRotationIntervalDays": 42,
                "lastHandledRotateRequest": "r1",
                "lastRotateOutcome": "RefusedCooldown",
            }),
        );
        let view = render(&p, &Events::Unavailable("forbidden".into()), at(NOW));
        for wanted in [
            "  Observed generation: 1 (the spec is at generation 2: the operator has not caught up)\n",
            "  No conditions yet",
            "  Requested: r2 (forced)\n  State: pending: the operator has not handled it yet\n",
            "  Last handled: r1\n  Last outcome: RefusedCooldown\n",
            "  Key rotation interval: 42d (the spec wants 30d)\n",
            "  Last rotation: <none>\n",
            "Events:\n  <cannot list events: forbidden>\n",
        ] {
            assert!(view.contains(wanted), "{wanted:?} missing in:\n{view}");
        }
        // In flight: the operator started it.
        let p = policy(
            json!({ANNOTATION_ROTATE_REQUESTED_AT: "r2"}),
            json!({"pendingRotation": {"request": "r2"}}),
        );
        let view = render(&p, &Events::Listed(vec![]), at(NOW));
        assert!(view.contains("State: in progress"), "{view}");
        assert!(view.contains("Events:\n  <none>\n"), "{view}");
        assert!(
            view.contains("Key rotation interval: <not read yet>"),
            "{view}"
        );
    }

    fn windowed(status: Value) -> AccessKeyPolicy {
        let mut p = policy(json!({}), status);
        p.spec.rotation_window = Some(
            serde_json::from_value(
                json!({"schedule": "0 3 * * TUE", "duration": "2h", "timeZone": "Europe/Berlin"}),
            )
            .expect("window"),
        );
        p
    }

    #[test]
    fn a_window_shows_its_next_start_the_planned_rotation_and_the_last_window_rotation() {
        let p = windowed(json!({
            "nextWindowStart": "2026-12-01T02:00:00Z",
            "plannedRotation": {
                "at": "2026-12-08T02:00:00Z", "reason": "Window",
                "windowStart": "2026-12-08T02:00:00Z",
            },
            "lastWindowRotation": {"windowStart": "2026-11-10T02:00:00Z", "outcome": "Rotated"},
            "conditions": [
                {"type": "RotationWindow", "status": "True", "reason": "Planned",
                 "message": "the key rotates at 2026-12-08T02:00:00Z, in the window starting 2026-12-08T02:00:00Z",
                 "lastTransitionTime": "2026-11-10T02:00:00Z"},
            ],
        }));
        let view = render(&p, &Events::Listed(vec![]), at(NOW));
        for wanted in [
            "  Deletion policy: Orphan\n  Rotation window: 0 3 * * TUE for 2h (Europe/Berlin)\nConditions:\n",
            "\nRotation plan:\n  Next window start: 2026-12-01T02:00:00Z (in 4d)\n",
            "  Planned rotation: 2026-12-08T02:00:00Z (in 11d), by the operator, in the maintenance window starting 2026-12-08T02:00:00Z (in 11d)\n",
            "  Last window rotation: Rotated (window starting 2026-11-10T02:00:00Z (16d ago))\n",
            "  Window: True, Reason: Planned, Message: the key rotates at 2026-12-08T02:00:00Z, in the window starting 2026-12-08T02:00:00Z\nEvents:\n",
        ] {
            assert!(view.contains(wanted), "{wanted:?} missing in:\n{view}");
        }
    }

    #[test]
    fn a_window_that_does_not_fit_says_cloudflare_rotates_and_why() {
        let message = "the last window before the account's own rotation, starting 2026-11-24T02:00:00Z, passed without a rotation";
        let p = windowed(json!({
            "nextWindowStart": "2026-12-01T02:00:00Z",
            "plannedRotation": {"at": "2026-11-27T09:00:00Z", "reason": "CloudflareSchedule"},
            "lastWindowRotation": {"windowStart": "2026-10-27T02:00:00Z", "outcome": "RefusedObserveOnly"},
            "conditions": [
                {"type": "RotationWindow", "status": "False", "reason": "NoWindowFits",
                 "message": message, "lastTransitionTime": "2026-11-24T04:00:00Z"},
            ],
        }));
        let view = render(&p, &Events::Listed(vec![]), at(NOW));
        for wanted in [
            "  Planned rotation: 2026-11-27T09:00:00Z (in 23h), by Cloudflare, on the account's own schedule: no window fits before it (see Window)\n".to_owned(),
            "  Last window rotation: RefusedObserveOnly (window starting 2026-10-27T02:00:00Z (30d ago))\n".to_owned(),
            format!("  Window: False, Reason: NoWindowFits, Message: {message}\n"),
        ] {
            assert!(view.contains(&wanted), "{wanted:?} missing in:\n{view}");
        }
        // An invalid window: no next start, and the plan says why.
        let p = windowed(json!({
            "plannedRotation": {"at": "2026-11-27T09:00:00Z", "reason": "CloudflareSchedule"},
            "conditions": [
                {"type": "RotationWindow", "status": "False", "reason": "InvalidWindow",
                 "message": "unknown time zone", "lastTransitionTime": "2026-11-24T04:00:00Z"},
            ],
        }));
        let view = render(&p, &Events::Listed(vec![]), at(NOW));
        for wanted in [
            "Rotation plan:\n  Next window start: <none>\n",
            "on the account's own schedule: the rotation window is invalid (see Window)\n",
            "  Window: False, Reason: InvalidWindow, Message: unknown time zone\n",
        ] {
            assert!(view.contains(wanted), "{wanted:?} missing in:\n{view}");
        }
        assert!(!view.contains("Last window rotation"), "{view}");
    }

    #[test]
    fn without_a_status_the_plan_is_not_known_yet() {
        let view = render(
            &policy(json!({}), json!(null)),
            &Events::Listed(vec![]),
            at(NOW),
        );
        assert!(
            view.contains("Rotation plan:\n  Planned rotation: <not planned yet>\nEvents:"),
            "{view}"
        );
    }

    #[test]
    fn only_the_newest_events_are_listed() {
        let p = policy(json!({}), json!({}));
        let events: Vec<Event> = (0..15)
            .map(|i| {
                event(
                    &format!("R{i:02}"),
                    "n",
                    &format!("2026-11-26T09:{i:02}:00.000000Z"),
                    None,
                )
            })
            .collect();
        let view = render(&p, &Events::Listed(events), at(NOW));
        assert!(view.contains("Requested: <none>"), "{view}");
        assert!(!view.contains("R04"), "{view}");
        assert!(view.contains("R05") && view.contains("R14"), "{view}");
    }
}
