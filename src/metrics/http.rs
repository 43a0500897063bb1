//! The HTTP endpoint: `/metrics`, `/healthz` and `/readyz` served with hyper, bounded in request size and time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::Registry;

/// Longest a connection may take, request to answer: a slow client cannot
/// hold it longer, and /healthz itself waits at most `LIVENESS_LIMIT`.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);
/// Longest the request head may take to arrive.
const HEAD_LIMIT: Duration = Duration::from_secs(5);
/// Largest request head read (hyper's minimum); a larger one is answered 431.
const HEAD_BYTES: usize = 8192;
/// How long /healthz waits for a mountpoint to answer.
const LIVENESS_LIMIT: Duration = Duration::from_secs(2);

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot listen for metrics on {addr}: {source}{}",
        listen_advice(source)
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What to check when the metrics address cannot be bound.
fn listen_advice(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process uses that port: choose another --metrics-listen (metrics_listen in a config file)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; that address is not one of this machine's: check --metrics-listen (metrics_listen in a config file)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a higher port"
        }
        _ => "",
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen { addr, source })?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                accepted = listener.accept() => {
                    let Ok((conn, _)) = accepted else { continue };
                    let registry = Arc::clone(&registry);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let registry = Arc::clone(&registry);
                            async move { Ok::<_, Infallible>(answer(&req, &registry).await) }
                        });
                        // One request per connection, closed after the answer;
                        // a client that half-closes after its request still
                        // gets the answer.
                        let conn = hyper::server::conn::http1::Builder::new()
                            .keep_alive(false)
                            .half_close(true)
                            .title_case_headers(true)
                            .max_buf_size(HEAD_BYTES)
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEAD_LIMIT)
                            .serve_connection(TokioIo::new(conn), service);
                        let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
                    });
                }
            }
        }
    });
    Ok(())
}

async fn answer(
    req: &Request<hyper::body::Incoming>,
    registry: &Registry,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            // Prometheus asks for OpenMetrics; everything else gets the
            // Prometheus text format, as before.
            let openmetrics = req
                .headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let (ctype, body) = if openmetrics {
                (OPENMETRICS_TEXT, registry.render_openmetrics())
            } else {
                (PROMETHEUS_TEXT, registry.render())
            };
            respond(StatusCode::OK, ctype, body)
        }
        "/healthz" => {
            let (ok, why) = registry.liveness(LIVENESS_LIMIT).await;
            text(verdict(ok), format!("{why}\n"))
        }
        "/readyz" => {
            let (ok, why) = registry.readiness();
            text(verdict(ok), format!("{why}\n"))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn verdict(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/plain", body)
}

fn respond(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}
