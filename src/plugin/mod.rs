//! `kubectl keyrotor`: a kubectl plugin that asks the operator for on-demand
//! rotations (`rotate`) and shows the policies' rotation state (`status`).
//!
//! The plugin only writes the `keyrotor.dev/rotate-requested-at` and
//! `keyrotor.dev/rotate-force` annotations (a forced request sets both to the
//! same value) and reads status; the operator does
//! the rotation, so the exactly-once guarantee stays the operator's.

mod args;
mod connect;
mod error;
mod report;
mod request;
mod rotate;
mod selection;
mod status;
mod wait;

pub use args::{ConnectionArgs, PluginCli, PluginCommand, RotateArgs, StatusArgs};
pub use error::PluginError;
pub use report::{ExitStatus, PolicyKey, RotateReport, RotateResult};
pub use request::{RequestClock, rotate_patch};
pub use status::{StatusRow, render as render_status_table};

/// Runs one plugin command: results on stdout, errors on stderr.
pub async fn run(cli: PluginCli) -> ExitStatus {
    match execute(cli).await {
        Ok(status) => status,
        Err(err) => {
            eprintln!("error: {err}");
            ExitStatus::Error
        }
    }
}

async fn execute(cli: PluginCli) -> Result<ExitStatus, PluginError> {
    let connection = connect::connect(&cli.connection).await?;
    match cli.command {
        PluginCommand::Rotate(args) => {
            let reports = rotate::rotate(&connection, &args).await?;
            for report in &reports {
                println!("{}", report.line());
            }
            Ok(ExitStatus::worst(
                reports.iter().map(|r| r.result.exit_status()),
            ))
        }
        PluginCommand::Status(args) => {
            match status::status(&connection, &args).await? {
                status::StatusOutput::Table(table) => print!("{table}"),
                status::StatusOutput::Empty(note) => eprintln!("{note}"),
            }
            Ok(ExitStatus::Success)
        }
    }
}
