//! `kubectl keyrotor status`: the selected policies as a kubectl-style table,
//! or one policy by name in detail (`describe.rs`).

use jiff::Timestamp;

use super::{
    args::StatusArgs, connect::Connection, describe, error::PluginError, report::outcome_name,
    selection::Selection,
};
use crate::crd::{AccessKeyPolicy, ConditionType, PlannedRotationReason, RotateOutcome};

/// What `status` prints: a table, one policy in detail, or a note that nothing matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutput {
    /// The table, one line per policy after the header.
    Table(String),
    /// The detail view of one policy (`status NAME`).
    Detail(String),
    /// Nothing matched (not an error, as with `kubectl get`).
    Empty(String),
}

/// Reads the selected policies and renders them.
pub async fn status(
    connection: &Connection,
    args: &StatusArgs,
) -> Result<StatusOutput, PluginError> {
    if let Some(name) = &args.name {
        let (policy, events) = describe::detail(connection, name).await?;
        return Ok(StatusOutput::Detail(describe::render(
            &policy,
            &events,
            Timestamp::now(),
        )));
    }
    let selection = Selection::new(
        args.name.as_deref(),
        args.selector.as_deref(),
        args.all_namespaces,
        &connection.namespace,
    );
    let policies = selection.fetch(&connection.client).await?;
    if policies.is_empty() {
        return Ok(StatusOutput::Empty(format!(
            "No AccessKeyPolicy found {}.",
            selection.describe()
        )));
    }
    let rows: Vec<StatusRow> = policies.iter().map(StatusRow::of).collect();
    Ok(StatusOutput::Table(render(
        &rows,
        selection.spans_namespaces(),
        Timestamp::now(),
    )))
}

/// One policy's line, before formatting.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.accountId`.
    pub account: String,
    /// `spec.keyRotationIntervalDays`.
    pub interval_days: i32,
    /// The interval as read from the account.
    pub account_interval_days: Option<i64>,
    /// When the key was last rotated.
    pub last_rotation: Option<Timestamp>,
    /// When the account rotates on its own.
    pub next_rotation: Option<Timestamp>,
    /// When the key is planned to rotate, and why then (`status.plannedRotation`).
    pub planned: Option<(Timestamp, PlannedRotationReason)>,
    /// The Ready condition's status and reason.
    pub ready: Option<(String, String)>,
    /// How the last rotate request ended.
    pub last_outcome: Option<RotateOutcome>,
}

impl StatusRow {
    /// The row of a policy.
    pub fn of(policy: &AccessKeyPolicy) -> Self {
        let status = policy.status.as_ref();
        Self {
            namespace: policy.metadata.namespace.clone().unwrap_or_default(),
            name: policy.metadata.name.clone().unwrap_or_default(),
            account: policy.spec.account_id.clone(),
            interval_days: policy.spec.key_rotation_interval_days,
            account_interval_days: status.and_then(|s| s.account_key_rotation_interval_days),
            last_rotation: status.and_then(|s| s.last_key_rotation_at),
            next_rotation: status.and_then(|s| s.next_key_rotation_at),
            planned: status
                .and_then(|s| s.planned_rotation.as_ref())
                .map(|p| (p.at, p.reason)),
            ready: status
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == ConditionType::Ready.as_str())
                })
                .map(|c| (c.status.clone(), c.reason.clone())),
            last_outcome: status.and_then(|s| s.last_rotate_outcome),
        }
    }
}

const NONE: &str = "<none>";

/// The table as kubectl prints one: upper-case headers, columns padded to
/// their widest cell and three spaces apart. Times show the instant and how
/// far it is from `now`.
pub fn render(rows: &[StatusRow], with_namespace: bool, now: Timestamp) -> String {
    let mut header = vec![
        "NAME",
        "ACCOUNT",
        "INTERVAL",
        "LAST ROTATION",
        "NEXT ROTATION",
        "PLANNED",
        "READY",
        "LAST OUTCOME",
    ];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let mut lines: Vec<Vec<String>> = vec![header.into_iter().map(str::to_owned).collect()];
    for row in rows {
        let mut cells = vec![
            row.name.clone(),
            row.account.clone(),
            interval(row),
            row.last_rotation
                .map_or_else(|| NONE.to_owned(), |at| moment(at, now)),
            row.next_rotation
                .map_or_else(|| NONE.to_owned(), |at| moment(at, now)),
            row.planned.map_or_else(
                || NONE.to_owned(),
                |(at, reason)| format!("{} {}", moment(at, now), planned_by(reason)),
            ),
            row.ready.as_ref().map_or_else(
                || "Unknown".to_owned(),
                |(status, reason)| format!("{status} ({reason})"),
            ),
            row.last_outcome
                .map_or_else(|| NONE.to_owned(), |o| outcome_name(o).to_owned()),
        ];
        if with_namespace {
            cells.insert(0, row.namespace.clone());
        }
        lines.push(cells);
    }
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .map(|cells| cells[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for cells in &lines {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}   "));
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Who rotates the key at the planned time, in a word: the operator in a
/// maintenance window, or Cloudflare on the account's own schedule.
pub(super) fn planned_by(reason: PlannedRotationReason) -> &'static str {
    match reason {
        PlannedRotationReason::Window => "window",
        PlannedRotationReason::CloudflareSchedule => "cloudflare",
    }
}

/// The wanted interval, and the account's when it differs (drift).
fn interval(row: &StatusRow) -> String {
    match row.account_interval_days {
        Some(days) if days != i64::from(row.interval_days) => {
            format!("{}d (account {days}d)", row.interval_days)
        }
        _ => format!("{}d", row.interval_days),
    }
}

/// `2026-11-14T09:12:44Z (12d ago)` or `... (in 18d)`.
pub(super) fn moment(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(at).as_secs();
    if seconds >= 0 {
        format!("{at:.0} ({} ago)", short_age(seconds))
    } else {
        format!("{at:.0} (in {})", short_age(seconds.saturating_neg()))
    }
}

/// An age the way kubectl's AGE column writes it: `45s`, `10m`, `5h`, `12d`, `2y`.
pub(super) fn short_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s if s < 730 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn policy(namespace: &str, name: &str, account: &str, status: Value) -> AccessKeyPolicy {
        serde_json::from_value(json!({
            "apiVersion": "keyrotor.dev/v1alpha1",
            "kind": "AccessKeyPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "accountId": account,
                "keyRotationIntervalDays": 30,
                "credentialsRef": {"name": "cloudflare-api"},
            },
            "status": status,
        }))
        .expect("fixture")
    }

    fn fixtures() -> Vec<StatusRow> {
        let ready = policy(
            "security",
            "production",
            "023e105f4ecef8ad9ca31a8372d0c353",
            json!({
                "accountKeyRotationIntervalDays": 30,
                "lastKeyRotationAt": "2026-11-14T09:12:44.5Z",
                "nextKeyRotationAt": "2026-12-14T09:12:44.5Z",
                "lastRotateOutcome": "Rotated",
                "plannedRotation": {
                    "at": "2026-12-08T02:00:00Z", "reason": "Window",
                    "windowStart": "2026-12-08T02:00:00Z",
                },
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Reconciled",
                    "message": "", "lastTransitionTime": "2026-11-14T09:12:45Z",
                }],
            }),
        );
        let drifted = policy(
            "payments",
            "edge",
            "fedcba9876543210fedcba9876543210",
            json!({
                "accountKeyRotationIntervalDays": 42,
                "plannedRotation": {"at": "2026-12-20T00:00:00Z", "reason": "CloudflareSchedule"},
                "conditions": [{
                    "type": "Ready", "status": "False", "reason": "SecretNotFound",
                    "message": "Secret cloudflare-api not found",
                    "lastTransitionTime": "2026-11-14T09:12:45Z",
                }],
            }),
        );
        let fresh = policy(
            "payments",
            "new",
            "0123456789abcdef0123456789abcdef",
            json!(null),
        );
        [ready, drifted, fresh].iter().map(StatusRow::of).collect()
    }

    #[test]
    fn one_namespace_renders_without_a_namespace_column() {
        let table = render(&fixtures(), false, at("2026-11-26T10:00:00Z"));
        let expected = "\
NAME         ACCOUNT                            INTERVAL            LAST ROTATION                    NEXT ROTATION                   PLANNED                                    READY                    LAST OUTCOME
production   023e105f4ecef8ad9ca31a8372d0c353   30d                 2026-11-14T09:12:44Z (12d ago)   2026-12-14T09:12:44Z (in 17d)   2026-12-08T02:00:00Z (in 11d) window       True (Reconciled)        Rotated
edge         fedcba9876543210fedcba9876543210   30d (account 42d)   <none>                           <none>                          2026-12-20T00:00:00Z (in 23d) cloudflare   False (SecretNotFound)   <none>
new          0123456789abcdef0123456789abcdef   30d                 <none>                           <none>                          <none>                                     Unknown                  <none>
";
        assert_eq!(table, expected);
    }

    #[test]
    fn all_namespaces_adds_the_namespace_column_first() {
        let table = render(&fixtures(), true, at("2026-11-26T10:00:00Z"));
        let mut lines = table.lines();
        let header = lines.next().expect("header");
        assert!(header.starts_with("NAMESPACE   NAME "), "{header}");
        assert!(
            header.ends_with("READY                    LAST OUTCOME"),
            "{header}"
        );
        assert!(
            lines
                .next()
                .expect("row")
                .starts_with("security    production   ")
        );
        assert_eq!(table.lines().count(), 4);
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(short_age(45), "45s");
        assert_eq!(short_age(600), "10m");
        assert_eq!(short_age(5 * 3600), "5h");
        assert_eq!(short_age(12 * 86_400 + 5), "12d");
        assert_eq!(short_age(3 * 365 * 86_400), "3y");
        let now = at("2026-11-26T10:00:00Z");
        assert_eq!(
            moment(at("2026-11-26T10:00:30Z"), now),
            "2026-11-26T10:00:30Z (in 30s)"
        );
    }
}
