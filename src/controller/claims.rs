//! Account claims, stored: one `coordination.k8s.io` Lease per account in the
//! operator's namespace (`keyrotor-account-<accountId>`), where tenants cannot
//! write and every replica and every shard (deployments split by namespace or
//! label selector) sees the same record. The Lease's `holderIdentity` is the
//! owning policy (`namespace/name`), `acquireTime` when its credentials first
//! read the account (the claim's order), `renewTime` when they last did, and
//! `leaseDurationSeconds` how long the claim outlives its last renewal. Every
//! write is an atomic create or an update at the read resourceVersion, so two
//! passes (or replicas, or shards) can never both win. What to do is decided
//! by [`crate::decide`]'s pure claim step; this file only reads and writes.
//!
//! Not the leader-election Lease code (`crate::leader`): that one campaigns in
//! a loop for a process; a claim is one read-decide-write per pass.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams, Preconditions},
};
use tracing::{debug, info};

use crate::{
    crd::{AccessKeyPolicy, ManagementPolicy},
    decide::{ClaimRecord, ClaimStep, Holder, claim_step, must_ask_holder},
};

/// Attempts of one claim against concurrent writers before the pass gives up
/// (and is retried): each lost race means another writer made progress.
const ATTEMPTS: usize = 3;

/// Why a claim could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Reading or writing the Lease, or reading the holder policy, failed.
    #[error("account claim Lease {lease}: {source}")]
    Kubernetes {
        /// The Lease's name.
        lease: String,
        /// The cause.
        source: kube::Error,
    },
    /// Other writers changed the Lease on every attempt.
    #[error("account claim Lease {lease} kept changing under this pass")]
    Contended {
        /// The Lease's name.
        lease: String,
    },
}

impl ClaimError {
    /// A stable reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kubernetes { .. } => "ClaimFailed",
            Self::Contended { .. } => "ClaimContended",
        }
    }
}

/// The claims, and what this replica last wrote of its own.
pub struct AccountClaims {
    leases: Api<Lease>,
    client: kube::Client,
    /// The shortest claim duration (`--account-claim-duration`).
    floor: Duration,
    /// Claims this replica holds, as it last wrote or read them, so a fresh
    /// claim of its own costs no read. Trusted only while the pure step says
    /// `Keep` (within a third of the duration after renewal): in that time
    /// nobody else may take it, since it has not lapsed and its holder is active.
    held: Mutex<HashMap<String, ClaimRecord>>,
}

/// The Lease name of `account` (account ids are 32 lowercase hex characters).
pub fn lease_name(account: &str) -> String {
    format!("keyrotor-account-{account}")
}

impl AccountClaims {
    /// Claims stored in `namespace`, lasting at least `floor` after renewal.
    pub fn new(client: kube::Client, namespace: &str, floor: Duration) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), namespace),
            client,
            floor,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The shortest claim duration.
    pub fn floor(&self) -> Duration {
        self.floor
    }

    /// After `me`'s (`namespace/name`) credentials read `account`: settles the
    /// claim. `None` when `me` owns the account, else the owner.
    pub async fn claim(
        &self,
        account: &str,
        me: &str,
        duration: Duration,
    ) -> Result<Option<String>, ClaimError> {
        let lease = lease_name(account);
        if let Some(mine) = self.held_record(account)
            && claim_step(
                me,
                Some(&mine),
                Holder::NotAsked,
                Timestamp::now(),
                duration,
            ) == ClaimStep::Keep
            && mine.holder == me
        {
            return Ok(None);
        }
        let fail = |source| ClaimError::Kubernetes {
            lease: lease.clone(),
            source,
        };
        for _ in 0..ATTEMPTS {
            let stored = self.leases.get_opt(&lease).await.map_err(fail)?;
            let record = stored.as_ref().map(record_of);
            let now = Timestamp::now();
            let holder = match &record {
                Some(r) if must_ask_holder(me, Some(r), now) => {
                    self.holder_state(&r.holder).await.map_err(fail)?
                }
                _ => Holder::NotAsked,
            };
            let step = claim_step(me, record.as_ref(), holder, now, duration);
            let written = match (&step, stored) {
                (ClaimStep::Lost { holder }, _) => {
                    self.forget(account);
                    debug!(account, owner = %holder, "another policy owns the account");
                    return Ok(Some(holder.clone()));
                }
                (ClaimStep::Keep, _) => {
                    self.remember(account, record);
                    return Ok(None);
                }
                (ClaimStep::Create, _) => {
                    let fresh = new_lease(&lease, me, now, duration);
                    self.leases.create(&PostParams::default(), &fresh).await
                }
                (ClaimStep::Renew | ClaimStep::TakeOver, Some(mut stored)) => {
                    let took_over = step == ClaimStep::TakeOver;
                    let spec = stored.spec.get_or_insert_with(Default::default);
                    if took_over {
                        spec.acquire_time = Some(micro(now));
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                        info!(
                            account,
                            previous = spec.holder_identity.as_deref().unwrap_or_default(),
                            "taking over the account's lapsed or abandoned claim"
                        );
                    }
                    spec.holder_identity = Some(me.to_owned());
                    spec.renew_time = Some(micro(now));
                    spec.lease_duration_seconds = Some(seconds(duration));
                    // Carries the read resourceVersion: a concurrent writer makes this a 409.
                    self.leases
                        .replace(&lease, &PostParams::default(), &stored)
                        .await
                }
                (ClaimStep::Renew | ClaimStep::TakeOver, None) => continue,
            };
            match written {
                Ok(lease) => {
                    if step == ClaimStep::Create {
                        info!(
                            account,
                            "claimed the account: this policy's credentials read it first"
                        );
                    }
                    self.remember(account, Some(record_of(&lease)));
                    return Ok(None);
                }
                // Another writer won the race: read again and decide again.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(err) => return Err(fail(err)),
            }
        }
        Err(ClaimError::Contended { lease })
    }

    /// Gives the claim up when `me` holds it (the policy is deleted). A
    /// failure leaves the claim to lapse or to be taken over once the others
    /// see the holder is gone.
    pub async fn release(&self, account: &str, me: &str) -> Result<(), ClaimError> {
        let lease = lease_name(account);
        self.forget(account);
        let fail = |source| ClaimError::Kubernetes {
            lease: lease.clone(),
            source,
        };
        let Some(stored) = self.leases.get_opt(&lease).await.map_err(fail)? else {
            return Ok(());
        };
        if stored
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            != Some(me)
        {
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: stored.resource_version(),
                uid: stored.uid(),
            }),
            ..DeleteParams::default()
        };
        match self.leases.delete(&lease, &params).await {
            Ok(_) => {
                info!(account, "released the account's claim");
                Ok(())
            }
            // Gone already, or changed hands meanwhile: nothing of ours to release.
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
            Err(err) => Err(fail(err)),
        }
    }

    /// Whether the policy holding a live claim still wants it. A policy this
    /// operator may not read (another shard's namespace) counts as active.
    async fn holder_state(&self, holder: &str) -> Result<Holder, kube::Error> {
        let Some((namespace, name)) = holder.split_once('/') else {
            return Ok(Holder::Gone);
        };
        let policies: Api<AccessKeyPolicy> = Api::namespaced(self.client.clone(), namespace);
        match policies.get_opt(name).await {
            Ok(None) => Ok(Holder::Gone),
            Ok(Some(policy)) => Ok(
                if policy.metadata.deletion_timestamp.is_some()
                    || policy.spec.suspend
                    || policy.spec.management_policy != ManagementPolicy::Manage
                {
                    Holder::Gone
                } else {
                    Holder::Active
                },
            ),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(Holder::Active),
            Err(err) => Err(err),
        }
    }

    fn held_record(&self, account: &str) -> Option<ClaimRecord> {
        self.lock().get(account).cloned()
    }

    fn remember(&self, account: &str, record: Option<ClaimRecord>) {
        match record {
            Some(record) => {
                self.lock().insert(account.to_owned(), record);
            }
            None => self.forget(account),
        }
    }

    fn forget(&self, account: &str) {
        self.lock().remove(account);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClaimRecord>> {
        // One insert or remove per call: consistent even after a panic elsewhere.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The claim a Lease holds. Missing times read as long ago, so a Lease
/// someone emptied by hand counts as lapsed.
fn record_of(lease: &Lease) -> ClaimRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    let at = |t: Option<MicroTime>| t.map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    ClaimRecord {
        holder: spec.holder_identity.unwrap_or_default(),
        acquired: at(spec.acquire_time),
        renewed: at(spec.renew_time),
        duration: Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
        ),
    }
}

fn new_lease(name: &str, me: &str, now: Timestamp, duration: Duration) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "keyrotor".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            acquire_time: Some(micro(now)),
            renew_time: Some(micro(now)),
            lease_duration_seconds: Some(seconds(duration)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

fn micro(at: Timestamp) -> MicroTime {
    MicroTime(at)
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}
