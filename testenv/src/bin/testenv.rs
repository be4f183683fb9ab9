//! `testenv up|env|down --dir DIR`: a detached control plane for local
//! development; `hack/dev-cluster.sh` wraps it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyrotor_testenv::{TestEnvError, dev_cluster};

#[derive(Parser)]
#[command(about = "Runs a local etcd + kube-apiserver that outlives this command")]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Start the control plane in DIR, install the CRDs and return once they are Established.
    Up {
        /// Directory for the kubeconfig, PKI, etcd data, logs, pids and env files.
        #[arg(long)]
        dir: PathBuf,
        /// CRD files or directories of CRD files to install.
        #[arg(long, num_args = 1..)]
        crds: Vec<PathBuf>,
    },
    /// Print `export` lines for KUBECONFIG and kubectl's PATH (use with eval).
    Env {
        /// The directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop the control plane in DIR and remove DIR.
    Down {
        /// The directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testenv: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(action: Action) -> Result<(), TestEnvError> {
    match action {
        Action::Up { dir, crds } => {
            let plane = dev_cluster::up(&dir, crds).await?;
            eprintln!(
                "testenv: control plane up at {}; kubeconfig {}",
                plane.server_url(),
                plane.kubeconfig_path().display()
            );
            plane.detach()
        }
        Action::Env { dir } => {
            print!("{}", dev_cluster::env(&dir)?);
            Ok(())
        }
        Action::Down { dir } => dev_cluster::down(&dir),
    }
}
