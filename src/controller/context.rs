//! What every reconcile shares.

use std::{sync::Arc, time::Duration};

use kube::runtime::{events::Recorder, reflector::Store};
use tokio::sync::watch;

use crate::{cloudflare::CloudflareClient, crd::AccessKeyPolicy, metrics::Metrics};

/// Operator-wide controller settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// No account is checked more often than this.
    pub drift_check_floor: Duration,
    /// Field manager of the operator's server-side applies.
    pub field_manager: String,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            drift_check_floor: Duration::from_secs(60),
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
    /// Event recorder.
    pub recorder: Recorder,
    /// Settings.
    pub settings: ControllerSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// True while this replica holds the lease (always, without election).
    pub leader: watch::Receiver<bool>,
}

impl Context {
    /// Whether this replica may reconcile and write.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}
