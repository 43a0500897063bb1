//! The HTTPS server: TLS connections, routing to the handlers, and fault application.
//!
//! The HTTPS server: TLS accept loop, one HTTP/1.1 connection task per client, routing to the
//! vault, Entra ID, managed identity and admin handlers, and the shared fault-injection step.

use crate::counts::{special, Operation};
use crate::faults::FaultKind;
use crate::http::{segments, set_header, Reply, Resp};
use crate::serving::{accept_loop, serve_connection, ConnectionReset};
use crate::state::Shared;
use crate::vault_error::VaultError;
use hyper::body::Incoming;
use hyper::Request;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Which kind of endpoint a request hit; decides the shape of injected error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Vault,
    Entra,
    ManagedIdentity,
}

/// Runs injected faults for a request of `op`: sleeps any added latency, then returns the reply
/// of a status or reset fault, if one fired (and counts it as `faulted`).
pub(crate) async fn apply_faults(shared: &Shared, op: Operation, family: Family) -> Option<Reply> {
    let decision = shared.lock().faults.decide(op);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let answer = decision.answer?;
    shared.bump(special::FAULTED);
    Some(match answer {
        FaultKind::Reset => Reply::Reset,
        FaultKind::Status {
            status,
            retry_after,
            retry_after_ms,
        } => {
            let mut resp = fault_body(shared, family, status);
            if let Some(secs) = retry_after {
                set_header(&mut resp, "retry-after", &secs.to_string());
            }
            if let Some(ms) = retry_after_ms {
                set_header(&mut resp, "x-ms-retry-after-ms", &ms.to_string());
            }
            Reply::Send(resp)
        }
        FaultKind::Challenge { resource } => Reply::Send(crate::vault::challenge_for(
            shared,
            &resource,
            "Injected fault: challenge.",
        )),
        FaultKind::Oversized { bytes } => Reply::Send(oversized_body(bytes)),
        // Latency never answers; `decide` only returns answering faults.
        FaultKind::Latency(_) => return None,
    })
}

/// A 200 JSON answer of exactly `bytes` bytes: `{"value":"xxx…"}`.
fn oversized_body(bytes: u64) -> Resp {
    const FRAME: usize = r#"{"value":""}"#.len();
    let pad = (bytes as usize).saturating_sub(FRAME);
    let mut body = Vec::with_capacity(FRAME + pad);
    body.extend_from_slice(br#"{"value":""#);
    body.resize(body.len() + pad, b'x');
    body.extend_from_slice(br#""}"#);
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    set_header(&mut resp, "content-type", "application/json; charset=utf-8");
    resp
}

fn fault_body(shared: &Shared, family: Family, status: u16) -> Resp {
    match family {
        Family::Vault => {
            if status == 401 {
                return crate::vault::challenge(shared, "Injected fault: HTTP 401.");
            }
            if status == 403 {
                // What the vault's network rules answer to an address they
                // do not allow, whatever the identity.
                return crate::vault::error(
                    &VaultError::new(
                        403,
                        "Forbidden",
                        "Client address is not authorized and caller is not a trusted service.\r\n\
                         Client address: 203.0.113.7\r\nCaller: appid=unknown\r\nVault: emulator;location=emulator",
                    )
                    .with_inner("ForbiddenByFirewall"),
                );
            }
            let (code, message) = match status {
                429 => (
                    "Throttled",
                    "Request was not processed because too many requests were received. Reason: \
                     VaultRequestTypeLimitReached",
                ),
                500 => ("InternalServerError", "Injected fault: HTTP 500."),
                502 => ("BadGateway", "Injected fault: HTTP 502."),
                503 => ("ServiceUnavailable", "Injected fault: HTTP 503."),
                504 => ("GatewayTimeout", "Injected fault: HTTP 504."),
                408 => ("RequestTimeout", "Injected fault: HTTP 408."),
                _ => ("InjectedFault", "Injected fault."),
            };
            crate::vault::error(&VaultError::new(status, code, message))
        }
        Family::Entra => {
            let error = if status == 429 || status >= 500 {
                "temporarily_unavailable"
            } else {
                "invalid_request"
            };
            crate::entra::error_response(
                status,
                error,
                None,
                &format!("Injected fault: HTTP {status}."),
            )
        }
        Family::ManagedIdentity => {
            crate::msi::error(status, &format!("Injected fault: HTTP {status}."))
        }
    }
}

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    accept_loop(listener, shutdown, "", |tcp, peer| {
        let connection = connection(tcp, acceptor.clone(), shared.clone(), stop.clone(), peer);
        tokio::spawn(connection);
    })
    .await;
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) {
    let abort = Arc::new(AtomicBool::new(false));
    let io = ResettableStream {
        inner: tcp,
        reset: abort.clone(),
    };
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let handler = move |req: Request<Incoming>| {
        let shared = shared.clone();
        let abort = abort.clone();
        async move {
            match dispatch(&shared, req).await {
                Reply::Send(resp) => Ok(resp),
                Reply::Reset => {
                    abort.store(true, Ordering::SeqCst);
                    Err(ConnectionReset)
                }
            }
        }
    };
    serve_connection(tls, handler, shutdown, peer, "").await;
}

/// A TCP stream that, once its reset flag is set, is closed with SO_LINGER 0 so the client sees
/// a TCP reset instead of an orderly close.
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "reset by an injected fault",
            ))
        } else {
            Ok(())
        }
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Routes a request to its handler.
async fn dispatch(shared: &Arc<Shared>, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segs = segments(&path);
    let first = segs
        .first()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    tracing::debug!(method = %parts.method, %path, "request");
    if first == "_emulator" {
        return crate::admin::handle(shared, parts, body).await;
    }
    shared.bump(special::TOTAL);
    let is_vault_path = matches!(
        first.as_str(),
        "secrets"
            | "deletedsecrets"
            | "certificates"
            | "deletedcertificates"
            | "keys"
            | "deletedkeys"
    );
    if !is_vault_path {
        if path.eq_ignore_ascii_case(crate::msi::PATH) {
            return crate::msi::handle(shared, parts).await;
        }
        if let Some(route) = crate::entra::Route::parse(&path) {
            return crate::entra::handle(shared, route, parts, body).await;
        }
    }
    crate::vault::handle(shared, parts, body).await
}
