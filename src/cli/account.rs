//! `keyrotor account ...`: one Cloudflare call from the command line.

use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::cloudflare::{
    AccountKeyConfig, BudgetRegistry, ClientSettings, CloudflareClient, Credentials,
    DEFAULT_BASE_URL,
};

/// Direct Cloudflare calls.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Show the account's Access key configuration.
    Get(AccountArgs),
    /// Set the rotation interval in days.
    SetInterval {
        /// Common options.
        #[command(flatten)]
        account: AccountArgs,
        /// New interval, 21 to 365 days.
        #[arg(long)]
        days: i64,
    },
    /// Rotate the signing key now.
    Rotate(AccountArgs),
}

/// Which account, where, and with which credentials (from the environment only).
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Cloudflare account id.
    #[arg(long, env = "KEYROTOR_ACCOUNT_ID")]
    pub account_id: String,
    /// Cloudflare API base URL.
    #[arg(long, env = "KEYROTOR_CLOUDFLARE_API_URL", default_value = DEFAULT_BASE_URL)]
    pub api_url: String,
}

/// Why a direct call could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AccountCommandError {
    /// Neither a token nor a key and email in the environment.
    #[error("set CLOUDFLARE_API_TOKEN, or CLOUDFLARE_API_KEY and CLOUDFLARE_EMAIL")]
    NoCredentials,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Cloudflare said no.
    #[error(transparent)]
    Cloudflare(#[from] crate::cloudflare::CloudflareError),
}

impl AccountCommand {
    /// Runs the call and returns the account's configuration.
    pub async fn run(&self) -> Result<AccountKeyConfig, AccountCommandError> {
        let args = match self {
            Self::Get(a) | Self::Rotate(a) | Self::SetInterval { account: a, .. } => a,
        };
        let credentials = credentials_from_env()?;
        let settings = ClientSettings {
            base_url: args.api_url.clone(),
            ..ClientSettings::default()
        };
        let client = CloudflareClient::new(&settings, Arc::new(BudgetRegistry::default()))?;
        let config = match self {
            Self::Get(a) => client.get_config(&credentials, &a.account_id).await?,
            Self::SetInterval { account, days } => {
                client
                    .update_interval(&credentials, &account.account_id, *days)
                    .await?
            }
            Self::Rotate(a) => client.rotate(&credentials, &a.account_id).await?,
        };
        Ok(config)
    }
}

fn credentials_from_env() -> Result<Credentials, AccountCommandError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("CLOUDFLARE_API_TOKEN"),
        var("CLOUDFLARE_API_KEY"),
        var("CLOUDFLARE_EMAIL"),
    ) {
        (Some(token), None, None) => Ok(Credentials::api_token(token)),
        (None, Some(key), Some(email)) => Ok(Credentials::global_key(key, email)),
        _ => Err(AccountCommandError::NoCredentials),
    }
}
