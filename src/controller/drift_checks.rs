//! When each policy's next drift check is due: kept here, not in kube's
//! scheduler.
//!
//! A pass that leaves a policy at rest asks for its next check after its
//! drift check interval. kube's scheduler would keep each such request for
//! that long as the policy's reference twice (its delay queue and its index),
//! about 770 bytes a policy: 7.7 MB at 10,000 policies, the largest part of
//! the operator's memory after its cache (docs/benchmarks.md). Here a waiting
//! check is one shared `namespace/name` string and a timer slot. When it is
//! due, the policy's reference goes to its controller
//! (`Controller::reconcile_on`), whose scheduler holds it only until a worker
//! takes it. Short waits (a pass put off, an error's backoff) stay with kube.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::time::{DelayQueue, delay_queue};

use crate::crd::AccessKeyPolicy;

/// What a pass asks of the timers.
#[derive(Debug)]
enum Request {
    /// Check the policy at this time (replacing any earlier request).
    At(Arc<str>, Instant),
    /// No check is due any more (the policy waits for a change, or is gone).
    Cancel(Arc<str>),
}

/// The handle passes use: routes each request to the timers of the
/// controller that watches the policy's namespace.
#[derive(Debug, Default)]
pub struct DriftChecks {
    /// Per watched scope: its namespace (`None`: all) and its timers.
    scopes: Vec<(Option<String>, mpsc::UnboundedSender<Request>)>,
}

impl DriftChecks {
    /// Timers for one more watched scope; the stream yields its due checks.
    pub fn add_scope(&mut self, scope: Option<String>) -> DueChecks {
        let (tx, rx) = mpsc::unbounded_channel();
        self.scopes.push((scope, tx));
        DueChecks {
            requests: rx,
            closed: false,
            queue: DelayQueue::new(),
            waiting: HashMap::new(),
        }
    }

    /// The policy's next check is due after `after`.
    pub fn check_after(&self, namespace: &str, name: &str, after: Duration) {
        let at = Instant::now() + after.min(LONGEST_WAIT);
        self.send(namespace, Request::At(key(namespace, name), at));
    }

    /// The policy has no check due.
    pub fn cancel(&self, namespace: &str, name: &str) {
        self.send(namespace, Request::Cancel(key(namespace, name)));
    }

    fn send(&self, namespace: &str, request: Request) {
        let scope = self
            .scopes
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace));
        if let Some((_, tx)) = scope {
            // Closed only once the controller stopped: nothing is due then.
            let _ = tx.send(request);
        }
    }
}

/// The longest wait for a check, as kube's scheduler has it: tokio's
/// `DelayQueue` panics on a deadline beyond about two years, and a drift
/// check interval may be longer than that.
const LONGEST_WAIT: Duration = Duration::from_secs(180 * 24 * 3600);

fn key(namespace: &str, name: &str) -> Arc<str> {
    format!("{namespace}/{name}").into()
}

/// One scope's waiting checks, as a stream of the policies whose check is due.
pub struct DueChecks {
    requests: mpsc::UnboundedReceiver<Request>,
    closed: bool,
    queue: DelayQueue<Arc<str>>,
    /// Each waiting policy's slot in `queue` (the key shares its string).
    waiting: HashMap<Arc<str>, delay_queue::Key>,
}

impl DueChecks {
    fn take(&mut self, request: Request) {
        match request {
            Request::At(policy, at) => match self.waiting.get(&policy) {
                Some(slot) => self.queue.reset_at(slot, at),
                None => {
                    let slot = self.queue.insert_at(policy.clone(), at);
                    self.waiting.insert(policy, slot);
                }
            },
            Request::Cancel(policy) => {
                if let Some(slot) = self.waiting.remove(&policy) {
                    self.queue.remove(&slot);
                }
            }
        }
    }

    /// How many checks wait.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

impl Stream for DueChecks {
    type Item = ObjectRef<AccessKeyPolicy>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.closed {
            match this.requests.poll_recv(cx) {
                Poll::Ready(Some(request)) => this.take(request),
                Poll::Ready(None) => this.closed = true,
                Poll::Pending => break,
            }
        }
        match this.queue.poll_expired(cx) {
            Poll::Ready(Some(due)) => {
                let policy = due.into_inner();
                this.waiting.remove(&policy);
                let (namespace, name) = policy.split_once('/').unwrap_or(("", &policy));
                Poll::Ready(Some(ObjectRef::new(name).within(namespace)))
            }
            // Nothing waits: a new request wakes the task (`poll_recv` above).
            Poll::Ready(None) if this.closed => Poll::Ready(None),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;

    fn due(checks: &mut DueChecks) -> Option<String> {
        checks
            .next()
            .now_or_never()
            .flatten()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_is_due_after_its_wait_and_a_new_request_replaces_the_old() {
        let mut handle = DriftChecks::default();
        let mut checks = handle.add_scope(None);
        handle.check_after("team", "a", Duration::from_secs(10));
        handle.check_after("team", "b", Duration::from_secs(20));
        assert_eq!(due(&mut checks), None);
        assert_eq!(checks.len(), 2);
        // a's pass ran early (its spec changed) and asked again.
        handle.check_after("team", "a", Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(21)).await;
        assert_eq!(due(&mut checks).as_deref(), Some("team/b"));
        assert_eq!(due(&mut checks), None, "a was moved to 30 s");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(due(&mut checks).as_deref(), Some("team/a"));
        assert_eq!(checks.len(), 0, "nothing is kept once due");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_check_never_comes() {
        let mut handle = DriftChecks::default();
        let mut checks = handle.add_scope(None);
        handle.check_after("team", "a", Duration::from_secs(1));
        handle.cancel("team", "a");
        handle.cancel("team", "never-asked");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(due(&mut checks), None);
        assert_eq!(checks.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_scope_gets_the_checks_of_its_namespace() {
        let mut handle = DriftChecks::default();
        let mut a = handle.add_scope(Some("a".to_owned()));
        let mut b = handle.add_scope(Some("b".to_owned()));
        handle.check_after("b", "p", Duration::from_secs(1));
        handle.check_after("a", "p", Duration::from_secs(1));
        handle.check_after("elsewhere", "p", Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(due(&mut a).as_deref(), Some("a/p"));
        assert_eq!(due(&mut a), None);
        assert_eq!(due(&mut b).as_deref(), Some("b/p"));
        assert_eq!(due(&mut b), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_timers_hold_is_cut_to_half_a_year() {
        let mut handle = DriftChecks::default();
        let mut checks = handle.add_scope(None);
        handle.check_after("team", "a", Duration::MAX);
        handle.check_after("team", "b", Duration::from_secs(10 * 365 * 24 * 3600));
        assert_eq!(due(&mut checks), None);
        tokio::time::advance(LONGEST_WAIT).await;
        let mut both = [due(&mut checks), due(&mut checks)];
        both.sort();
        assert_eq!(both, [Some("team/a".to_owned()), Some("team/b".to_owned())]);
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_handle_is_gone_and_nothing_waits() {
        let mut handle = DriftChecks::default();
        let mut checks = handle.add_scope(None);
        drop(handle);
        assert!(checks.next().await.is_none());
    }
}
