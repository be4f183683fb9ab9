//! The operator's HTTP endpoints: `/metrics`, `/healthz` and `/readyz`.
//! `/metrics` names every tenant's policies, so it is served only to callers
//! the API server says may `get` it (see [`crate::metrics_auth`]), over TLS
//! unless told otherwise; the probes stay open for the kubelet.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    metrics::Metrics,
    metrics_auth::{Decision, MetricsAuthorizer},
};

/// The path of the metrics endpoint (also what the access review asks about).
pub const METRICS_PATH: &str = "/metrics";
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent its request headers by then is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the endpoints report.
#[derive(Clone)]
pub struct Probes {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Probes {
    /// Not ready until [`Probes::set_ready`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the caches as synced (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The router serving the three endpoints; `/metrics` only to readers
    /// `authorizer` allows, or to anyone without one.
    pub fn router(&self, authorizer: Option<Arc<MetricsAuthorizer>>) -> Router {
        let metrics_route = match authorizer {
            Some(authorizer) => {
                get(metrics).layer(middleware::from_fn_with_state(authorizer, require_reader))
            }
            None => get(metrics),
        };
        Router::new()
            .route(METRICS_PATH, metrics_route)
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }
}

async fn require_reader(
    State(authorizer): State<Arc<MetricsAuthorizer>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match authorizer
        .decide(authorization.as_deref(), METRICS_PATH)
        .await
    {
        Ok(Decision::Allowed) => next.run(request).await,
        Ok(Decision::Unauthenticated) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Unauthorized: send a Kubernetes bearer token\n",
        )
            .into_response(),
        Ok(Decision::Forbidden) => (
            StatusCode::FORBIDDEN,
            "Forbidden: the token's user may not get /metrics (bind the metrics-reader ClusterRole)\n",
        )
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot decide who may read /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot review the token\n",
            )
                .into_response()
        }
    }
}

async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    match probes.metrics.render() {
        Ok(text) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    if probes.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

/// How the endpoints are served.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// TLS; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Who may read `/metrics`; anyone when `None`.
    pub authorizer: Option<Arc<MetricsAuthorizer>>,
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    probes: Probes,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = %scheme,
        metrics_auth = options.authorizer.is_some(),
        "serving /metrics, /healthz and /readyz"
    );
    let router = probes.router(options.authorizer);
    Ok(match options.tls {
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }),
        Some(tls) => tokio::spawn(serve_tls(
            listener,
            TlsAcceptor::from(tls),
            router,
            shutdown,
        )),
    })
}

/// axum's `serve` speaks plain HTTP only; this is its accept loop with a TLS
/// handshake per connection, in the connection's own task so that a client
/// that never finishes its handshake holds up nobody else.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // As axum's loop: out of file descriptors etc. is passing.
                    tracing::debug!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}
