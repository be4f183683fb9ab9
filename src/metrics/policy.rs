//! The per-policy series, exported by the leader only: a standby (or a
//! replica that lost the lease) exports none, so two replicas never report
//! two verdicts on one policy and a replica that stopped leading leaves no
//! stale gauges behind for alerts to fire on.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};

/// One condition of a policy's status, as the state-set metric labels it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    /// The condition type (`Ready`, ...).
    pub type_: Box<str>,
    /// `True`, `False` or `Unknown`.
    pub status: Box<str>,
    /// The condition's reason (a fixed vocabulary: never free text).
    pub reason: Box<str>,
}

/// What one reconcile left behind, for the per-policy series.
#[derive(Debug, Clone, Default)]
pub struct PolicySnapshot {
    /// The status conditions (Ready always; Unknown before the first pass writes it).
    pub conditions: Vec<ConditionState>,
    /// The account's interval, if known.
    pub interval_days: Option<i64>,
    /// Last rotation, Unix seconds.
    pub last_rotation: Option<i64>,
    /// Next rotation, Unix seconds.
    pub next_rotation: Option<i64>,
    /// The planned rotation (`status.plannedRotation`): Unix seconds and why
    /// then (`Window` or `CloudflareSchedule`, a fixed vocabulary).
    pub planned_rotation: Option<(i64, &'static str)>,
}

/// The last snapshot of each policy, by namespace and name.
type Snapshots = BTreeMap<(Box<str>, Box<str>), PolicySnapshot>;

/// The per-policy series, one entry per policy, encoded at scrape time: one
/// gauge family per series would hold a labelled copy of every policy's name each.
#[derive(Debug, Default)]
pub(super) struct PolicyGauges {
    snapshots: Mutex<Snapshots>,
    leading: AtomicBool,
}

/// Name, help and value of each per-policy gauge.
type PolicyGauge = (
    &'static str,
    &'static str,
    fn(&PolicySnapshot) -> Option<i64>,
);

const POLICY_GAUGES: [PolicyGauge; 3] = [
    (
        "policy_interval_days",
        "The account's key rotation interval in days.",
        |s| s.interval_days,
    ),
    (
        "policy_last_rotation_timestamp_seconds",
        "When the account's key was last rotated (Unix seconds).",
        |s| s.last_rotation,
    ),
    (
        "policy_next_rotation_timestamp_seconds",
        "When the account's key rotates next (Unix seconds).",
        |s| s.next_rotation,
    ),
];

impl PolicyGauges {
    fn snapshots(&self) -> MutexGuard<'_, Snapshots> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set(&self, namespace: &str, name: &str, snapshot: PolicySnapshot) {
        self.snapshots()
            .insert((namespace.into(), name.into()), snapshot);
    }

    pub(super) fn forget(&self, namespace: &str, name: &str) {
        self.snapshots().remove(&(namespace.into(), name.into()));
    }

    /// Leading or not; a replica that stops leading forgets every snapshot
    /// (the next leader's passes are the truth from then on).
    pub(super) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
        if !leading {
            self.snapshots().clear();
        }
    }
}

impl Collector for PolicyGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let leading = self.leading.load(Ordering::Acquire);
        let snapshots = self.snapshots();
        // The families are described on every replica; only the leader has samples.
        let policies = snapshots.iter().filter(|_| leading);
        let mut family = encoder.encode_descriptor(
            "policy_condition",
            "1 for each status condition of each policy, its type, status (True, False, Unknown) and reason in labels",
            None,
            MetricType::Gauge,
        )?;
        for ((namespace, policy), snapshot) in policies.clone() {
            for condition in &snapshot.conditions {
                let labels = [
                    ("namespace", &**namespace),
                    ("name", &**policy),
                    ("type", &*condition.type_),
                    ("status", &*condition.status),
                    ("reason", &*condition.reason),
                ];
                ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "policy_planned_rotation_timestamp_seconds",
            "When the key is planned to rotate (Unix seconds), and why then in the reason label: Window (the operator rotates in a maintenance window) or CloudflareSchedule (the account rotates on its own).",
            None,
            MetricType::Gauge,
        )?;
        for ((namespace, policy), snapshot) in policies.clone() {
            if let Some((at, reason)) = snapshot.planned_rotation {
                let labels = [
                    ("namespace", &**namespace),
                    ("name", &**policy),
                    ("reason", reason),
                ];
                ConstGauge::new(at).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in POLICY_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((namespace, policy), snapshot) in policies.clone() {
                if let Some(v) = value(snapshot) {
                    let labels = [("namespace", &**namespace), ("name", &**policy)];
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
