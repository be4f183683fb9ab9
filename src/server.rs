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
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
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
    metrics::{Metrics, RenderError},
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

/// The text exposition format, gzipped when the scraper takes it (Prometheus
/// always does): compressed while encoded, the full text is never in memory.
async fn metrics(State(probes): State<Probes>, headers: HeaderMap) -> Response {
    let rendered = if accepts_gzip(&headers) {
        probes
            .metrics
            .render_gzip()
            .map(|body| (Body::from(body), Some("gzip")))
    } else {
        probes
            .metrics
            .render()
            .map(|text| (Body::from(text), None))
            .map_err(RenderError::Encode)
    };
    match rendered {
        Ok((body, encoding)) => {
            let mut response = (
                [
                    (
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                    (header::VARY, "accept-encoding"),
                ],
                body,
            )
                .into_response();
            if let Some(encoding) = encoding {
                response.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static(encoding),
                );
            }
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot render /metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Whether `Accept-Encoding` takes gzip: listed without `q=0`, or not
/// listed and `*` is. Parsed here because neither `http` nor axum parses
/// this header, and a compression layer would compress the finished text,
/// which is what [`Metrics::render_gzip`] exists to avoid holding.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut wildcard = false;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let taken = !parts.any(|param| {
            param
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if coding.eq_ignore_ascii_case("gzip") {
            return taken;
        }
        if coding == "*" {
            wildcard = taken;
        }
    }
    wildcard
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::body::to_bytes;
    use flate2::read::GzDecoder;
    use tower::ServiceExt;

    use super::*;

    async fn scrape(accept_encoding: Option<&str>) -> Response {
        let metrics = Arc::new(Metrics::new());
        metrics.set_leader(true);
        metrics.queued("ns", "p");
        let mut request = Request::get(METRICS_PATH);
        if let Some(value) = accept_encoding {
            request = request.header(header::ACCEPT_ENCODING, value);
        }
        Probes::new(metrics)
            .router(None)
            .oneshot(request.body(Body::empty()).expect("a request"))
            .await
            .expect("the router answers")
    }

    async fn body(response: Response) -> Vec<u8> {
        to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body")
            .to_vec()
    }

    #[tokio::test]
    async fn metrics_are_gzipped_for_a_scraper_that_takes_gzip() {
        let response = scrape(Some("gzip, deflate")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let mut text = String::new();
        GzDecoder::new(body(response).await.as_slice())
            .read_to_string(&mut text)
            .expect("a gzip body");
        assert!(text.contains("keyrotor_workqueue_depth 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn metrics_are_plain_text_unless_gzip_is_taken() {
        for accept_encoding in [None, Some("identity"), Some("gzip;q=0, br"), Some("*;q=0")] {
            let response = scrape(accept_encoding).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert!(
                !response.headers().contains_key(header::CONTENT_ENCODING),
                "{accept_encoding:?}"
            );
            let text = String::from_utf8(body(response).await).expect("text");
            assert!(
                text.contains("keyrotor_workqueue_depth 1"),
                "{accept_encoding:?}: {text}"
            );
        }
    }

    #[test]
    fn accept_encoding_is_read_as_a_list_with_weights() {
        let takes = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::ACCEPT_ENCODING,
                    value.parse().expect("a header value"),
                );
            }
            accepts_gzip(&headers)
        };
        assert!(takes(&["gzip"]));
        assert!(takes(&["br;q=1.0, GZIP;q=0.5"]));
        assert!(takes(&["identity", "gzip"]));
        assert!(takes(&["*"]));
        assert!(!takes(&[]));
        assert!(!takes(&["deflate, br"]));
        assert!(!takes(&["gzip;q=0"]));
        assert!(!takes(&["gzip; q=0.000"]));
        assert!(!takes(&["x-gzip"]));
        assert!(!takes(&["gzip;q=0, *"]));
        assert!(takes(&["*;q=0, gzip"]));
    }
}
