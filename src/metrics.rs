//! Prometheus metrics (`keyrotor_` prefix, `_total` counters, `_seconds` times).
//! Labels never carry a credential: only operations, status codes, reasons and
//! policy coordinates.

mod gzip;
mod policy;
mod process;
mod work_queue;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use policy::PolicyGauges;
pub use policy::{ConditionState, PolicySnapshot};
use process::ProcessCollector;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use work_queue::WorkQueue;

use crate::cloudflare::{Operation, RequestObserver};

/// Why the metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A collector failed to encode its samples.
    #[error("encoding the metrics text failed")]
    Encode(#[source] std::fmt::Error),
    /// The gzip compressor failed.
    #[error("compressing the metrics text failed: {0}")]
    Compress(#[source] std::io::Error),
}

/// Labels of reconcile counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `success` or `error`.
    pub result: String,
    /// The Ready reason (or the Kubernetes error reason).
    pub reason: String,
}

/// Labels of Cloudflare requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `update` or `rotate`.
    pub operation: String,
    /// HTTP status, or `error` when no answer came.
    pub status: String,
}

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `get`, `update` or `rotate`.
    pub operation: String,
}

/// Labels of rotation counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabels {
    /// Rotated, RefusedCooldown, RefusedObserveOnly or Failed.
    pub outcome: String,
}

/// Labels of the build information.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The operator's version (the workspace's, as `keyrotor --version` prints it).
    pub version: String,
}

/// All of keyrotor's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<OperationLabels, Histogram>,
    rotations: Family<RotationLabels, Counter>,
    policies: Arc<PolicyGauges>,
    work_queue: Arc<WorkQueue>,
    leader: Gauge,
    budget_waits: Counter,
    budget_wait_seconds: Counter<f64, AtomicU64>,
    late_checks: Counter,
    budget_deferrals: Counter,
    fair_share_deferrals: Counter,
    /// Length of the last rendered text, to size the next one.
    last_render: AtomicUsize,
    /// The last gzipped text's size, for the same reason.
    last_gzip: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut root = Registry::default();
        // The standard process metrics keep their standard names (no prefix).
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("keyrotor");
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the operator's version in a label",
            build_info,
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result and reason",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "cloudflare_requests",
            "Cloudflare API requests by operation and HTTP status",
            requests.clone(),
        );
        let request_duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        registry.register(
            "cloudflare_request_duration_seconds",
            "Time of one Cloudflare API request",
            request_duration.clone(),
        );
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register("rotations", "Rotate requests by outcome", rotations.clone());
        let policies = Arc::new(PolicyGauges::default());
        registry.register_collector(Box::new(policies.clone()));
        let work_queue = Arc::new(WorkQueue::default());
        registry.register_collector(Box::new(work_queue.clone()));
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        let budget_waits = Counter::default();
        registry.register(
            "budget_waits",
            "Cloudflare calls that waited for the per-credential budget",
            budget_waits.clone(),
        );
        let budget_wait_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "budget_wait_seconds",
            "Time spent waiting for the per-credential budget",
            budget_wait_seconds.clone(),
        );
        let late_checks = Counter::default();
        registry.register(
            "drift_checks_late",
            "Drift checks that found the credential's request budget too busy to check within the policy's interval",
            late_checks.clone(),
        );
        let budget_deferrals = Counter::default();
        registry.register(
            "budget_deferrals",
            "Reconciles put off because their credential's budget was reserved too far ahead",
            budget_deferrals.clone(),
        );
        let fair_share_deferrals = Counter::default();
        registry.register(
            "fair_share_deferrals",
            "Reconciles put off because their namespace held its share of the workers",
            fair_share_deferrals.clone(),
        );
        Self {
            registry: root,
            reconciles,
            reconcile_duration,
            requests,
            request_duration,
            rotations,
            policies,
            work_queue,
            leader,
            budget_waits,
            budget_wait_seconds,
            late_checks,
            budget_deferrals,
            fair_share_deferrals,
            last_render: AtomicUsize::new(0),
            last_gzip: AtomicUsize::new(0),
        }
    }

    /// Counts a drift check that will run later than its interval asks.
    pub fn late_check(&self) {
        self.late_checks.inc();
    }

    /// Counts a reconcile put off for its credential's budget.
    pub fn budget_deferral(&self) {
        self.budget_deferrals.inc();
    }

    /// Counts a reconcile put off for its namespace's share of the workers.
    pub fn fair_share_deferral(&self) {
        self.fair_share_deferrals.inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        // Sized after the last text (about 1 KB per policy): grown by doubling
        // instead, the text of 10,000 policies was copied at every step and
        // its last two sizes were alive at once, megabytes on the peak RSS.
        let last = self.last_render.load(Ordering::Relaxed);
        let mut text = String::with_capacity(last + last / 16);
        encode(&mut text, &self.registry)?;
        self.last_render.store(text.len(), Ordering::Relaxed);
        Ok(text)
    }

    /// The text exposition format, gzipped while it is encoded (see
    /// [`gzip`]): the uncompressed text is never whole in memory.
    pub fn render_gzip(&self) -> Result<Vec<u8>, RenderError> {
        let last = self.last_gzip.load(Ordering::Relaxed);
        let mut out = gzip::GzipText::new(last + last / 16);
        let encoded = encode(&mut out, &self.registry);
        // The compressor's own error says more than the encoder's `fmt::Error`.
        let compressed = out.finish().map_err(RenderError::Compress)?;
        encoded.map_err(RenderError::Encode)?;
        self.last_gzip.store(compressed.len(), Ordering::Relaxed);
        Ok(compressed)
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, ok: bool, reason: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: if ok { "success" } else { "error" }.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts one handled rotate request. `_trigger` is no longer a label (the
    /// annotation is the only trigger); the parameter goes when its caller,
    /// the reconciler, stops passing it.
    pub fn rotation(&self, _trigger: &str, outcome: &str) {
        self.rotations
            .get_or_create(&RotationLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the per-policy gauges.
    pub fn policy(&self, namespace: &str, name: &str, snapshot: PolicySnapshot) {
        self.policies.set(namespace, name, snapshot);
    }

    /// Drops a deleted policy's series (and its place in the queue).
    pub fn forget_policy(&self, namespace: &str, name: &str) {
        self.policies.forget(namespace, name);
        self.work_queue.started(namespace, name);
    }

    /// Records whether this replica leads. Only the leader exports
    /// per-policy series; a replica that stops leading drops them and its queue.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        self.policies.set_leading(leader);
        if !leader {
            self.work_queue.clear();
        }
    }

    /// A pass of this policy was asked for (see `keyrotor_workqueue_depth`).
    pub fn queued(&self, namespace: &str, name: &str) {
        self.work_queue.queued(namespace, name);
    }

    /// A worker started on this policy.
    pub fn started(&self, namespace: &str, name: &str) {
        self.work_queue.started(namespace, name);
    }
}

impl RequestObserver for Metrics {
    fn request(&self, operation: Operation, status: Option<u16>, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.as_str().to_owned(),
                status: status.map_or_else(|| "error".to_owned(), |s| s.to_string()),
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabels {
                operation: operation.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    fn budget_wait(&self, waited: Duration) {
        if !waited.is_zero() {
            self.budget_waits.inc();
            self.budget_wait_seconds.inc_by(waited.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(status: &str, reason: &str) -> PolicySnapshot {
        PolicySnapshot {
            conditions: vec![ConditionState {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.into(),
            }],
            interval_days: Some(30),
            last_rotation: Some(1),
            next_rotation: Some(2),
            planned_rotation: Some((3, "Window")),
        }
    }

    #[test]
    fn renders_names_that_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        metrics.reconciled(true, "Reconciled", Duration::from_millis(20));
        metrics.request(Operation::Get, Some(200), Duration::from_millis(50));
        metrics.request(Operation::Rotate, None, Duration::from_millis(50));
        metrics.rotation("annotation", "Rotated");
        metrics.budget_wait(Duration::from_millis(1500));
        metrics.policy("ns", "p", snapshot("True", "Reconciled"));
        metrics.queued("ns", "q");
        let text = metrics.render().expect("renders");
        let build = format!(
            r#"keyrotor_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        for line in [
            r#"keyrotor_reconciles_total{result="success",reason="Reconciled"} 1"#,
            r#"keyrotor_cloudflare_requests_total{operation="get",status="200"} 1"#,
            r#"keyrotor_cloudflare_requests_total{operation="rotate",status="error"} 1"#,
            r#"keyrotor_rotations_total{outcome="Rotated"} 1"#,
            r#"keyrotor_policy_condition{namespace="ns",name="p",type="Ready",status="True",reason="Reconciled"} 1"#,
            r#"keyrotor_policy_interval_days{namespace="ns",name="p"} 30"#,
            r#"keyrotor_policy_next_rotation_timestamp_seconds{namespace="ns",name="p"} 2"#,
            r#"keyrotor_policy_planned_rotation_timestamp_seconds{namespace="ns",name="p",reason="Window"} 3"#,
            "keyrotor_leader 1",
            "keyrotor_workqueue_depth 1",
            "keyrotor_budget_waits_total 1",
            "keyrotor_budget_deferrals_total 0",
            "keyrotor_budget_wait_seconds_total 1.5",
            "keyrotor_reconcile_duration_seconds_count 1",
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn a_policy_without_a_planned_rotation_has_no_planned_sample() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        let mut unplanned = snapshot("True", "Reconciled");
        unplanned.planned_rotation = None;
        metrics.policy("ns", "unplanned", unplanned);
        let mut own = snapshot("True", "Reconciled");
        own.planned_rotation = Some((1_796_000_000, "CloudflareSchedule"));
        metrics.policy("ns", "own", own);
        let text = metrics.render().expect("renders");
        let planned: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("keyrotor_policy_planned_rotation_timestamp_seconds{"))
            .collect();
        assert_eq!(
            planned,
            [
                r#"keyrotor_policy_planned_rotation_timestamp_seconds{namespace="ns",name="own",reason="CloudflareSchedule"} 1796000000"#
            ],
            "{text}"
        );
        assert!(
            text.contains("# TYPE keyrotor_policy_planned_rotation_timestamp_seconds gauge"),
            "{text}"
        );
    }

    #[test]
    fn a_forgotten_policy_leaves_no_series() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        metrics.policy("ns", "gone", snapshot("True", "Reconciled"));
        metrics.queued("ns", "gone");
        metrics.forget_policy("ns", "gone");
        let text = metrics.render().expect("renders");
        assert!(!text.contains("name=\"gone\""), "{text}");
        assert!(text.contains("keyrotor_workqueue_depth 0"), "{text}");
    }

    #[test]
    fn a_replica_that_does_not_lead_exports_no_per_policy_series() {
        let metrics = Metrics::new();
        metrics.policy("ns", "early", snapshot("False", "SecretNotFound"));
        let standby = metrics.render().expect("renders");
        assert!(!standby.contains("name=\"early\""), "{standby}");
        metrics.set_leader(true);
        metrics.policy("ns", "p", snapshot("False", "SecretNotFound"));
        metrics.queued("ns", "q");
        let leading = metrics.render().expect("renders");
        assert!(leading.contains("name=\"p\""), "{leading}");
        // Lost the lease: nothing stale is left for an alert to fire on.
        metrics.set_leader(false);
        let after = metrics.render().expect("renders");
        assert!(!after.contains("name=\"p\""), "{after}");
        assert!(after.contains("keyrotor_workqueue_depth 0"), "{after}");
        assert!(after.contains("keyrotor_leader 0"), "{after}");
        // The families are still described, so a dashboard's queries stay valid.
        assert!(
            after.contains("# TYPE keyrotor_policy_condition gauge"),
            "{after}"
        );
    }
}
