//! The HTTP client for one Cloudflare API base URL: get, update and rotate an
//! account's Access key configuration.

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use tracing::debug;

use super::{
    budget::BudgetRegistry,
    credentials::Credentials,
    envelope::{AccountKeyConfig, MAX_BODY_BYTES, parse_http_date, parse_response},
    error::{CloudflareError, TransportKind},
    observer::{NoObserver, RequestObserver},
    retry::RetryPolicy,
};

/// Cloudflare's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// The three calls this client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GET the configuration.
    Get,
    /// PUT a new interval.
    Update,
    /// POST a rotation.
    Rotate,
}

impl Operation {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Update => "update",
            Self::Rotate => "rotate",
        }
    }
}

/// Client settings (operator-wide; never per object).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL ending in `/client/v4`.
    pub base_url: String,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for a whole request, body included.
    pub request_timeout: Duration,
    /// Retries of idempotent calls.
    pub retry: RetryPolicy,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// A Cloudflare API client; cheap to clone, one per process.
#[derive(Clone)]
pub struct CloudflareClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    retry: RetryPolicy,
    budgets: Arc<BudgetRegistry>,
    observer: Arc<dyn RequestObserver>,
}

impl CloudflareClient {
    /// Builds the client. Fails only if the TLS stack cannot be set up.
    pub fn new(
        settings: &ClientSettings,
        budgets: Arc<BudgetRegistry>,
    ) -> Result<Self, reqwest::Error> {
        // reqwest is built without a crypto provider of its own; install ring, the
        // one kube uses. An `Err` only means it is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("keyrotor/", env!("CARGO_PKG_VERSION")))
            // Never follow a redirect: reqwest drops Authorization across
            // origins but would carry X-Auth-Key and X-Auth-Email along.
            .redirect(reqwest::redirect::Policy::none())
            // HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY are honoured on
            // purpose (reqwest's default), for clusters that reach the Internet
            // only through a proxy: docs/configuration.md, "Proxies".
            .build()?;
        Ok(Self {
            http,
            base_url: settings.base_url.trim_end_matches('/').into(),
            retry: settings.retry,
            budgets,
            observer: Arc::new(NoObserver),
        })
    }

    /// Reports every request to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The shared budgets (for metrics and tests).
    pub fn budgets(&self) -> &Arc<BudgetRegistry> {
        &self.budgets
    }

    /// `GET /accounts/{id}/access/keys`, retried on 5xx and transport errors.
    pub async fn get_config(
        &self,
        credentials: &Credentials,
        account_id: &str,
    ) -> Result<AccountKeyConfig, CloudflareError> {
        self.call_with_retries(Operation::Get, credentials, account_id, None)
            .await
    }

    /// `PUT /accounts/{id}/access/keys` with a new interval; idempotent, so retried.
    pub async fn update_interval(
        &self,
        credentials: &Credentials,
        account_id: &str,
        days: i64,
    ) -> Result<AccountKeyConfig, CloudflareError> {
        let body = serde_json::json!({ "key_rotation_interval_days": days });
        self.call_with_retries(Operation::Update, credentials, account_id, Some(body))
            .await
    }

    /// `POST /accounts/{id}/access/keys/rotate`, exactly one attempt: a timeout
    /// may hide a rotation that happened, so the caller checks the account instead.
    pub async fn rotate(
        &self,
        credentials: &Credentials,
        account_id: &str,
    ) -> Result<AccountKeyConfig, CloudflareError> {
        self.call_once(Operation::Rotate, credentials, account_id, None)
            .await
    }

    async fn call_with_retries(
        &self,
        operation: Operation,
        credentials: &Credentials,
        account_id: &str,
        body: Option<serde_json::Value>,
    ) -> Result<AccountKeyConfig, CloudflareError> {
        use backon::Retryable as _;
        // Attempts made, for the error; one retry loop per call, so relaxed is enough.
        let attempts = std::sync::atomic::AtomicU32::new(0);
        // The last failure that led to a retry: a retry the budget puts off
        // reports it (Cloudflare did answer, with a 5xx), not the put-off,
        // or a busy credential would hide an outage behind endless put-offs.
        let retried = std::sync::Mutex::new(None::<CloudflareError>);
        let result = (|| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.call_once(operation, credentials, account_id, body.clone())
        })
        .retry(self.retry.backoff())
        .sleep(tokio::time::sleep)
        .when(CloudflareError::is_retryable)
        .notify(|err, delay| {
            debug!(operation = operation.as_str(), ?delay, error = %err, "retrying Cloudflare call");
            if let Ok(mut last) = retried.lock() {
                *last = Some(err.clone());
            }
        })
        .await;
        let made = attempts.load(std::sync::atomic::Ordering::Relaxed);
        result.map_err(|err| {
            let earlier = retried.lock().ok().and_then(|mut last| last.take());
            match (err, earlier) {
                (CloudflareError::PutOff { .. }, Some(earlier)) => {
                    earlier.with_attempts(made.saturating_sub(1))
                }
                (err, _) => err.with_attempts(made),
            }
        })
    }

    async fn call_once(
        &self,
        operation: Operation,
        credentials: &Credentials,
        account_id: &str,
        body: Option<serde_json::Value>,
    ) -> Result<AccountKeyConfig, CloudflareError> {
        let budget = self.budgets.for_credentials(credentials);
        // Never waits out a long budget wait or a 429 block: the caller is
        // told when to come back and gives its worker to other policies.
        match self
            .budgets
            .acquire(&budget, operation != Operation::Get)
            .await
        {
            Ok(waited) => self.observer.budget_wait(waited),
            Err(put_off) => {
                debug!(
                    operation = operation.as_str(),
                    wait_ms = u64::try_from(put_off.wait.as_millis()).unwrap_or(u64::MAX),
                    "Cloudflare call put off: no budget slot soon enough"
                );
                return Err(CloudflareError::PutOff { wait: put_off.wait });
            }
        }
        let started = tokio::time::Instant::now();
        let (method, suffix) = match operation {
            Operation::Get => (Method::GET, ""),
            Operation::Update => (Method::PUT, ""),
            Operation::Rotate => (Method::POST, "/rotate"),
        };
        let url = format!(
            "{}/accounts/{account_id}/access/keys{suffix}",
            self.base_url
        );
        let mut request = credentials.apply(self.http.request(method, url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                self.observer.request(operation, None, started.elapsed());
                return Err(transport_error(err));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let served_at = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        let body = read_capped(response).await;
        self.observer
            .request(operation, Some(status.as_u16()), started.elapsed());
        let (bytes, truncated) = body?;
        let result = parse_response(status.as_u16(), retry_after.as_deref(), &bytes, truncated)
            .map(|config| AccountKeyConfig {
                served_at,
                ..config
            });
        if let Err(CloudflareError::RateLimited { retry_after }) = &result {
            budget.block_for(*retry_after);
        }
        debug!(
            operation = operation.as_str(),
            account_id,
            status = status.as_u16(),
            ok = result.is_ok(),
            "Cloudflare call"
        );
        result
    }
}

/// Reads at most [`MAX_BODY_BYTES`]; the rest is left unread.
async fn read_capped(mut response: reqwest::Response) -> Result<(Vec<u8>, bool), CloudflareError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

fn transport_error(err: reqwest::Error) -> CloudflareError {
    let mut kind = if err.is_timeout() {
        TransportKind::Timeout
    } else if err.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    // No URL (it is ours anyway) and no headers: reqwest never prints those.
    // reqwest's own text is only "error sending request"; the causes below it
    // say what failed (refused, reset, which certificate problem).
    let err = err.without_url();
    let mut detail = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(current) = cause {
        if is_certificate_error(current) {
            kind = TransportKind::Tls;
        }
        let text = current.to_string();
        if !detail.ends_with(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        cause = current.source();
    }
    if kind == TransportKind::Tls {
        detail.push_str(
            " (behind a TLS-inspecting proxy, give the operator its CA: SSL_CERT_FILE or SSL_CERT_DIR)",
        );
    }
    CloudflareError::Transport {
        kind,
        detail,
        attempts: 1,
    }
}

/// Whether a cause is rustls refusing the peer's certificate: directly, or
/// inside the `io::Error`s the TLS stream and the connector wrap it in (whose
/// `source()` skips the payload, so it is unwrapped by hand).
fn is_certificate_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = cause;
    // Two wrappings in reqwest 0.13 (connector, then tokio-rustls); a few more allowed.
    for _ in 0..4 {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => current = inner,
            None => return false,
        }
    }
    false
}
