//! One control plane per test binary.

use tokio::sync::OnceCell;

use crate::tools::workspace_root;
use crate::{ControlPlane, StartOptions};

/// The start result, failures included, so that one failed start fails every
/// test at once instead of each test trying again.
static SHARED: OnceCell<Result<ControlPlane, String>> = OnceCell::const_new();

/// The control plane shared by all tests of this test binary, started on first
/// use with the workspace's `crds/` directory installed.
///
/// It is never dropped (statics are not), so teardown relies on the lifeline
/// watchdog: when the test binary exits for any reason, including a panic or
/// SIGKILL, the watchdog kills etcd and kube-apiserver and removes the
/// directory. Give each test its own namespace ([`ControlPlane::create_namespace`])
/// and build clients per test ([`ControlPlane::admin_client`]).
///
/// # Panics
/// When the control plane cannot start; the message carries the server logs.
pub async fn shared() -> &'static ControlPlane {
    let started = SHARED
        .get_or_init(|| async {
            let opts = StartOptions {
                crds: vec![workspace_root().join("crds")],
                ..StartOptions::default()
            };
            ControlPlane::start(opts).await.map_err(|e| e.to_string())
        })
        .await;
    match started {
        Ok(plane) => plane,
        Err(e) => panic!("starting the shared test control plane: {e}"),
    }
}
