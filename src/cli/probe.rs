//! `keyrotor probe URL...`: GETs the operator's own endpoints and fails unless
//! each answers 2xx. The chart's `helm test` pod runs it from the operator's
//! image, which has no shell or curl (and on air-gapped nodes no other image
//! may be pullable).

use std::path::PathBuf;

use clap::Args;

use crate::crd::GoDuration;

/// What to probe and how.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URLs to GET, in order; each must answer 2xx.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Send the token in this file as `Authorization: Bearer` (e.g. the pod's
    /// ServiceAccount token, for /metrics with `--metrics-auth=kubernetes`).
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
    /// Accept any server certificate (the operator's default one is
    /// self-signed). The token is then sent to whoever answers at the URL.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Time allowed for each request.
    #[arg(long, default_value = "10s")]
    pub timeout: GoDuration,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The token file could not be read.
    #[error("cannot read the bearer token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The request got no answer.
    #[error("GET {url}: {detail}")]
    Request {
        /// The URL.
        url: String,
        /// reqwest's error with its causes (the TLS or connection error is
        /// only in the chain: "error sending request" alone says nothing).
        detail: String,
    },
    /// The answer was not 2xx.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
}

impl ProbeArgs {
    /// GETs every URL; one line per answer on success.
    pub async fn run(&self) -> Result<Vec<String>, ProbeError> {
        let token = match &self.bearer_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ProbeError::TokenFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        // reqwest is built without a crypto provider of its own (src/cloudflare/client.rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(self.timeout.as_duration())
            .tls_danger_accept_invalid_certs(self.insecure_skip_tls_verify)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(ProbeError::Client)?;
        let mut lines = Vec::new();
        for url in &self.urls {
            let mut request = client.get(url);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .map_err(|err| request_error(url, &err))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ProbeError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                });
            }
            let body = response
                .bytes()
                .await
                .map_err(|err| request_error(url, &err))?;
            lines.push(format!(
                "GET {url}: HTTP {} ({} bytes)",
                status.as_u16(),
                body.len()
            ));
        }
        Ok(lines)
    }
}

/// A request error with every cause in its chain, joined by ": ".
fn request_error(url: &str, err: &reqwest::Error) -> ProbeError {
    let mut detail = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(err) = cause {
        detail.push_str(": ");
        detail.push_str(&err.to_string());
        cause = err.source();
    }
    ProbeError::Request {
        url: url.to_owned(),
        detail,
    }
}
