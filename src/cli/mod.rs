//! Command-line interface of the `keyrotor` binary.

mod account;
mod api_url;
mod probe;
mod run;

use clap::{Parser, Subcommand};

pub use account::AccountCommand;
pub use probe::{ProbeArgs, ProbeError};
pub use run::{LogFormat, MetricsAuth, RunArgs};

/// keyrotor: keeps Cloudflare Access signing-key rotation as manifests say.
#[derive(Debug, Parser)]
#[command(name = "keyrotor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the AccessKeyPolicy CustomResourceDefinition as YAML.
    Crd,
    /// Talk to the Cloudflare API directly (for checks and the demo).
    #[command(subcommand)]
    Account(AccountCommand),
    /// GET the operator's endpoints (/readyz, /metrics) and fail unless each
    /// answers 2xx: the chart's `helm test` pod.
    Probe(ProbeArgs),
}
