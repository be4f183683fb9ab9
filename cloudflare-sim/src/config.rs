//! What the simulator starts from: accounts, credentials and the rate limit.
//!
//! The same types are read from the JSON config file, built from command-line
//! flags, and used by other crates' tests through the library API.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::timestamps::TimestampStyle;

/// Interval an account gets when nobody says otherwise: Cloudflare's six weeks.
pub const DEFAULT_INTERVAL_DAYS: i64 = 42;

/// Cloudflare's documented budget: 1200 requests per five minutes per credential.
pub const DEFAULT_RATE_LIMIT: u32 = 1200;

/// Window of [`DEFAULT_RATE_LIMIT`], in seconds.
pub const DEFAULT_RATE_WINDOW_SECONDS: u64 = 300;

/// Everything the simulator is seeded with; [`crate::Simulator::reset`] returns to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimConfig {
    /// Accounts that exist at start.
    pub accounts: Vec<AccountSeed>,
    /// Credentials that can authenticate at start.
    pub credentials: Vec<CredentialSeed>,
    /// Per-credential request budget.
    pub rate_limit: RateLimitConfig,
    /// The form of `last_key_rotation_at` in answers.
    pub timestamps: TimestampStyle,
}

impl SimConfig {
    /// Reads and checks a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: SimConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        config.check()?;
        Ok(config)
    }

    /// Rejects seeds the simulator could not run: an interval below one day
    /// would make automatic rotation meaningless.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self
            .accounts
            .iter()
            .find(|account| account.key_rotation_interval_days < 1)
        {
            Some(account) => Err(ConfigError::IntervalTooShort {
                id: account.id.clone(),
                days: account.key_rotation_interval_days,
            }),
            None => Ok(()),
        }
    }

    /// Adds an account, replacing one with the same id.
    pub fn put_account(&mut self, seed: AccountSeed) {
        self.accounts.retain(|account| account.id != seed.id);
        self.accounts.push(seed);
    }

    /// Adds a credential, replacing one with the same id.
    pub fn put_credential(&mut self, seed: CredentialSeed) {
        self.credentials
            .retain(|credential| credential.id != seed.id);
        self.credentials.push(seed);
    }
}

/// One account's Access key configuration at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSeed {
    /// Cloudflare account id (real ones are 32 lowercase hex characters; any string works here).
    pub id: String,
    /// Days between automatic rotations.
    #[serde(default = "default_interval")]
    pub key_rotation_interval_days: i64,
    /// Last rotation; `None` means "now" when the account is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key_rotation_at: Option<Timestamp>,
    /// Whether Access keys exist for the account; when false the API answers 12109.
    #[serde(default = "enabled")]
    pub access_keys_enabled: bool,
}

impl AccountSeed {
    /// An enabled account with the default 42-day interval, last rotated "now".
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            key_rotation_interval_days: DEFAULT_INTERVAL_DAYS,
            last_key_rotation_at: None,
            access_keys_enabled: true,
        }
    }

    /// The same seed with another interval.
    pub fn with_interval(mut self, days: i64) -> Self {
        self.key_rotation_interval_days = days;
        self
    }

    /// The same seed with a given last rotation time.
    pub fn last_rotated_at(mut self, at: Timestamp) -> Self {
        self.last_key_rotation_at = Some(at);
        self
    }

    /// The same seed with Access keys disabled.
    pub fn disabled(mut self) -> Self {
        self.access_keys_enabled = false;
        self
    }
}

fn default_interval() -> i64 {
    DEFAULT_INTERVAL_DAYS
}

fn enabled() -> bool {
    true
}

/// The secret a credential authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSecret {
    /// An API token, sent as `Authorization: Bearer <token>`.
    Token(String),
    /// A legacy global API key, sent as `X-Auth-Key` with `X-Auth-Email`.
    GlobalKey {
        /// Value of `X-Auth-Key`.
        api_key: String,
        /// Value of `X-Auth-Email`.
        email: String,
    },
}

// Written by hand so that secrets never reach a log line through `{:?}`.
impl fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::GlobalKey { .. } => f.write_str("GlobalKey(<redacted>)"),
        }
    }
}

/// A credential the simulator accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CredentialEntry", into = "CredentialEntry")]
pub struct CredentialSeed {
    /// Name used in the request log and for rate limiting; never a secret.
    pub id: String,
    /// What the caller must send.
    pub secret: CredentialSecret,
    /// Accounts it may touch; empty means all.
    pub accounts: Vec<String>,
    /// When true, PUT and POST answer 10000 "Authentication error".
    pub read_only: bool,
}

impl CredentialSeed {
    /// An API token allowed on every account, read and write.
    pub fn token(id: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: CredentialSecret::Token(token.into()),
            accounts: Vec::new(),
            read_only: false,
        }
    }

    /// A global API key with its email, allowed on every account, read and write.
    pub fn global_key(
        id: impl Into<String>,
        api_key: impl Into<String>,
        email: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            secret: CredentialSecret::GlobalKey {
                api_key: api_key.into(),
                email: email.into(),
            },
            accounts: Vec::new(),
            read_only: false,
        }
    }

    /// The same credential limited to these accounts.
    pub fn for_accounts<I, S>(mut self, accounts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.accounts = accounts.into_iter().map(Into::into).collect();
        self
    }

    /// The same credential, allowed to read only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// The fields of a credential as JSON, without its id: the body of
/// `PUT /__sim/credentials/{id}` and, with an id, an entry of the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CredentialFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default)]
    read_only: bool,
}

impl CredentialFields {
    /// Turns the JSON shape into a seed, insisting on exactly one kind of secret.
    pub(crate) fn into_seed(self, id: String) -> Result<CredentialSeed, ConfigError> {
        let secret = match (self.token, self.api_key, self.email) {
            (Some(token), None, None) => CredentialSecret::Token(token),
            (None, Some(api_key), Some(email)) => CredentialSecret::GlobalKey { api_key, email },
            (None, None, None) => return Err(ConfigError::MissingSecret { id }),
            (Some(_), _, _) => return Err(ConfigError::AmbiguousSecret { id }),
            (None, _, _) => return Err(ConfigError::IncompleteGlobalKey { id }),
        };
        Ok(CredentialSeed {
            id,
            secret,
            accounts: self.accounts,
            read_only: self.read_only,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CredentialEntry {
    id: String,
    #[serde(flatten)]
    fields: CredentialFields,
}

impl TryFrom<CredentialEntry> for CredentialSeed {
    type Error = ConfigError;

    fn try_from(entry: CredentialEntry) -> Result<Self, Self::Error> {
        entry.fields.into_seed(entry.id)
    }
}

impl From<CredentialSeed> for CredentialEntry {
    fn from(seed: CredentialSeed) -> Self {
        let (token, api_key, email) = match seed.secret {
            CredentialSecret::Token(token) => (Some(token), None, None),
            CredentialSecret::GlobalKey { api_key, email } => (None, Some(api_key), Some(email)),
        };
        Self {
            id: seed.id,
            fields: CredentialFields {
                token,
                api_key,
                email,
                accounts: seed.accounts,
                read_only: seed.read_only,
            },
        }
    }
}

/// How many requests one credential may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RateLimitEntry", into = "RateLimitEntry")]
pub struct RateLimitConfig {
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length; also how long a credential stays blocked after going over.
    pub window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            limit: DEFAULT_RATE_LIMIT,
            window: Duration::from_secs(DEFAULT_RATE_WINDOW_SECONDS),
        }
    }
}

/// JSON shape of [`RateLimitConfig`]: `{"limit": N, "windowSeconds": S}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RateLimitEntry {
    limit: u32,
    window_seconds: u64,
}

impl TryFrom<RateLimitEntry> for RateLimitConfig {
    type Error = ConfigError;

    fn try_from(entry: RateLimitEntry) -> Result<Self, Self::Error> {
        if entry.window_seconds == 0 {
            return Err(ConfigError::EmptyWindow);
        }
        Ok(Self {
            limit: entry.limit,
            window: Duration::from_secs(entry.window_seconds),
        })
    }
}

impl From<RateLimitConfig> for RateLimitEntry {
    fn from(config: RateLimitConfig) -> Self {
        Self {
            limit: config.limit,
            window_seconds: config.window.as_secs(),
        }
    }
}

/// Parses `--account ID[=DAYS]`.
pub fn parse_account_arg(arg: &str) -> Result<AccountSeed, ConfigError> {
    let (id, days) = match arg.split_once('=') {
        Some((id, days)) => {
            let days = days
                .trim()
                .parse::<i64>()
                .map_err(|_| ConfigError::BadAccountArg(arg.to_owned()))?;
            (id, days)
        }
        None => (arg, DEFAULT_INTERVAL_DAYS),
    };
    let id = id.trim();
    if id.is_empty() {
        return Err(ConfigError::BadAccountArg(arg.to_owned()));
    }
    if days < 1 {
        return Err(ConfigError::IntervalTooShort {
            id: id.to_owned(),
            days,
        });
    }
    Ok(AccountSeed::new(id).with_interval(days))
}

/// Parses `--token ID=SECRET`.
pub fn parse_token_arg(arg: &str) -> Result<CredentialSeed, ConfigError> {
    match arg.split_once('=') {
        Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
            Ok(CredentialSeed::token(id.trim(), secret))
        }
        // The argument holds a secret, so the error names only its shape.
        _ => Err(ConfigError::BadTokenArg),
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not the expected JSON.
    #[error("cannot parse config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A credential has neither a token nor a global key.
    #[error("credential {id}: give either \"token\" or \"apiKey\" with \"email\"")]
    MissingSecret {
        /// The credential.
        id: String,
    },
    /// A credential has both a token and a global key.
    #[error("credential {id}: give a token or a global key, not both")]
    AmbiguousSecret {
        /// The credential.
        id: String,
    },
    /// A global key without its email, or an email without its key.
    #[error("credential {id}: a global key needs both \"apiKey\" and \"email\"")]
    IncompleteGlobalKey {
        /// The credential.
        id: String,
    },
    /// An account interval below one day.
    #[error("account {id}: keyRotationIntervalDays must be at least 1, got {days}")]
    IntervalTooShort {
        /// The account.
        id: String,
        /// The interval given.
        days: i64,
    },
    /// A rate-limit window of zero seconds.
    #[error("rate limit windowSeconds must be at least 1")]
    EmptyWindow,
    /// `--account` not in the form `ID[=DAYS]`.
    #[error("--account expects ID[=DAYS], got {0:?}")]
    BadAccountArg(String),
    /// `--token` not in the form `ID=SECRET`.
    #[error("--token expects ID=SECRET")]
    BadTokenArg,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_shape_parses_with_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let config: SimConfig = serde_json::from_str(
            r#"{
                "accounts": [
                    {"id": "a1", "keyRotationIntervalDays": 30},
                    {"id": "a2", "keyRotationIntervalDays": 90,
                     "lastKeyRotationAt": "2026-01-02T03:04:05.5Z", "accessKeysEnabled": false}
                ],
                "credentials": [
                    {"id": "ci", "token": "t0k"},
                    {"id": "legacy", "apiKey": "k", "email": "e@example.com",
                     "accounts": ["a1"], "readOnly": true}
                ],
                "rateLimit": {"limit": 3, "windowSeconds": 60}
            }"#,
        )?;
        assert_eq!(config.accounts[0], AccountSeed::new("a1").with_interval(30));
        assert!(!config.accounts[1].access_keys_enabled);
        assert_eq!(
            config.accounts[1].last_key_rotation_at,
            Some("2026-01-02T03:04:05.5Z".parse()?)
        );
        assert_eq!(config.credentials[0], CredentialSeed::token("ci", "t0k"));
        assert_eq!(
            config.credentials[1],
            CredentialSeed::global_key("legacy", "k", "e@example.com")
                .for_accounts(["a1"])
                .read_only()
        );
        assert_eq!(config.rate_limit.limit, 3);
        assert_eq!(config.rate_limit.window, Duration::from_secs(60));
        Ok(())
    }

    #[test]
    fn empty_config_file_gets_the_cloudflare_budget() -> Result<(), serde_json::Error> {
        let config: SimConfig = serde_json::from_str("{}")?;
        assert_eq!(config.rate_limit, RateLimitConfig::default());
        assert_eq!(config.rate_limit.limit, 1200);
        assert_eq!(config.rate_limit.window, Duration::from_secs(300));
        Ok(())
    }

    #[test]
    fn credential_needs_exactly_one_complete_secret() {
        for body in [
            r#"{"id": "x"}"#,
            r#"{"id": "x", "token": "t", "apiKey": "k", "email": "e"}"#,
            r#"{"id": "x", "apiKey": "k"}"#,
            r#"{"id": "x", "email": "e"}"#,
        ] {
            assert!(
                serde_json::from_str::<CredentialSeed>(body).is_err(),
                "{body} should be rejected"
            );
        }
    }

    #[test]
    fn credential_round_trips_through_json() -> Result<(), serde_json::Error> {
        let seed = CredentialSeed::global_key("g", "k", "e").for_accounts(["a"]);
        let back: CredentialSeed = serde_json::from_value(serde_json::to_value(&seed)?)?;
        assert_eq!(back, seed);
        Ok(())
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!(
            "{:?} {:?}",
            CredentialSeed::token("ci", "super-secret-token"),
            CredentialSeed::global_key("g", "super-secret-key", "someone@example.com")
        );
        assert!(!text.contains("super-secret"), "{text}");
        assert!(!text.contains("someone@example.com"), "{text}");
    }

    #[test]
    fn zero_second_window_is_rejected() {
        assert!(
            serde_json::from_str::<RateLimitConfig>(r#"{"limit":1,"windowSeconds":0}"#).is_err()
        );
    }

    #[test]
    fn short_interval_in_file_is_rejected() {
        let config = SimConfig {
            accounts: vec![AccountSeed::new("a").with_interval(0)],
            ..SimConfig::default()
        };
        assert!(matches!(
            config.check(),
            Err(ConfigError::IntervalTooShort { days: 0, .. })
        ));
    }

    #[test]
    fn account_arg_takes_optional_days() -> Result<(), ConfigError> {
        assert_eq!(parse_account_arg("abc")?, AccountSeed::new("abc"));
        assert_eq!(
            parse_account_arg("abc=90")?,
            AccountSeed::new("abc").with_interval(90)
        );
        assert!(parse_account_arg("abc=x").is_err());
        assert!(parse_account_arg("=30").is_err());
        assert!(parse_account_arg("abc=0").is_err());
        Ok(())
    }

    #[test]
    fn token_arg_needs_id_and_secret() -> Result<(), ConfigError> {
        assert_eq!(
            parse_token_arg("ci=s3=cret")?,
            CredentialSeed::token("ci", "s3=cret")
        );
        assert!(parse_token_arg("ci").is_err());
        assert!(parse_token_arg("ci=").is_err());
        assert!(parse_token_arg("=secret").is_err());
        Ok(())
    }

    #[test]
    fn put_account_replaces_same_id() {
        let mut config = SimConfig::default();
        config.put_account(AccountSeed::new("a"));
        config.put_account(AccountSeed::new("a").with_interval(90));
        assert_eq!(
            config.accounts,
            vec![AccountSeed::new("a").with_interval(90)]
        );
    }
}
