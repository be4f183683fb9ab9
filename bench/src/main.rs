//! `keyrotor-bench [--smoke] [--operator PATH] [--out DIR] [--sizes N,..]
//! [--convergence-only] [--peer PATH]`: runs the benchmark and writes `benchmark.md` and
//! `benchmark.json`. `KEYROTOR_BENCH_WRAP` runs the operator under a profiler
//! and `KEYROTOR_BENCH_DUMP` writes each stage's logs (docs/benchmarks.md).

use std::path::PathBuf;

use clap::Parser;
use keyrotor_bench::{BenchConfig, run};

/// Benchmark of the keyrotor operator.
#[derive(Debug, Parser)]
struct Args {
    /// Small run (N = 50), as in the test command.
    #[arg(long)]
    smoke: bool,
    /// The operator binary (a release build).
    #[arg(long, default_value = "target/release/keyrotor")]
    operator: PathBuf,
    /// Where to write benchmark.md and benchmark.json.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these policy counts (comma-separated), e.g. for profiling one stage.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Only cold convergence and memory at each size (no rotations, steady
    /// state, unrelated Secrets or budget stage): the quick loop for profiling.
    #[arg(long)]
    convergence_only: bool,
    /// A second operator binary (the same command line as keyrotor's), run
    /// through every stage in turn with keyrotor; the report sets both side by side.
    #[arg(long)]
    peer: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = if args.smoke {
        BenchConfig::smoke(args.operator)
    } else {
        BenchConfig::full(args.operator)
    };
    if !args.sizes.is_empty() {
        config.sizes = args.sizes;
    }
    if args.convergence_only {
        config.convergence_only = true;
    }
    config.peer = args.peer;
    let report = run(&config).await?;
    std::fs::create_dir_all(&args.out)?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("benchmark.md"), &markdown)?;
    std::fs::write(
        args.out.join("benchmark.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{markdown}");
    Ok(())
}
