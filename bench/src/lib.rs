//! The keyrotor benchmark: a real control plane, the Cloudflare simulator with
//! a set round-trip latency, and the operator as a release-build process.
//! Each figure is printed beside its floor, measured in the same run.

#![forbid(unsafe_code)]

pub mod floors;
pub mod operator;
pub mod report;
pub mod stages;
pub mod world;

use std::{path::PathBuf, time::Duration};

pub use report::Report;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Policy counts for cold convergence and memory.
    pub sizes: Vec<usize>,
    /// Credentials (Secrets with distinct tokens) the policies are spread over.
    pub credentials: usize,
    /// Round-trip latency the simulator adds to every call.
    pub rtt: Duration,
    /// The operator's `--concurrency`.
    pub concurrency: u16,
    /// Rotate requests for the latency figure.
    pub rotations: usize,
    /// Drift interval of the policies in the steady-state stage.
    pub steady_interval: Duration,
    /// Drift checks to watch in steady state.
    pub steady_checks: u32,
    /// Unrelated Secrets for the memory figure (0 to skip).
    pub noise_secrets: usize,
    /// How long to watch the single-credential budget stage (zero to skip).
    pub budget_window: Duration,
    /// Only cold convergence and memory at each size.
    pub convergence_only: bool,
    /// The operator binary.
    pub operator: PathBuf,
    /// A second operator run through the same stages in turn (`--peer`).
    pub peer: Option<PathBuf>,
}

impl BenchConfig {
    /// The full run of docs/benchmarks.md.
    pub fn full(operator: PathBuf) -> Self {
        Self {
            sizes: vec![100, 1_000, 10_000],
            credentials: 100,
            rtt: Duration::from_millis(50),
            concurrency: 64,
            rotations: 200,
            steady_interval: Duration::from_secs(20),
            steady_checks: 3,
            noise_secrets: 10_000,
            budget_window: Duration::from_secs(60),
            convergence_only: false,
            operator,
            peer: None,
        }
    }

    /// The smoke run of the test command (N = 50).
    pub fn smoke(operator: PathBuf) -> Self {
        Self {
            sizes: vec![50],
            credentials: 50,
            rtt: Duration::from_millis(50),
            concurrency: 16,
            rotations: 20,
            steady_interval: Duration::from_secs(5),
            steady_checks: 2,
            noise_secrets: 200,
            budget_window: Duration::from_secs(15),
            convergence_only: false,
            operator,
            peer: None,
        }
    }
}

/// Runs every stage and returns the report.
pub async fn run(config: &BenchConfig) -> anyhow::Result<Report> {
    stages::run_all(config).await
}
