//! `keyrotor_workqueue_depth`: policies waiting for a pass. kube-runtime's
//! controller keeps its scheduler to itself (no depth, no hook), so the
//! operator counts what it hands it: a policy is waiting from the moment
//! something asks for a pass (a change the watch lets through, a changed
//! Secret, this replica becoming the leader, a pass put off on a budget or
//! on the namespace's share of the workers) until a worker starts on it.
//! Scheduled drift checks are not counted while they wait for their time:
//! that is a timer, not a backlog.

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard, PoisonError},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};

/// The policies (namespace, name) waiting for a worker. A set: the
/// controller runs a policy once however many times it was asked.
#[derive(Debug, Default)]
pub(super) struct WorkQueue {
    waiting: Mutex<BTreeSet<(Box<str>, Box<str>)>>,
}

impl WorkQueue {
    fn waiting(&self) -> MutexGuard<'_, BTreeSet<(Box<str>, Box<str>)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn queued(&self, namespace: &str, name: &str) {
        self.waiting().insert((namespace.into(), name.into()));
    }

    pub(super) fn started(&self, namespace: &str, name: &str) {
        self.waiting().remove(&(namespace.into(), name.into()));
    }

    pub(super) fn clear(&self) {
        self.waiting().clear();
    }

    pub(super) fn depth(&self) -> usize {
        self.waiting().len()
    }
}

impl Collector for WorkQueue {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let depth = i64::try_from(self.depth()).unwrap_or(i64::MAX);
        let family = encoder.encode_descriptor(
            "workqueue_depth",
            "Policies waiting for a worker (changed, put off, or all of them when this replica became the leader)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(depth).encode(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_asked_for_twice_waits_once_until_a_worker_starts_on_it() {
        let queue = WorkQueue::default();
        queue.queued("ns", "a");
        queue.queued("ns", "a");
        queue.queued("ns", "b");
        assert_eq!(queue.depth(), 2);
        queue.started("ns", "a");
        assert_eq!(queue.depth(), 1);
        queue.clear();
        assert_eq!(queue.depth(), 0);
    }
}
