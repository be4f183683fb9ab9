//! A real etcd and kube-apiserver on loopback, started the way
//! controller-runtime's envtest does, for integration tests and the local dev
//! cluster (`hack/dev-cluster.sh`).
//!
//! Tests usually call [`shared`] and work in a fresh namespace:
//!
//! ```no_run
//! # async fn example() -> Result<(), keyrotor_testenv::TestEnvError> {
//! let plane = keyrotor_testenv::shared().await;
//! let namespace = plane.create_namespace("rotation").await?;
//! let client = plane.admin_client().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod control_plane;
mod crds;
pub mod dev_cluster;
mod error;
mod kubeconfig;
mod lifeline;
pub mod node;
mod pki;
mod ports;
mod processes;
mod readiness;
mod server;
mod shared;
mod tools;

pub use control_plane::{ControlPlane, StartOptions};
pub use error::TestEnvError;
pub use kubeconfig::client_from_kubeconfig;
pub use shared::shared;
pub use tools::{TOOLS_DIR_ENV, locate_tools, workspace_root};
