//! `cloudflare-sim`: serves the simulated Cloudflare API until SIGTERM or SIGINT.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use keyrotor_cloudflare_sim::{Cli, Simulator};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries only the "listening on" line scripts read.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cli.to_config().context("invalid configuration")?;
    let running = Simulator::new(config)
        .serve(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", running.addr())?;
    stdout.flush()?;
    drop(stdout);
    stop_signal().await?;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
