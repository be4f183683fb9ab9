//! `kubectl keyrotor`: a kubectl plugin that asks the operator for on-demand
//! rotations (`rotate`) and shows the policies' rotation state (`status`),
//! with shell completion (`completion`, and kubectl's `kubectl_complete-keyrotor`).
//!
//! The plugin only writes the `keyrotor.dev/rotate-requested-at` and
//! `keyrotor.dev/rotate-force` annotations (a forced request sets both to the
//! same value) and reads status; the operator does
//! the rotation, so the exactly-once guarantee stays the operator's.

mod args;
mod complete;
mod connect;
mod describe;
mod error;
mod report;
mod request;
mod rotate;
mod selection;
mod status;
mod wait;

pub use args::{CompletionArgs, ConnectionArgs, PluginCli, PluginCommand, RotateArgs, StatusArgs};
pub use complete::{
    COMPLETE_COMMAND, COMPLETION_EXECUTABLE, Completions, Directive, complete, completion_request,
};
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
    if let PluginCommand::Completion(args) = &cli.command {
        use std::io::Write;
        std::io::stdout()
            .write_all(&complete::script(args.shell))
            .map_err(|err| PluginError::Output(err.to_string()))?;
        return Ok(ExitStatus::Success);
    }
    let connection = connect::connect(&cli.connection).await?;
    match cli.command {
        PluginCommand::Completion(_) => Ok(ExitStatus::Success),
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
                status::StatusOutput::Table(table) | status::StatusOutput::Detail(table) => {
                    print!("{table}")
                }
                status::StatusOutput::Empty(note) => eprintln!("{note}"),
            }
            Ok(ExitStatus::Success)
        }
    }
}
