//! Leader election on a coordination.k8s.io Lease, the way client-go's
//! leaderelection does it: candidates poll every retry period and take a lease
//! that is free or whose holder stopped renewing for a lease duration (timed on
//! this replica's own clock, so clock skew does not matter); the holder renews
//! every retry period and steps down if it cannot renew within the renew
//! deadline. Releasing empties the holder, so a standby takes over at its next
//! poll. Writes use the object's resourceVersion: two replicas can never both
//! win the same update.
//!
//! A leader that loses the lease (another replica took it, or it could not
//! renew within the renew deadline) stops campaigning and reports it through
//! [`Leadership::lost`]; `keyrotor run` then exits with an error, as
//! controller-runtime does, so no pass that started while leading can write
//! beside the new leader; Kubernetes restarts the pod as a standby.
//!
//! Not kube-lease-manager or kubert's `lease` (issue 14): in both, a standby
//! sleeps until the lease's expiry, so a lease released on SIGTERM is taken
//! only a lease duration later instead of at the next poll (tests/operations.rs
//! checks the next poll), and both time the expiry against the holder's
//! `renewTime` on the standby's clock, where client-go (and this file) times it
//! on the standby's own clock from when it saw the record change.

use std::{sync::Arc, time::Duration};

use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, api::PostParams};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Lease settings (client-go's names and defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub lease_duration: Duration,
    /// The holder steps down when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often candidates poll and the holder renews.
    pub retry_period: Duration,
}

/// Why leader election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The first read of the lease failed (for example, no RBAC access to leases).
    #[error("cannot read lease {namespace}/{name}: {source}")]
    Start {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

/// Whether this replica leads.
pub struct Leadership {
    state: Arc<watch::Sender<bool>>,
    lost: CancellationToken,
    campaign: Option<JoinHandle<()>>,
    lease: Option<(Api<Lease>, LeaseSettings)>,
}

impl Leadership {
    /// Always the leader (election off: a single replica).
    pub fn always() -> Self {
        Self {
            state: Arc::new(watch::channel(true).0),
            lost: CancellationToken::new(),
            campaign: None,
            lease: None,
        }
    }

    /// Starts campaigning in the background; `on_change` hears every change.
    pub async fn elect(
        client: kube::Client,
        settings: &LeaseSettings,
        on_change: impl Fn(bool) + Send + Sync + 'static,
    ) -> Result<Self, LeaderError> {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        api.get_opt(&settings.name)
            .await
            .map_err(|source| LeaderError::Start {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
                source,
            })?;
        let state = Arc::new(watch::channel(false).0);
        let lost = CancellationToken::new();
        let campaign = tokio::spawn(campaign(
            api.clone(),
            settings.clone(),
            state.clone(),
            lost.clone(),
            on_change,
        ));
        Ok(Self {
            state,
            lost,
            campaign: Some(campaign),
            lease: Some((api, settings.clone())),
        })
    }

    /// The current state and its changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// Yields once each time this replica becomes the leader.
    pub fn gained(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.subscribe(), |mut state| async move {
            loop {
                state.changed().await.ok()?;
                if *state.borrow_and_update() {
                    return Some(((), state));
                }
            }
        })
    }

    /// Completes once this replica, having led, lost the lease (never without
    /// election, never because of [`Leadership::release`]). Campaigning has
    /// stopped by then: the caller is expected to exit.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost.clone().cancelled_owned()
    }

    /// Stops campaigning and, if this replica holds the lease, gives it up so a
    /// standby takes over at its next poll. Waits at most `within`.
    pub async fn release(self, within: Duration) {
        let was_leader = self.state.send_replace(false);
        if let Some(campaign) = self.campaign {
            campaign.abort();
            let _ = campaign.await;
        }
        let Some((api, settings)) = self.lease else {
            return;
        };
        if !was_leader {
            return;
        }
        match tokio::time::timeout(within, give_up(&api, &settings)).await {
            Ok(Ok(())) => info!(lease = %settings.name, "lease released"),
            Ok(Err(err)) => {
                warn!(lease = %settings.name, error = %err, "could not release the lease")
            }
            Err(_) => warn!(lease = %settings.name, "releasing the lease took too long"),
        }
    }
}

/// What this replica last saw of the lease, and when (on its own clock).
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    at: Instant,
}

async fn campaign(
    api: Api<Lease>,
    settings: LeaseSettings,
    state: Arc<watch::Sender<bool>>,
    lost: CancellationToken,
    on_change: impl Fn(bool) + Send + Sync,
) {
    let mut observed: Option<Observed> = None;
    let mut last_renewal = Instant::now();
    loop {
        let leading = *state.borrow();
        let step_down = match try_acquire_or_renew(&api, &settings, &mut observed).await {
            Ok(true) => {
                last_renewal = Instant::now();
                if !leading {
                    info!(lease = %settings.name, identity = %settings.identity, "became the leader");
                    state.send_replace(true);
                    on_change(true);
                }
                None
            }
            Ok(false) if leading => Some("another replica holds the lease"),
            Ok(false) => None,
            Err(err) => {
                debug!(lease = %settings.name, error = %err, "lease update failed");
                (leading && last_renewal.elapsed() > settings.renew_deadline)
                    .then_some("could not renew the lease in time")
            }
        };
        if let Some(why) = step_down {
            warn!(lease = %settings.name, "{why}: stepping down");
            state.send_replace(false);
            on_change(false);
            lost.cancel();
            return;
        }
        tokio::time::sleep(settings.retry_period).await;
    }
}

/// One round: returns whether this replica holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_spec(settings, now, None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let renew_time = spec.renew_time.as_ref().map(|t| t.0);
    // The record changed since we last looked: restart the expiry clock.
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew_time,
            at: Instant::now(),
        });
    }
    let mine = holder.as_deref() == Some(settings.identity.as_str());
    let expired = observed
        .as_ref()
        .is_some_and(|o| o.at.elapsed() > settings.lease_duration);
    if !mine && holder.is_some() && !expired {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine {
        spec.acquire_time.map(|t| t.0)
    } else {
        None
    };
    lease.spec = Some(held_spec(settings, now, acquired, transitions));
    // replace() carries the resourceVersion we read: a concurrent writer makes this fail.
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

fn held_spec(
    settings: &LeaseSettings,
    now: Timestamp,
    acquired: Option<Timestamp>,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.lease_duration.as_secs().clamp(1, 3600) as i32),
        acquire_time: Some(MicroTime(acquired.unwrap_or(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Empties the holder if it is still us.
async fn give_up(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The election against a recording, in-memory Lease API behind a real
    //! `kube::Client` (a `tower_test` mock service), on tokio's paused clock.

    use std::sync::{Mutex, PoisonError};

    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;

    use super::*;

    /// One Lease as the API server keeps it: resourceVersion checks on replace,
    /// 409 on a second create. Records every request as `METHOD holder`.
    #[derive(Default)]
    struct FakeLeases {
        lease: Option<Lease>,
        version: u64,
        requests: Vec<String>,
        failing: bool,
    }

    type Shared = Arc<Mutex<FakeLeases>>;

    fn lock(fake: &Shared) -> std::sync::MutexGuard<'_, FakeLeases> {
        fake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn holder_of(lease: &Lease) -> String {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default()
    }

    fn status(code: StatusCode, reason: &str) -> (StatusCode, serde_json::Value) {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code.as_u16(),
        });
        (code, body)
    }

    impl FakeLeases {
        fn answer(&mut self, method: &Method, body: &[u8]) -> (StatusCode, serde_json::Value) {
            if self.failing {
                self.requests.push(format!("{method} (failed)"));
                return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
            }
            let sent: Option<Lease> = serde_json::from_slice(body).ok();
            self.requests.push(format!(
                "{method} {}",
                sent.as_ref().map(holder_of).unwrap_or_default()
            ));
            match (method.as_str(), sent) {
                ("GET", _) => match &self.lease {
                    Some(lease) => (StatusCode::OK, serde_json::json!(lease)),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                },
                ("POST", Some(lease)) if self.lease.is_none() => {
                    self.store(lease);
                    (StatusCode::CREATED, serde_json::json!(self.lease))
                }
                ("POST", _) => status(StatusCode::CONFLICT, "AlreadyExists"),
                ("PUT", Some(lease))
                    if lease.metadata.resource_version == Some(self.version.to_string()) =>
                {
                    self.store(lease);
                    (StatusCode::OK, serde_json::json!(self.lease))
                }
                _ => status(StatusCode::CONFLICT, "Conflict"),
            }
        }

        fn store(&mut self, mut lease: Lease) {
            self.version += 1;
            lease.metadata.resource_version = Some(self.version.to_string());
            self.lease = Some(lease);
        }

        /// Another replica writes the lease as its holder, renewed now.
        fn held_by(&mut self, identity: &str) {
            let settings = settings(identity);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_spec(&settings, Timestamp::now(), None, 1)),
            };
            self.store(lease);
        }

        fn holder(&self) -> Option<String> {
            self.lease.as_ref().map(holder_of).filter(|h| !h.is_empty())
        }
    }

    fn client(fake: Shared) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.expect("request body");
                let (code, json) = lock(&fake).answer(&parts.method, &body);
                let body = serde_json::to_vec(&json).expect("json");
                respond.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .expect("response"),
                );
            }
        });
        kube::Client::new(service, "default")
    }

    fn settings(identity: &str) -> LeaseSettings {
        LeaseSettings {
            name: "keyrotor".to_owned(),
            namespace: "default".to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    async fn elect(fake: &Shared, identity: &str) -> (Leadership, Arc<Mutex<Vec<bool>>>) {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let leadership = Leadership::elect(client(fake.clone()), &settings(identity), move |l| {
            seen.lock().unwrap_or_else(PoisonError::into_inner).push(l)
        })
        .await
        .expect("election starts");
        (leadership, changes)
    }

    async fn until_leader(leadership: &Leadership) {
        let mut state = leadership.subscribe();
        state
            .wait_for(|leading| *leading)
            .await
            .expect("campaign runs");
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_lease_is_created_at_once_and_emptied_on_release() {
        let fake = Shared::default();
        let (leadership, changes) = elect(&fake, "a").await;
        until_leader(&leadership).await;
        assert_eq!(lock(&fake).holder().as_deref(), Some("a"));
        leadership.release(Duration::from_secs(2)).await;
        let fake = lock(&fake);
        assert_eq!(
            fake.holder(),
            None,
            "released: a standby takes it at its next poll"
        );
        assert_eq!(fake.requests.last().map(String::as_str), Some("PUT "));
        assert_eq!(*changes.lock().expect("changes"), [true]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_its_holder_keeps_renewing_is_never_taken() {
        let fake = Shared::default();
        lock(&fake).held_by("b");
        let (leadership, changes) = elect(&fake, "a").await;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            lock(&fake).held_by("b");
        }
        assert!(!*leadership.subscribe().borrow());
        assert!(changes.lock().expect("changes").is_empty());
        let fake = lock(&fake);
        assert!(
            fake.requests.iter().all(|r| r.starts_with("GET")),
            "a standby only reads a held lease: {:?}",
            fake.requests
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_stopped_renewing_is_replaced_after_the_lease_duration() {
        let fake = Shared::default();
        lock(&fake).held_by("b");
        let started = Instant::now();
        let (leadership, _) = elect(&fake, "a").await;
        until_leader(&leadership).await;
        let waited = started.elapsed();
        assert!(
            waited > Duration::from_secs(15) && waited <= Duration::from_secs(19),
            "{waited:?}"
        );
        let fake = lock(&fake);
        let spec = fake
            .lease
            .as_ref()
            .and_then(|l| l.spec.clone())
            .expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(2), "one more transition");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_another_replica_took_steps_down_and_reports_the_loss() {
        let fake = Shared::default();
        let (leadership, changes) = elect(&fake, "a").await;
        until_leader(&leadership).await;
        lock(&fake).held_by("b");
        tokio::time::timeout(Duration::from_secs(3), leadership.lost())
            .await
            .expect("the loss is reported at the next renewal");
        assert!(!*leadership.subscribe().borrow());
        assert_eq!(*changes.lock().expect("changes"), [true, false]);
        let requests = lock(&fake).requests.len();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            lock(&fake).requests.len(),
            requests,
            "campaigning stopped: the process is expected to exit"
        );
        assert_eq!(lock(&fake).holder().as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_within_the_deadline_steps_down() {
        let fake = Shared::default();
        let (leadership, changes) = elect(&fake, "a").await;
        until_leader(&leadership).await;
        let renewed = Instant::now();
        lock(&fake).failing = true;
        leadership.lost().await;
        let waited = renewed.elapsed();
        assert!(
            waited > Duration::from_secs(10) && waited <= Duration::from_secs(13),
            "steps down at the first failed renewal past the deadline: {waited:?}"
        );
        assert_eq!(*changes.lock().expect("changes"), [true, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_election_the_replica_leads_and_never_loses() {
        let leadership = Leadership::always();
        assert!(*leadership.subscribe().borrow());
        assert!(
            tokio::time::timeout(Duration::from_secs(60), leadership.lost())
                .await
                .is_err()
        );
    }
}
