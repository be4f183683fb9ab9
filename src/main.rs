//! The `keyrotor` binary: wiring only; the work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use keyrotor::cli::{Cli, Command};

/// jemalloc keeps the operator's resident memory close to what it uses: with
/// glibc's malloc, bursts of concurrent reconciles leave fragmented arenas behind.
/// `--features system-allocator` leaves it out, for heap profilers that wrap
/// the C library's malloc (heaptrack; docs/benchmarks.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One thread runs every task: the controller's reconciles, the watches, the
/// HTTP connections and the servers. The operator waits on the network nearly
/// all the time; with worker threads its reconciles (inside the controller's
/// stream) and the connection tasks they wait on woke each other across
/// threads, and that hand-over (scheduler and context switches) was a fifth
/// of its CPU at 10,000 policies (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match args.validate() {
            Err(err) => {
                eprintln!("keyrotor: {err}");
                ExitCode::from(2)
            }
            Ok(()) => match args.run().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("keyrotor: {err:#}");
                    ExitCode::FAILURE
                }
            },
        },
        Command::Crd => match keyrotor::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("keyrotor: cannot render the CRD: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Account(command) => match command.run().await {
            Ok(config) => {
                println!(
                    "keyRotationIntervalDays: {}\ndaysUntilNextRotation: {}\nlastKeyRotationAt: {}",
                    config
                        .key_rotation_interval_days
                        .map_or("unknown".to_owned(), |d| d.to_string()),
                    config
                        .days_until_next_rotation
                        .map_or("unknown".to_owned(), |d| d.to_string()),
                    config
                        .last_key_rotation_at
                        .map_or("never".to_owned(), |t| t.to_string()),
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("keyrotor: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Probe(args) => match args.run().await {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("keyrotor probe: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
