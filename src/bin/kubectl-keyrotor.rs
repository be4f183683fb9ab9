//! `kubectl-keyrotor`: the kubectl plugin binary (`kubectl keyrotor ...` once
//! on PATH). Wiring only; the work lives in `keyrotor::plugin`.
//!
//! Called as `kubectl_complete-keyrotor WORDS...` (kubectl's plugin
//! completion convention) or `kubectl-keyrotor __complete WORDS...` it prints
//! completions instead; that path runs before any async runtime exists,
//! since the completion lookups run their own.

use std::process::ExitCode;

use clap::Parser;
use keyrotor::plugin::{PluginCli, complete, completion_request, run};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(words) = completion_request(&args) {
        let current_dir = std::env::current_dir().ok();
        print!("{}", complete(&words, current_dir.as_deref()).render());
        return ExitCode::SUCCESS;
    }
    let cli = PluginCli::parse_from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start-up: the tokio runtime starts");
    ExitCode::from(runtime.block_on(run(cli)).code())
}
