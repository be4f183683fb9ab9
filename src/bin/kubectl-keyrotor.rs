//! `kubectl-keyrotor`: the kubectl plugin binary (`kubectl keyrotor ...` once
//! on PATH). Wiring only; the work lives in `keyrotor::plugin`.

use std::process::ExitCode;

use clap::Parser;
use keyrotor::plugin::{PluginCli, run};

#[tokio::main]
async fn main() -> ExitCode {
    ExitCode::from(run(PluginCli::parse()).await.code())
}
