//! Serving plain connections: the accept loop and one HTTP/1.1 connection until it ends or stops.

use crate::http::Resp;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Accepts connections on `listener` and hands each to `accepted` until `shutdown` turns true.
/// `label` names the listener in the log line of a failed accept.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    label: &str,
    mut accepted: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        tokio::select! {
            result = listener.accept() => {
                match result {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        accepted(tcp, peer);
                    }
                    Err(e) => {
                        tracing::warn!("{label}accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

/// Serves HTTP/1.1 with keep-alive on `io` until the client leaves or `shutdown` changes (then
/// the connection closes gracefully, waiting at most 2 s). A handler answering
/// `Err(ConnectionReset)` makes hyper drop the connection without a response.
pub(crate) async fn serve_connection<I, H, F>(
    io: I,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
    label: &str,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Result<Resp, ConnectionReset>> + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service_fn(handler));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "{label}connection ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// The error a service returns to make hyper drop the connection without a response.
#[derive(Debug)]
pub(crate) struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by an injected fault")
    }
}

impl std::error::Error for ConnectionReset {}
