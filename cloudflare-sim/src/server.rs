//! Serving a [`Simulator`] over HTTP on a real socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::simulator::Simulator;

/// How long shutdown waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Simulator {
    /// Binds `addr` (port 0 picks a free port), serves the simulator in a
    /// background task and returns at once.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningSimulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = self.router();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender means the handle is gone: stop too.
                    let _ = stopped.await;
                })
                .await
        });
        tracing::debug!(%addr, "simulator serving");
        Ok(RunningSimulator {
            addr,
            simulator: self,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A simulator serving on a socket. Stops on [`RunningSimulator::shutdown`]
/// or when dropped.
#[derive(Debug)]
pub struct RunningSimulator {
    addr: SocketAddr,
    simulator: Simulator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the simulated API, `http://IP:PORT/client/v4`, to use
    /// where a client would use `https://api.cloudflare.com/client/v4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// Base URL of the control API, `http://IP:PORT/__sim`.
    pub fn control_url(&self) -> String {
        format!("http://{}/__sim", self.addr)
    }

    /// The simulator being served, to steer it directly.
    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }

    /// Stops accepting requests, lets hanging requests go, and waits (up
    /// to a few seconds) for open connections to finish.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => tracing::warn!(%error, "simulator server failed"),
                Ok(Err(error)) => tracing::warn!(%error, "simulator server task failed"),
                Err(_) => task.abort(),
            }
        }
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may already be gone; nothing to tell it then.
            let _ = stop.send(());
            self.simulator.release_hangs();
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
