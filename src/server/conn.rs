//! The accept loop and what each connection may hold: a cap on open connections (a clear
//! `503` beyond it), a deadline for a request's head, an idle keep-alive timeout, and a body
//! deadline (`408`, in [`read_body`]). Without them one client could hold the process's file
//! descriptors with slow or idle connections. Server build only.

use super::limits::LimitsConfig;
use super::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// How many refusals beyond the cap may be under way at once; past it a connection is closed
/// without an answer, so refusing cannot itself exhaust the descriptors.
const MAX_REFUSING: usize = 64;
/// How long a refusal waits for the client to read it before closing.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The connection limits in effect, from `[limits]`.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

impl ConnLimits {
    /// The connection limits `[limits]` sets.
    pub fn of(config: &LimitsConfig) -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            keepalive_timeout: Duration::from_secs(config.keepalive_timeout_secs),
            max_connections: config.max_connections,
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then asks each connection to finish
/// its request and close, and returns once all have (open sockets are the caller's to time
/// out).
pub async fn serve<L>(mut listener: L, app: Router, limits: ConnLimits, stop: watch::Receiver<bool>)
where
    L: Listener<Addr = SocketAddr>,
{
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    // Every connection holds a receiver; when all are gone, every connection has closed.
    let (closed_tx, closed_rx) = watch::channel(());
    let mut stopping = stop.clone();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|s| *s) => break,
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                let stop = stop.clone();
                let closed = closed_rx.clone();
                tokio::spawn(async move {
                    connection(io, permit, peer, app, limits, stop).await;
                    drop(closed);
                });
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::warn!(%peer, limit = limits.max_connections, "connection refused: too many open");
                    tokio::spawn(async move {
                        refuse(io, limits.max_connections).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(io),
            },
        }
    }
    drop(closed_rx);
    closed_tx.closed().await;
}

/// Answers a connection over the cap with `503` and closes it.
async fn refuse<I: AsyncRead + AsyncWrite + Unpin>(mut io: I, limit: usize) {
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": format!("the server holds its limit of {limit} open connections; retry shortly or reuse a connection"),
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(body.as_bytes()).await?;
        io.shutdown().await?;
        // Closing with unread input would reset the connection and could destroy the answer
        // before the client reads it: drain what it sent for a moment first.
        let mut sink = [0u8; 1024];
        while io.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
}

/// Serves one connection until it closes, its client stalls past a limit, or the server stops.
async fn connection<I>(
    io: I,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
        _open: permit,
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // Handlers that record who acted name the peer's address.
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = activity.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(req.map(Body::new)).await?;
                // The request counts as under way until its answer is written (or dropped).
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        inner: body,
                        _busy: busy,
                    })
                }))
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    // HTTP/2 WebSockets need the CONNECT protocol, as axum's own loop enables it.
    builder.http2().enable_connect_protocol();
    // Head and idle deadlines are kept below, apart: hyper's single header timeout would
    // make the idle keep-alive wait the same length as a slow head's.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut stopping = false;
    loop {
        let wait = activity.until_expiry(&limits);
        tokio::select! {
            // Done, failed, or upgraded to a WebSocket, which lives on in its own task.
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_for(wait) => {
                if activity.until_expiry(&limits) == Some(Duration::ZERO) {
                    tracing::debug!(%peer, "connection closed: idle or slow past its limit");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its deadlines: serving requests (no deadline of ours),
/// reading a request's head (the header timeout), or idle between requests (keep-alive).
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Bytes of a request's head have arrived since the connection last went idle; a new
    /// connection starts so, as nginx has it: its first request is due within the header
    /// timeout.
    reading: AtomicBool,
    /// When the current phase began, in milliseconds after `born`.
    since_ms: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            reading: AtomicBool::new(true),
            since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request's head is complete and is being served.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.reading.store(false, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Bytes arrived from the client.
    fn received(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 && !self.reading.swap(true, Ordering::SeqCst)
        {
            self.since_ms.store(self.now_ms(), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// How long until the current phase runs out: `None` while a request is served, zero
    /// once past its limit.
    fn until_expiry(&self, limits: &ConnLimits) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let limit = match self.reading.load(Ordering::SeqCst) {
            true => limits.header_timeout,
            false => limits.keepalive_timeout,
        };
        let spent = self
            .now_ms()
            .saturating_sub(self.since_ms.load(Ordering::SeqCst));
        Some(limit.saturating_sub(Duration::from_millis(spent)))
    }
}

/// A request under way; when its answer is written or dropped the connection may go idle.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.since_ms.store(a.now_ms(), Ordering::SeqCst);
            a.reading.store(false, Ordering::SeqCst);
            a.changed.notify_one();
        }
    }
}

/// A response body that keeps its request counted as under way until it is done.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl axum::body::HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's stream, telling [`Activity`] when the client sends. It holds the
/// connection's place under the cap for as long as the stream is open: an upgraded
/// WebSocket takes the stream with it and keeps counting.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
    _open: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Refuses a body declared larger than the limit with `413` before any of it is read (a
/// client sending `Expect: 100-continue` is never asked for it).
pub(super) async fn declared_size(
    State(max_body_bytes): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        return closing(ApiError::TooLarge(max_body_bytes).into_response());
    }
    next.run(req).await
}

/// Reads a request's body whole within the body deadline before the handler runs: a body
/// that stops arriving gets `408` rather than holding its connection and handler for ever.
/// Runs after authentication, so nobody without credentials makes the server read a body.
pub(super) async fn read_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let deadline = Duration::from_secs(state.limiter.config().body_timeout_secs);
    let limit = state.max_body_bytes;
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return closing(match too_large {
                true => ApiError::TooLarge(limit).into_response(),
                false => ApiError::Param {
                    field: "body".into(),
                    message: format!("the body could not be read: {e}"),
                }
                .into_response(),
            });
        }
        Err(_) => {
            return closing(
                (
                    StatusCode::REQUEST_TIMEOUT,
                    axum::Json(serde_json::json!({
                        "error": "body_timeout",
                        "message": format!("the body did not arrive whole within {} s; nothing was stored", deadline.as_secs()),
                    })),
                )
                    .into_response(),
            )
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `response` with `Connection: close`: what is left of the request's body is unread, so the
/// connection cannot carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 10,
        }
    }

    #[test]
    fn a_new_connection_owes_its_head_then_idles_under_keep_alive() {
        let a = Arc::new(Activity::new());
        let head = a.until_expiry(&limits()).unwrap();
        assert!(head <= Duration::from_secs(60) && head > Duration::from_secs(59));
        let busy = a.begin();
        assert_eq!(a.until_expiry(&limits()), None, "no deadline while serving");
        drop(busy);
        let idle = a.until_expiry(&limits()).unwrap();
        assert!(idle > Duration::from_secs(74), "{idle:?}");
        a.received();
        let reading = a.until_expiry(&limits()).unwrap();
        assert!(reading <= Duration::from_secs(60), "{reading:?}");
    }
}
