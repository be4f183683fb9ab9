//! Polling until something is ready, while watching that the servers live.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::TestEnvError;
use crate::processes::Processes;

/// Pause between two probes.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Upper bound for one probe, so a hung connection cannot eat the deadline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `probe` until it returns `Some`, a server dies, or `deadline` passes.
pub(crate) async fn wait_until<T, F, Fut>(
    what: &str,
    deadline: Instant,
    budget: Duration,
    processes: &Processes,
    mut probe: F,
) -> Result<T, TestEnvError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    loop {
        if let Some(exited) = processes.first_exited() {
            return Err(exited);
        }
        if let Ok(Some(value)) = tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(TestEnvError::Timeout {
                what: what.to_owned(),
                after: budget,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// True when etcd's `GET /health` on `port` answers 200 with `"health":"true"`.
pub(crate) async fn etcd_healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    if stream.read_to_string(&mut response).await.is_err() {
        return false;
    }
    let status_ok = response
        .lines()
        .next()
        .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"));
    status_ok && response.replace(' ', "").contains(r#""health":"true""#)
}
