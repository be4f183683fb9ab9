//! `keyrotor run`: the operator's settings (flags with environment
//! equivalents) and its start-up.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::{
    cloudflare::{
        BudgetRegistry, ClientSettings, CloudflareClient, DEFAULT_BASE_URL, DEFAULT_TOTAL_REQUESTS,
        RetryPolicy,
    },
    controller::{
        self, AccountClaims, Context, ControllerSettings, EventPublisher, FairShare, RunOptions,
    },
    crd::GoDuration,
    leader::{Leadership, LeaseSettings},
    metrics::Metrics,
    metrics_auth::MetricsAuthorizer,
    metrics_tls::{self, CertificateSource},
    server::{self, Probes, ServeOptions},
};

use super::api_url::{ApiUrlError, check_api_url};

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsAuth {
    /// Callers whose bearer token passes a TokenReview and whose user may
    /// `get` the non-resource URL `/metrics` (a SubjectAccessReview).
    Kubernetes,
    /// Anyone who reaches the port (it lists every policy's name and schedule).
    None,
}

/// Operator settings. Every flag has an environment variable.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Cloudflare API base URL. Operator-wide only: a per-object URL would let
    /// any namespace user send the account's token anywhere.
    #[arg(long, env = "KEYROTOR_CLOUDFLARE_API_URL", default_value = DEFAULT_BASE_URL)]
    pub cloudflare_api_url: String,
    /// Allow an `http://` API URL to a host other than loopback (the token then
    /// travels in clear text; for test setups only).
    #[arg(long, env = "KEYROTOR_ALLOW_INSECURE_API_URL")]
    pub allow_insecure_api_url: bool,
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "KEYROTOR_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,
    /// No account is checked more often than this, whatever a policy asks.
    #[arg(long, env = "KEYROTOR_DRIFT_CHECK_FLOOR", default_value = "1m")]
    pub drift_check_floor: GoDuration,
    /// No policy's rotationCooldown is shorter than this (a lower one is held to
    /// it): two rotations within the 7-day key overlap invalidate live tokens.
    #[arg(long, env = "KEYROTOR_MIN_ROTATION_COOLDOWN", default_value = "168h")]
    pub min_rotation_cooldown: GoDuration,
    /// Policies reconciled at the same time.
    #[arg(long, env = "KEYROTOR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Requests per budget window allowed for each credential (Cloudflare allows 1200 per 5m).
    #[arg(long, env = "KEYROTOR_BUDGET_REQUESTS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub budget_requests: u32,
    /// The budget window.
    #[arg(long, env = "KEYROTOR_BUDGET_WINDOW", default_value = "5m")]
    pub budget_window: GoDuration,
    /// Requests per budget window allowed for all credentials together
    /// (Cloudflare also limits each client IP), in bursts of a sixtieth of it.
    #[arg(long, env = "KEYROTOR_BUDGET_TOTAL_REQUESTS", default_value_t = DEFAULT_TOTAL_REQUESTS, value_parser = clap::value_parser!(u32).range(1..))]
    pub budget_total_requests: u32,
    /// Largest burst of requests per credential.
    #[arg(long, env = "KEYROTOR_BUDGET_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub budget_burst: u32,
    /// Retries of idempotent Cloudflare calls after a 5xx or transport error.
    #[arg(long, env = "KEYROTOR_RETRY_MAX", default_value_t = 3)]
    pub retry_max: u32,
    /// Upper bound of the first retry delay (doubles per retry, up to 30s).
    #[arg(long, env = "KEYROTOR_RETRY_BASE_DELAY", default_value = "1s")]
    pub retry_base_delay: GoDuration,
    /// Timeout of one whole Cloudflare request.
    #[arg(long, env = "KEYROTOR_REQUEST_TIMEOUT", default_value = "30s")]
    pub request_timeout: GoDuration,
    /// Only policies matching this label selector (e.g. `shard=a`), so several
    /// operator deployments can split a cluster; give each its own lease name.
    #[arg(long, env = "KEYROTOR_LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// Watch Secrets (metadata only) so a changed Secret starts a pass at once.
    /// Off, the operator needs only `get` on Secrets and a changed Secret is
    /// used from each policy's next drift check (every pass reads it by name).
    #[arg(long, env = "KEYROTOR_WATCH_SECRETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub watch_secrets: bool,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "KEYROTOR_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,
    /// Who may read /metrics (/healthz and /readyz are always open).
    #[arg(
        long,
        env = "KEYROTOR_METRICS_AUTH",
        value_enum,
        default_value = "kubernetes"
    )]
    pub metrics_auth: MetricsAuth,
    /// Serve /metrics, /healthz and /readyz over HTTPS (self-signed unless
    /// --metrics-tls-cert-file and --metrics-tls-key-file are given).
    #[arg(long, env = "KEYROTOR_METRICS_TLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_tls: bool,
    /// PEM certificate chain of the metrics endpoint (re-read when it changes).
    #[arg(
        long,
        env = "KEYROTOR_METRICS_TLS_CERT_FILE",
        requires = "metrics_tls_key_file"
    )]
    pub metrics_tls_cert_file: Option<PathBuf>,
    /// PEM private key of the metrics endpoint.
    #[arg(
        long,
        env = "KEYROTOR_METRICS_TLS_KEY_FILE",
        requires = "metrics_tls_cert_file"
    )]
    pub metrics_tls_key_file: Option<PathBuf>,
    /// Elect a leader through a Lease; only the leader reconciles (use with several replicas).
    #[arg(long, env = "KEYROTOR_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Lease name. Defaults to `keyrotor`, or `keyrotor-<hash>` when namespaces
    /// or a label selector scope this deployment, so scoped deployments never share one.
    #[arg(long, env = "KEYROTOR_LEADER_ELECTION_LEASE_NAME")]
    pub leader_election_lease_name: Option<String>,
    /// Lease namespace (in a cluster: the operator's own namespace).
    #[arg(
        long,
        env = "KEYROTOR_LEADER_ELECTION_NAMESPACE",
        default_value = "default"
    )]
    pub leader_election_namespace: String,
    /// A leader that has not renewed for this long loses the lease (after a crash,
    /// a standby takes over within this time).
    #[arg(
        long,
        env = "KEYROTOR_LEADER_ELECTION_LEASE_DURATION",
        default_value = "15s"
    )]
    pub leader_election_lease_duration: GoDuration,
    /// The leader steps down when it could not renew for this long.
    #[arg(
        long,
        env = "KEYROTOR_LEADER_ELECTION_RENEW_DEADLINE",
        default_value = "10s"
    )]
    pub leader_election_renew_deadline: GoDuration,
    /// How often standbys try to take the lease and the leader renews it.
    #[arg(
        long,
        env = "KEYROTOR_LEADER_ELECTION_RETRY_PERIOD",
        default_value = "2s"
    )]
    pub leader_election_retry_period: GoDuration,
    /// This replica's identity in the lease (defaults to POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// On SIGTERM, how long in-flight reconciles may take before the process exits anyway.
    #[arg(long, env = "KEYROTOR_SHUTDOWN_GRACE", default_value = "7s")]
    pub shutdown_grace: GoDuration,
    /// Namespace of the account claims (one Lease per managed account, which
    /// tells every replica and shard which policy owns the account); defaults
    /// to --leader-election-namespace, the operator's own namespace in a cluster.
    /// Deployments that split a cluster must share it.
    #[arg(long, env = "KEYROTOR_CLAIMS_NAMESPACE")]
    pub claims_namespace: Option<String>,
    /// Shortest time an account's claim outlives its owner's last successful
    /// read (it is at least three of the owner's drift checks): an owner whose
    /// credentials keep failing loses the account after this long.
    #[arg(long, env = "KEYROTOR_ACCOUNT_CLAIM_DURATION", default_value = "1h")]
    pub account_claim_duration: GoDuration,
    /// Log format.
    #[arg(long, env = "KEYROTOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level or filter (tracing's EnvFilter syntax, e.g. `info` or `keyrotor=debug`).
    #[arg(long, env = "KEYROTOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A bad combination of settings (single values are checked by the parser).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The lease timings must nest: retry period < renew deadline < lease duration.
    #[error(
        "leader election needs --leader-election-retry-period ({retry}) < --leader-election-renew-deadline ({deadline}) < --leader-election-lease-duration ({duration})"
    )]
    LeaseTimings {
        /// Retry period.
        retry: GoDuration,
        /// Renew deadline.
        deadline: GoDuration,
        /// Lease duration.
        duration: GoDuration,
    },
    /// A zero-length budget window.
    #[error("--budget-window must be positive")]
    BudgetWindow,
    /// The Cloudflare API URL would send the token in clear text.
    #[error(transparent)]
    ApiUrl(#[from] ApiUrlError),
    /// Certificate files given while TLS is off.
    #[error("--metrics-tls-cert-file/--metrics-tls-key-file need --metrics-tls=true")]
    MetricsCertWithoutTls,
}

impl RunArgs {
    /// Checks settings that depend on each other. Exit code 2 on failure, like clap.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let (retry, deadline, duration) = (
            self.leader_election_retry_period.as_duration(),
            self.leader_election_renew_deadline.as_duration(),
            self.leader_election_lease_duration.as_duration(),
        );
        if retry.is_zero() || retry >= deadline || deadline >= duration {
            return Err(SettingsError::LeaseTimings {
                retry: self.leader_election_retry_period.clone(),
                deadline: self.leader_election_renew_deadline.clone(),
                duration: self.leader_election_lease_duration.clone(),
            });
        }
        if self.budget_window.as_duration().is_zero() {
            return Err(SettingsError::BudgetWindow);
        }
        check_api_url(&self.cloudflare_api_url, self.allow_insecure_api_url)?;
        if !self.metrics_tls && self.metrics_tls_cert_file.is_some() {
            return Err(SettingsError::MetricsCertWithoutTls);
        }
        Ok(())
    }

    /// The lease name: given, or derived from the watch scope.
    pub fn lease_name(&self, namespaces: &[String]) -> String {
        if let Some(name) = &self.leader_election_lease_name {
            return name.clone();
        }
        if namespaces.is_empty() && self.label_selector.is_none() {
            return "keyrotor".to_owned();
        }
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let scope = format!(
            "{}|{}",
            namespaces.join(","),
            self.label_selector.as_deref().unwrap_or("")
        );
        let hash = scope.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("keyrotor-{:08x}", hash as u32)
    }

    /// Starts logging, connects to Kubernetes and runs until SIGTERM/SIGINT.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::telemetry::init(&self.log_level, matches!(self.log_format, LogFormat::Json))?;
        // A test asking for a pause point from a build without them would
        // otherwise wait for a pause that never comes.
        #[cfg(not(feature = "failpoints"))]
        if std::env::var_os("KEYROTOR_TEST_PAUSE_AT").is_some() {
            anyhow::bail!(
                "KEYROTOR_TEST_PAUSE_AT needs a build with `--features keyrotor/failpoints`"
            );
        }
        let client = kube::Client::try_default()
            .await
            .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
        let metrics = Arc::new(Metrics::new());
        let budgets = Arc::new(
            BudgetRegistry::new(
                self.budget_requests,
                self.budget_window.as_duration(),
                self.budget_burst,
            )
            .with_ceiling(self.budget_total_requests),
        );
        let cloudflare = CloudflareClient::new(
            &ClientSettings {
                base_url: self.cloudflare_api_url.clone(),
                request_timeout: self.request_timeout.as_duration(),
                retry: RetryPolicy {
                    max_retries: self.retry_max,
                    base_delay: self.retry_base_delay.as_duration(),
                    ..RetryPolicy::default()
                },
                ..ClientSettings::default()
            },
            budgets,
        )
        .context("cannot build the Cloudflare HTTP client")?
        .with_observer(metrics.clone());
        let identity = self.identity.clone().unwrap_or_else(default_identity);
        let events = EventPublisher::new(client.clone(), "keyrotor", identity.clone());
        let settings = ControllerSettings {
            drift_check_floor: self.drift_check_floor.as_duration(),
            min_rotation_cooldown: self.min_rotation_cooldown.as_duration(),
            ..ControllerSettings::default()
        };
        let namespaces: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();

        let shutdown = CancellationToken::new();
        cancel_on_signals(shutdown.clone());
        let probes = Probes::new(metrics.clone());
        let serve_options = self.serve_options(&client)?;
        let server = server::serve(
            self.metrics_address,
            probes.clone(),
            serve_options,
            cancelled(&shutdown),
        )
        .await
        .with_context(|| {
            format!(
                "cannot listen on --metrics-address {}",
                self.metrics_address
            )
        })?;

        let leadership = if self.leader_election {
            let lease = LeaseSettings {
                name: self.lease_name(&namespaces),
                namespace: self.leader_election_namespace.clone(),
                identity: identity.clone(),
                lease_duration: self.leader_election_lease_duration.as_duration(),
                renew_deadline: self.leader_election_renew_deadline.as_duration(),
                retry_period: self.leader_election_retry_period.as_duration(),
            };
            tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %identity, "leader election on");
            let leader_metrics = metrics.clone();
            Leadership::elect(client.clone(), &lease, move |leading| {
                leader_metrics.set_leader(leading)
            })
            .await?
        } else {
            metrics.set_leader(true);
            Leadership::always()
        };
        tracing::info!(
            api_url = %self.cloudflare_api_url,
            namespaces = ?namespaces,
            label_selector = ?self.label_selector,
            floor = %self.drift_check_floor,
            watch_secrets = self.watch_secrets,
            "keyrotor starting"
        );
        // One controller for all namespaces shares its workers between them.
        let fair_share = namespaces
            .is_empty()
            .then(|| Arc::new(FairShare::new(self.concurrency)));
        let options = RunOptions {
            namespaces,
            label_selector: self.label_selector.clone(),
            watch_secrets: self.watch_secrets,
            concurrency: self.concurrency,
            shutdown: cancelled(&shutdown),
            leadership_gained: leadership.gained(),
            on_ready: move || probes.set_ready(true),
        };
        let leader = leadership.subscribe();
        let claims = AccountClaims::new(
            client.clone(),
            self.claims_namespace
                .as_deref()
                .unwrap_or(&self.leader_election_namespace),
            self.account_claim_duration.as_duration(),
        );
        let controllers =
            controller::run(client.clone(), options, |policies, drift_checks| Context {
                client,
                cloudflare,
                policies,
                events,
                settings,
                metrics: metrics.clone(),
                leader,
                demands: Default::default(),
                own_writes: Default::default(),
                memory: Default::default(),
                secret_index: Arc::new(controller::SecretIndex::new(self.watch_secrets)),
                claims,
                fair_share,
                namespaces_cache: Default::default(),
                drift_checks,
            });
        tokio::pin!(controllers);
        tokio::select! {
            () = &mut controllers => {}
            () = shutdown.cancelled() => {
                tracing::info!("shutting down: finishing in-flight reconciles");
                if tokio::time::timeout(self.shutdown_grace.as_duration(), &mut controllers).await.is_err() {
                    tracing::warn!(grace = %self.shutdown_grace, "in-flight reconciles did not finish in time");
                }
            }
            // As controller-runtime: exit at once, so no pass that began while
            // leading writes beside the new leader; Kubernetes restarts this
            // replica as a standby. Dropping `controllers` cancels those passes.
            () = leadership.lost() => {
                metrics.set_leader(false);
                anyhow::bail!("lost the leader lease: exiting so that only the new leader writes");
            }
        }
        leadership.release(Duration::from_secs(2)).await;
        metrics.set_leader(false);
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        tracing::info!("keyrotor stopped");
        Ok(())
    }
}

impl RunArgs {
    /// TLS and access control of the metrics endpoint.
    fn serve_options(&self, client: &kube::Client) -> anyhow::Result<ServeOptions> {
        let tls = if self.metrics_tls {
            let source = match (&self.metrics_tls_cert_file, &self.metrics_tls_key_file) {
                (Some(cert), Some(key)) => CertificateSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                _ => CertificateSource::SelfSigned,
            };
            Some(metrics_tls::server_config(&source).context("cannot set up the metrics TLS")?)
        } else {
            None
        };
        let authorizer = match self.metrics_auth {
            MetricsAuth::Kubernetes => Some(Arc::new(MetricsAuthorizer::new(client.clone()))),
            MetricsAuth::None => None,
        };
        if authorizer.is_some() && tls.is_none() && !self.metrics_address.ip().is_loopback() {
            tracing::warn!(
                address = %self.metrics_address,
                "/metrics checks bearer tokens over plain HTTP: scrapers' tokens cross the network in clear (--metrics-tls=false)"
            );
        }
        Ok(ServeOptions { tls, authorizer })
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "keyrotor".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Cancels `token` on SIGTERM or SIGINT.
fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received");
        token.cancel();
    });
}

/// The shutdown as a future that any number of tasks can clone and wait on
/// (the controllers' `graceful_shutdown_on` needs `Clone`).
fn cancelled(
    token: &CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static {
    futures::FutureExt::shared(Box::pin(token.clone().cancelled_owned()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers only Ctrl-C is left.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
