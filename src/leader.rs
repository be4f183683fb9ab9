//! Leader election on a coordination.k8s.io Lease, the way client-go's
//! leaderelection does it: candidates poll every retry period and take a lease
//! that is free or whose holder stopped renewing for a lease duration (timed on
//! this replica's own clock, so clock skew does not matter); the holder renews
//! every retry period and steps down if it cannot renew within the renew
//! deadline. Releasing empties the holder, so a standby takes over at its next
//! poll. Writes use the object's resourceVersion: two replicas can never both
//! win the same update.

use std::{sync::Arc, time::Duration};

use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, api::PostParams};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
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
    campaign: Option<JoinHandle<()>>,
    lease: Option<(Api<Lease>, LeaseSettings)>,
}

impl Leadership {
    /// Always the leader (election off: a single replica).
    pub fn always() -> Self {
        Self {
            state: Arc::new(watch::channel(true).0),
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
        let campaign = tokio::spawn(campaign(
            api.clone(),
            settings.clone(),
            state.clone(),
            on_change,
        ));
        Ok(Self {
            state,
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
    on_change: impl Fn(bool) + Send + Sync,
) {
    let mut observed: Option<Observed> = None;
    let mut last_renewal = Instant::now();
    loop {
        let leading = *state.borrow();
        match try_acquire_or_renew(&api, &settings, &mut observed).await {
            Ok(true) => {
                last_renewal = Instant::now();
                if !leading {
                    info!(lease = %settings.name, identity = %settings.identity, "became the leader");
                    state.send_replace(true);
                    on_change(true);
                }
            }
            Ok(false) if leading => {
                warn!(lease = %settings.name, "another replica holds the lease: stepping down");
                state.send_replace(false);
                on_change(false);
            }
            Ok(false) => {}
            Err(err) => {
                debug!(lease = %settings.name, error = %err, "lease update failed");
                if leading && last_renewal.elapsed() > settings.renew_deadline {
                    warn!(lease = %settings.name, "could not renew the lease in time: stepping down");
                    state.send_replace(false);
                    on_change(false);
                }
            }
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
