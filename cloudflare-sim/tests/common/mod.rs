//! Shared harness for the integration tests: starts a simulator on
//! 127.0.0.1:0 and drives it over plain HTTP.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::time::Duration;

use keyrotor_cloudflare_sim::{
    AccountSeed, CredentialSeed, RateLimitConfig, RunningSimulator, SimConfig, Simulator,
};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// An account with Access keys, 42-day interval.
pub const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
/// A second account, for scoped credentials.
pub const OTHER_ACCOUNT: &str = "fedcba9876543210fedcba9876543210";
/// An account without Access keys.
pub const DISABLED_ACCOUNT: &str = "00000000000000000000000000000000";

pub const TOKEN: &str = "tok-read-write-SECRET-1";
pub const SCOPED_TOKEN: &str = "tok-scoped-SECRET-2";
pub const READ_ONLY_TOKEN: &str = "tok-read-only-SECRET-3";
pub const API_KEY: &str = "globalkey-SECRET-4";
pub const EMAIL: &str = "secret-person@example.com";

/// The configuration most tests start from.
pub fn config() -> SimConfig {
    SimConfig {
        accounts: vec![
            AccountSeed::new(ACCOUNT),
            AccountSeed::new(OTHER_ACCOUNT).with_interval(90),
            AccountSeed::new(DISABLED_ACCOUNT).disabled(),
        ],
        credentials: vec![
            CredentialSeed::token("ci", TOKEN),
            CredentialSeed::token("scoped", SCOPED_TOKEN).for_accounts([OTHER_ACCOUNT]),
            CredentialSeed::token("reader", READ_ONLY_TOKEN).read_only(),
            CredentialSeed::global_key("legacy", API_KEY, EMAIL),
        ],
        rate_limit: RateLimitConfig::default(),
        timestamps: Default::default(),
    }
}

/// A served simulator and a client for it.
pub struct Harness {
    pub running: RunningSimulator,
    pub http: reqwest::Client,
}

/// One HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON; `Value::Null` if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// `errors[0].code` of a failure envelope.
    pub fn code(&self) -> Option<u64> {
        self.json()["errors"][0]["code"].as_u64()
    }

    /// Codes of `errors[0].error_chain`.
    pub fn chain(&self) -> Vec<u64> {
        self.json()["errors"][0]["error_chain"]
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .filter_map(|link| link["code"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

/// Headers sending a bearer token.
pub fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// Headers sending a global key and email.
pub fn global_key(key: &str, email: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-auth-key", key.to_owned()),
        ("x-auth-email", email.to_owned()),
    ]
}

/// Starts the common configuration.
pub async fn start() -> Harness {
    start_with(config()).await
}

/// A plain HTTP client. In a workspace build reqwest carries the operator's
/// `rustls-no-provider` feature and needs a crypto provider even for plain HTTP;
/// `Err` from `install_default` only means one is installed already.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("plain HTTP client builds")
}

/// Starts a given configuration.
pub async fn start_with(config: SimConfig) -> Harness {
    let running = Simulator::new(config)
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator binds 127.0.0.1:0");
    Harness {
        running,
        http: http_client(),
    }
}

impl Harness {
    pub fn sim(&self) -> &Simulator {
        self.running.simulator()
    }

    /// URL of the key endpoint of an account.
    pub fn keys_url(&self, account: &str) -> String {
        format!("{}/accounts/{account}/access/keys", self.running.base_url())
    }

    /// URL of the rotate endpoint of an account.
    pub fn rotate_url(&self, account: &str) -> String {
        format!("{}/rotate", self.keys_url(account))
    }

    /// URL below `/__sim`.
    pub fn control_url(&self, rest: &str) -> String {
        format!("{}{rest}", self.running.control_url())
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&str>,
    ) -> Answer {
        let mut request = self.http.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("simulator answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body readable");
        Answer {
            status,
            headers,
            text,
        }
    }

    /// `GET .../access/keys` with the read-write token.
    pub async fn get_keys(&self, account: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            &self.keys_url(account),
            &bearer(TOKEN),
            None,
        )
        .await
    }

    /// `PUT .../access/keys` with a raw body and the read-write token.
    pub async fn put_keys(&self, account: &str, body: &str) -> Answer {
        self.send(
            reqwest::Method::PUT,
            &self.keys_url(account),
            &bearer(TOKEN),
            Some(body),
        )
        .await
    }

    /// `POST .../access/keys/rotate` with the read-write token.
    pub async fn rotate(&self, account: &str) -> Answer {
        self.send(
            reqwest::Method::POST,
            &self.rotate_url(account),
            &bearer(TOKEN),
            None,
        )
        .await
    }

    /// A control call with an optional JSON body.
    pub async fn control(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|value| value.to_string());
        self.send(method, &self.control_url(rest), &[], body.as_deref())
            .await
    }
}
