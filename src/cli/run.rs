//! `keyrotor run`: the operator's settings (flags with environment
//! equivalents) and its start-up.

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kube::runtime::events::{Recorder, Reporter};

use crate::{
    cloudflare::{BudgetRegistry, ClientSettings, CloudflareClient, DEFAULT_BASE_URL, RetryPolicy},
    controller::{self, Context, ControllerSettings},
    crd::GoDuration,
};

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Operator settings. Every flag has an environment variable.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Cloudflare API base URL. Operator-wide only: a per-object URL would let
    /// any namespace user send the account's token anywhere.
    #[arg(long, env = "KEYROTOR_CLOUDFLARE_API_URL", default_value = DEFAULT_BASE_URL)]
    pub cloudflare_api_url: String,
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
    /// Policies reconciled at the same time.
    #[arg(long, env = "KEYROTOR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Requests per budget window allowed for each credential (Cloudflare allows 1200 per 5m).
    #[arg(long, env = "KEYROTOR_BUDGET_REQUESTS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub budget_requests: u32,
    /// The budget window.
    #[arg(long, env = "KEYROTOR_BUDGET_WINDOW", default_value = "5m")]
    pub budget_window: GoDuration,
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
    /// Log format.
    #[arg(long, env = "KEYROTOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level or filter (tracing's EnvFilter syntax, e.g. `info` or `keyrotor=debug`).
    #[arg(long, env = "KEYROTOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl RunArgs {
    /// Starts logging, connects to Kubernetes and runs the controllers until a signal.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::telemetry::init(&self.log_level, matches!(self.log_format, LogFormat::Json))?;
        let client = kube::Client::try_default()
            .await
            .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
        let budgets = Arc::new(BudgetRegistry::new(
            self.budget_requests,
            self.budget_window.as_duration(),
            self.budget_burst,
        ));
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
        .context("cannot build the Cloudflare HTTP client")?;
        let reporter = Reporter {
            controller: "keyrotor".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let settings = ControllerSettings {
            drift_check_floor: self.drift_check_floor.as_duration(),
            ..ControllerSettings::default()
        };
        let namespaces: Vec<String> = self
            .watch_namespaces
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        tracing::info!(
            api_url = %self.cloudflare_api_url,
            namespaces = ?namespaces,
            floor = %self.drift_check_floor,
            "keyrotor starting"
        );
        controller::run(client.clone(), namespaces, self.concurrency, |policies| {
            Context {
                client,
                cloudflare,
                policies,
                recorder,
                settings,
            }
        })
        .await;
        tracing::info!("keyrotor stopped");
        Ok(())
    }
}
