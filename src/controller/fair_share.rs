//! Fair share of the workers between namespaces: one controller serves every
//! namespace (the default install), so without a share one tenant's slow
//! passes could take every worker while another tenant's policies wait.
//!
//! The rule ([`cap`]): a namespace may hold at most half of the workers while
//! another namespace has work (one of its passes started or was turned away
//! within [`RECENT`]); otherwise all but one, so a namespace that arrives
//! finds a worker free at once; and all of them when the cluster has policies
//! in one namespace only, so a single-tenant cluster loses no throughput.
//! A pass over its namespace's share is not started: it is requeued after
//! [`TURNED_AWAY_RETRY`], and counts as that namespace having work.
//!
//! Not a crate: the controller runtime (kube-runtime's `Controller`) has one
//! queue and one concurrency limit, with no notion of a share per key group,
//! so the share is checked when a pass starts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How long a namespace counts as having work after it last wanted a worker.
pub const RECENT: Duration = Duration::from_secs(10);

/// When a pass turned away by the share comes back.
pub const TURNED_AWAY_RETRY: Duration = Duration::from_millis(500);

/// How many of `workers` one namespace may hold: half while `others_waiting`
/// (another namespace wanted a worker recently), all but one while
/// `other_namespaces` have policies, else all. Never less than one.
pub fn cap(workers: usize, others_waiting: bool, other_namespaces: bool) -> usize {
    let cap = if others_waiting {
        workers / 2
    } else if other_namespaces {
        workers.saturating_sub(1)
    } else {
        workers
    };
    cap.max(1)
}

/// Passes in flight per namespace, and when each namespace last wanted a worker.
#[derive(Debug)]
pub struct FairShare {
    workers: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: HashMap<String, usize>,
    /// Last time a pass of the namespace started or was turned away.
    wanted: HashMap<String, Instant>,
}

/// A worker held by a namespace's pass; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    share: Arc<FairShare>,
    namespace: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.share.lock();
        if let Some(n) = state.in_flight.get_mut(&self.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.in_flight.remove(&self.namespace);
            }
        }
    }
}

impl FairShare {
    /// A share of `workers` (the controller's concurrency).
    pub fn new(workers: u16) -> Self {
        Self {
            workers: usize::from(workers).max(1),
            state: Mutex::default(),
        }
    }

    /// A worker for a pass of `namespace` at `now`, or `None` when the
    /// namespace holds its share already. `other_namespaces`: the cluster
    /// has policies outside `namespace`.
    pub fn enter(
        self: &Arc<Self>,
        namespace: &str,
        other_namespaces: bool,
        now: Instant,
    ) -> Option<Slot> {
        let mut state = self.lock();
        state
            .wanted
            .retain(|_, at| now.saturating_duration_since(*at) < RECENT);
        let others_waiting = state.wanted.keys().any(|n| n != namespace);
        state.wanted.insert(namespace.to_owned(), now);
        let held = state.in_flight.get(namespace).copied().unwrap_or(0);
        if held >= cap(self.workers, others_waiting, other_namespaces) {
            return None;
        }
        *state.in_flight.entry(namespace.to_owned()).or_default() += 1;
        Some(Slot {
            share: self.clone(),
            namespace: namespace.to_owned(),
        })
    }

    /// Passes of `namespace` in flight.
    pub fn held(&self, namespace: &str) -> usize {
        self.lock().in_flight.get(namespace).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // One counter change or lookup per call: consistent even after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_half_while_others_wait_all_but_one_beside_them_and_all_alone() {
        // (workers, others waiting, other namespaces) -> cap
        let table = [
            ((4, true, true), 2),
            ((4, false, true), 3),
            ((4, false, false), 4),
            ((64, true, true), 32),
            ((1, true, true), 1),
            ((1, false, true), 1),
            ((2, false, true), 1),
            ((3, true, true), 1),
        ];
        for ((workers, waiting, others), want) in table {
            assert_eq!(
                cap(workers, waiting, others),
                want,
                "{workers} workers, waiting {waiting}, others {others}"
            );
        }
    }

    #[test]
    fn a_busy_namespace_leaves_a_worker_free_and_yields_half_once_another_comes() {
        let share = Arc::new(FairShare::new(4));
        let t0 = Instant::now();
        // Alone in a cluster with other tenants: three of four.
        let a: Vec<_> = (0..3)
            .map(|_| share.enter("a", true, t0).expect("within the share"))
            .collect();
        assert!(
            share.enter("a", true, t0).is_none(),
            "the fourth is kept free"
        );
        // `b` arrives and gets the free worker.
        let b = share.enter("b", true, t0).expect("b gets a worker");
        // While `b` has work, `a` is held to two: ending one pass does not let another in.
        let mut a = a;
        drop(a.pop());
        assert_eq!(share.held("a"), 2);
        assert!(
            share
                .enter("a", true, t0 + Duration::from_secs(1))
                .is_none()
        );
        drop(b);
        // Once `b` has wanted nothing for RECENT, `a` may take three again.
        let later = t0 + RECENT + Duration::from_secs(1);
        assert!(share.enter("a", true, later).is_some());
        assert_eq!(share.held("a"), 2, "the slot was given back when dropped");
    }

    #[test]
    fn a_single_namespace_cluster_uses_every_worker() {
        let share = Arc::new(FairShare::new(4));
        let now = Instant::now();
        let slots: Vec<_> = (0..4)
            .map(|_| share.enter("only", false, now).expect("all four"))
            .collect();
        assert!(share.enter("only", false, now).is_none());
        drop(slots);
        assert_eq!(share.held("only"), 0);
    }

    #[test]
    fn a_namespace_over_half_starts_nothing_while_another_waits() {
        let share = Arc::new(FairShare::new(4));
        let now = Instant::now();
        let _b: Vec<_> = (0..3)
            .map(|_| share.enter("b", true, now).expect("b"))
            .collect();
        // `a` wants a worker (and gets the fourth): from now on `b`, at
        // three, may start nothing until it is down to one.
        let _a = share.enter("a", true, now).expect("a");
        assert!(share.enter("b", true, now).is_none());
        // `a`, turned away or not, keeps `b` at two while it wants workers.
        let _a2 = share.enter("a", true, now).expect("a is at one of two");
        assert!(share.enter("a", true, now).is_none(), "a at its half");
        assert!(share.enter("b", true, now).is_none());
    }
}
