//! What every reconcile shares.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use kube::runtime::reflector::Store;
use lru::LruCache;
use tokio::sync::watch;

use super::{
    EventPublisher,
    cached::OwnWrites,
    claims::AccountClaims,
    demand::{CredentialDemands, DEMAND_TTL},
    drift_checks::DriftChecks,
    fair_share::FairShare,
    secret_index::SecretIndex,
};
use crate::{
    cloudflare::{CloudflareClient, Credentials, Demand},
    crd::AccessKeyPolicy,
    decide::{CredentialMemory, Refusal},
    metrics::Metrics,
};

/// Operator-wide controller settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// No account is checked more often than this.
    pub drift_check_floor: Duration,
    /// No policy's rotation cooldown is shorter than this.
    pub min_rotation_cooldown: Duration,
    /// Field manager of the operator's server-side applies.
    pub field_manager: String,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            drift_check_floor: Duration::from_secs(60),
            min_rotation_cooldown: Duration::from_secs(168 * 3600),
            field_manager: "keyrotor".to_owned(),
        }
    }
}

/// Shared by all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Cloudflare client (one HTTP client, shared budgets).
    pub cloudflare: CloudflareClient,
    /// Caches of all watched policies (one per watched namespace, or one for all).
    pub policies: Vec<Store<AccessKeyPolicy>>,
    /// Event publisher.
    pub events: EventPublisher,
    /// Settings.
    pub settings: ControllerSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// True while this replica holds the lease (always, without election).
    pub leader: watch::Receiver<bool>,
    /// Recently computed demand per credential.
    pub demands: CredentialDemands,
    /// The versions of policies this replica's writes replaced.
    pub own_writes: OwnWrites,
    /// What passes remember about each policy between them.
    pub memory: PolicyMemory,
    /// Which credential each Secret was last seen holding.
    pub secret_index: Arc<SecretIndex>,
    /// Which policy owns each account (Leases in the operator's namespace).
    pub claims: AccountClaims,
    /// Each namespace's share of the workers; `None` when every watched
    /// namespace has a controller (and workers) of its own.
    pub fair_share: Option<Arc<FairShare>>,
    /// The namespaces of the cached policies (at most two), recently computed.
    pub namespaces_cache: Mutex<Option<(Instant, Vec<String>)>>,
    /// When each policy's next drift check is due.
    pub drift_checks: DriftChecks,
}

/// How many policies are remembered; beyond that the least recently seen is
/// forgotten (it then asks Cloudflare once more, at its check interval).
const POLICIES_REMEMBERED: usize = 4096;

/// What the last pass of a policy left for the next one.
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    /// The last refusal of its credentials by Cloudflare.
    pub refusal: Option<Refusal>,
    /// Its Ready message reported its credential's drift checks running late
    /// (and the event was published).
    pub late: bool,
}

/// [`Remembered`] per policy (`namespace/name`), bounded.
pub struct PolicyMemory(Mutex<LruCache<String, Remembered>>);

impl Default for PolicyMemory {
    fn default() -> Self {
        Self(Mutex::new(LruCache::new(
            NonZeroUsize::new(POLICIES_REMEMBERED).unwrap_or(NonZeroUsize::MIN),
        )))
    }
}

impl PolicyMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Remembered>> {
        // One get or put per call: consistent even after a panic elsewhere.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the policy's last pass left.
    pub fn get(&self, policy: &str) -> Remembered {
        self.lock().peek(policy).cloned().unwrap_or_default()
    }

    /// Keeps what this pass decided to remember.
    pub fn remember(&self, policy: &str, credentials: &CredentialMemory, late: bool) {
        let mut memory = self.lock();
        let mut entry = memory.peek(policy).cloned().unwrap_or_default();
        match credentials {
            CredentialMemory::Keep => {}
            CredentialMemory::Refused(refusal) => entry.refusal = Some(refusal.clone()),
            CredentialMemory::Accepted => entry.refusal = None,
        }
        entry.late = late;
        if entry.refusal.is_none() && !entry.late {
            memory.pop(policy);
        } else {
            memory.put(policy.to_owned(), entry);
        }
    }
}

impl Context {
    /// Whether this replica may reconcile and write.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Whether cached policies live in a namespace other than `namespace`
    /// (reused for a few seconds: it walks every cached policy).
    pub fn policies_elsewhere(&self, namespace: &str) -> bool {
        let mut cache = self
            .namespaces_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh = cache
            .as_ref()
            .filter(|(at, _)| at.elapsed() < DEMAND_TTL)
            .map(|(_, seen)| seen.clone());
        let seen = fresh.unwrap_or_else(|| {
            let mut seen: Vec<String> = Vec::new();
            for store in &self.policies {
                for policy in store.state() {
                    let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
                    if !seen.iter().any(|s| s == ns) {
                        seen.push(ns.to_owned());
                    }
                    if seen.len() > 1 {
                        break;
                    }
                }
            }
            *cache = Some((Instant::now(), seen.clone()));
            seen
        });
        seen.iter().any(|n| n != namespace)
    }

    /// Every watched scope's first list is in: figures computed from the
    /// cache while it filled (passes start with the first page) are
    /// computed again at the next pass.
    pub fn cache_complete(&self) {
        *self
            .namespaces_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.demands.forget();
    }

    /// A Secret now holds another credential: the demands are behind.
    pub fn demand_changed(&self) {
        self.demands.changed();
    }

    /// The steady demand on `credentials`: the drift checks per second of every
    /// cached policy whose Secret was last seen holding them (at least the
    /// operator's floor apart; suspended and deleted policies make no calls).
    pub fn credential_demand(&self, credentials: &Credentials) -> Demand {
        let capacity = self.cloudflare.budgets().per_second();
        let floor = self.settings.drift_check_floor;
        self.demands.get(credentials.id(), capacity, |count| {
            // One key buffer for the whole walk: it visits every cached policy.
            let mut secret = String::new();
            self.secret_index.last_seen(|held| {
                for store in &self.policies {
                    for policy in store.state() {
                        if policy.spec.suspend || policy.metadata.deletion_timestamp.is_some() {
                            continue;
                        }
                        secret.clear();
                        secret.push_str(policy.metadata.namespace.as_deref().unwrap_or_default());
                        secret.push('/');
                        secret.push_str(&policy.spec.credentials_ref.name);
                        if let Some(credential) = held(&secret) {
                            count(
                                credential,
                                policy.spec.drift_check_interval.as_duration().max(floor),
                            );
                        }
                    }
                }
            });
        })
    }
}
