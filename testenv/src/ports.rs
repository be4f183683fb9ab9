//! Picks free loopback ports.

use std::net::TcpListener;

use crate::TestEnvError;

/// Returns `N` distinct ports that were free a moment ago. Another process may
/// take one before the server binds it; the caller retries the start then.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], TestEnvError> {
    // Holding all listeners until every port is known keeps the N ports distinct.
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| TestEnvError::io("binding a free loopback port", e))?;
        *port = listener
            .local_addr()
            .map_err(|e| TestEnvError::io("reading a bound port", e))?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}
