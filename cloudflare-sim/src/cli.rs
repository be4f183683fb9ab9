//! Command-line flags of the `cloudflare-sim` binary, each also read from a
//! `CLOUDFLARE_SIM_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{
    AccountSeed, ConfigError, CredentialSeed, SimConfig, parse_account_arg, parse_token_arg,
};
use crate::timestamps::{OffsetStyle, Precision};

/// A local stand-in for Cloudflare's Access key configuration API.
#[derive(Debug, Clone, Parser)]
#[command(name = "cloudflare-sim", version, about)]
pub struct Cli {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "CLOUDFLARE_SIM_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    /// JSON config file with accounts, credentials and rate limit.
    #[arg(long, env = "CLOUDFLARE_SIM_CONFIG")]
    pub config: Option<PathBuf>,

    /// Account to create, ID or ID=DAYS (default 42 days, last rotated now); repeatable.
    #[arg(
        long = "account",
        value_name = "ID[=DAYS]",
        env = "CLOUDFLARE_SIM_ACCOUNT",
        value_delimiter = ',',
        value_parser = parse_account_arg
    )]
    pub accounts: Vec<AccountSeed>,

    /// API token to accept, ID=SECRET, allowed on every account; repeatable.
    #[arg(
        long = "token",
        value_name = "ID=SECRET",
        env = "CLOUDFLARE_SIM_TOKEN",
        value_delimiter = ',',
        value_parser = parse_token_arg,
        hide_env_values = true
    )]
    pub tokens: Vec<CredentialSeed>,

    /// Requests allowed per credential per window (default 1200).
    #[arg(long, env = "CLOUDFLARE_SIM_RATE_LIMIT")]
    pub rate_limit: Option<u32>,

    /// Rate-limit window and block length in seconds (default 300).
    #[arg(long, env = "CLOUDFLARE_SIM_RATE_WINDOW", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_window: Option<u64>,

    /// Fractional digits of `last_key_rotation_at` (default micros, as Cloudflare's example).
    #[arg(long, env = "CLOUDFLARE_SIM_TIMESTAMP_PRECISION", value_enum)]
    pub timestamp_precision: Option<Precision>,

    /// UTC offset style of `last_key_rotation_at` (default z).
    #[arg(long, env = "CLOUDFLARE_SIM_TIMESTAMP_OFFSET", value_enum)]
    pub timestamp_offset: Option<OffsetStyle>,
}

impl Cli {
    /// The configuration: the file if given, then flags on top (a flag's
    /// account or token replaces the file's with the same id).
    pub fn to_config(&self) -> Result<SimConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => SimConfig::from_file(path)?,
            None => SimConfig::default(),
        };
        for account in &self.accounts {
            config.put_account(account.clone());
        }
        for token in &self.tokens {
            config.put_credential(token.clone());
        }
        if let Some(limit) = self.rate_limit {
            config.rate_limit.limit = limit;
        }
        if let Some(seconds) = self.rate_window {
            config.rate_limit.window = Duration::from_secs(seconds);
        }
        if let Some(precision) = self.timestamp_precision {
            config.timestamps.precision = precision;
        }
        if let Some(offset) = self.timestamp_offset {
            config.timestamps.offset = offset;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_the_config() -> Result<(), Box<dyn std::error::Error>> {
        let cli = Cli::try_parse_from([
            "cloudflare-sim",
            "--listen",
            "127.0.0.1:0",
            "--account",
            "a1",
            "--account",
            "a2=90",
            "--token",
            "ci=secret",
            "--rate-limit",
            "3",
            "--rate-window",
            "60",
            "--timestamp-precision",
            "alternating",
            "--timestamp-offset",
            "numeric",
        ])?;
        let config = cli.to_config()?;
        assert_eq!(cli.listen.port(), 0);
        assert_eq!(
            config.accounts,
            vec![
                AccountSeed::new("a1"),
                AccountSeed::new("a2").with_interval(90)
            ]
        );
        assert_eq!(
            config.credentials,
            vec![CredentialSeed::token("ci", "secret")]
        );
        assert_eq!(config.rate_limit.limit, 3);
        assert_eq!(config.rate_limit.window, Duration::from_secs(60));
        assert_eq!(config.timestamps.precision, Precision::Alternating);
        assert_eq!(config.timestamps.offset, OffsetStyle::Numeric);
        Ok(())
    }

    #[test]
    fn defaults_listen_on_8787_with_cloudflare_budget() -> Result<(), Box<dyn std::error::Error>> {
        let cli = Cli::try_parse_from(["cloudflare-sim"])?;
        assert_eq!(cli.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(cli.to_config()?, SimConfig::default());
        Ok(())
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(Cli::try_parse_from(["cloudflare-sim", "--token", "nosecret"]).is_err());
        assert!(Cli::try_parse_from(["cloudflare-sim", "--account", "a=abc"]).is_err());
        assert!(Cli::try_parse_from(["cloudflare-sim", "--rate-window", "0"]).is_err());
        assert!(Cli::try_parse_from(["cloudflare-sim", "--timestamp-precision", "nanos"]).is_err());
    }
}
