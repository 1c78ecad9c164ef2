//! The `--syslog` listeners: RFC 5424 and RFC 3164 messages over TCP (octet counting or
//! newline framing, RFC 6587), UDP (a message per datagram, RFC 5426) and TLS (RFC 5425, with
//! the server's certificate). Messages become events through [`crate::ingest::syslog`].
//!
//! A stream's messages are stored in the batches its reads bring, and the next read waits for
//! the commit: a sender faster than the disk, or over the ingest rate limit (per sending
//! address, as HTTP ingest is per credential), is slowed by TCP's own flow control rather than
//! having messages dropped. A failed commit is retried until it holds. UDP has no such brake:
//! what the kernel's buffer cannot hold while we wait is lost, as UDP syslog always was.

use super::{take_ingest_budget, ApiError, AppState};
use crate::ingest::syslog::{event, Deframer, Frame, Origin};
use crate::model::{AuditEvent, Source};
use crate::selfaudit::Acting;
use crate::store::StoreError;
use chrono::Utc;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

/// Streams one listener serves at once; a sender past this waits to be accepted.
const MAX_STREAMS: usize = 1024;

/// How long a failed commit waits before it is tried again.
const RETRY_COMMIT: Duration = Duration::from_secs(1);

/// How messages reach a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Tls,
}

/// One `--syslog` listener: `tcp://ADDR:PORT`, `udp://…` or `tls://…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogSpec {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for SyslogSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, addr) = s.split_once("://").ok_or_else(|| {
            format!("syslog listener {s:?}: write it as tcp://ADDR:PORT, udp://… or tls://…")
        })?;
        let transport = match scheme {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "syslog listener {s:?}: {other:?} is not one of tcp, udp, tls"
                ))
            }
        };
        let addr = addr.parse().map_err(|e| {
            format!("syslog listener {s:?}: {addr:?} is not an IP address and port ({e})")
        })?;
        Ok(SyslogSpec { transport, addr })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Tls => "tls",
        })
    }
}

/// The running listeners; dropping them stops them.
#[derive(Default)]
pub struct SyslogListeners {
    /// Each listener's source name (`syslog:tcp://127.0.0.1:6514`) and bound address.
    pub bound: Vec<(String, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SyslogListeners {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds every listener and starts serving them.
///
/// # Errors
/// An address that cannot be bound, or `tls://` without the server's certificate.
pub async fn start(
    state: &AppState,
    specs: &[SyslogSpec],
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<SyslogListeners, String> {
    let mut listeners = SyslogListeners::default();
    for spec in specs {
        let cannot = |e: std::io::Error| format!("syslog listener {}: {e}", spec.addr);
        let (local, source, task) = match spec.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(spec.addr).await.map_err(cannot)?;
                let local = socket.local_addr().map_err(cannot)?;
                let source = source_name(spec.transport, local);
                let task = tokio::spawn(serve_udp(state.clone(), socket, source.clone()));
                (local, source, task)
            }
            Transport::Tcp => {
                let tcp = TcpListener::bind(spec.addr).await.map_err(cannot)?;
                let local = tcp.local_addr().map_err(cannot)?;
                let source = source_name(spec.transport, local);
                let task = tokio::spawn(serve_streams(state.clone(), tcp, source.clone()));
                (local, source, task)
            }
            Transport::Tls => {
                let config = tls.clone().ok_or_else(|| {
                    format!(
                        "syslog listener tls://{}: TLS needs the server's certificate and key \
                         (--tls-cert, --tls-key)",
                        spec.addr
                    )
                })?;
                let tcp = TcpListener::bind(spec.addr).await.map_err(cannot)?;
                let local = tcp.local_addr().map_err(cannot)?;
                let source = source_name(spec.transport, local);
                let listener = super::tls::TlsListener::new(tcp, config).map_err(cannot)?;
                let task = tokio::spawn(serve_streams(state.clone(), listener, source.clone()));
                (local, source, task)
            }
        };
        tracing::info!(transport = %spec.transport, addr = %local, "syslog listener ready");
        listeners.bound.push((source, local));
        listeners.tasks.push(task);
    }
    Ok(listeners)
}

fn source_name(transport: Transport, local: SocketAddr) -> String {
    format!("syslog:{transport}://{local}")
}

/// Accepts streams (TCP, or TLS after the handshake) and reads each to its end.
async fn serve_streams<L>(state: AppState, mut listener: L, source: String)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    // The connections' tasks end with the listener's (dropping the set aborts them).
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(permit) = streams.clone().acquire_owned().await else {
            return;
        };
        // Failed accepts are retried inside (after a pause, when out of file descriptors),
        // and a TLS listener handshakes each stream under its own deadline.
        let (stream, peer) = listener.accept().await;
        let (state, source) = (state.clone(), source.clone());
        connections.spawn(async move {
            serve_stream(&state, stream, &source, peer).await;
            drop(permit);
        });
    }
}

/// Reads one connection to its end, storing each read's whole messages before the next read.
async fn serve_stream(
    state: &AppState,
    mut stream: impl AsyncRead + Unpin,
    source: &str,
    peer: SocketAddr,
) {
    let sender = Sender::new(source, peer);
    let mut deframer = Deframer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "syslog stream ended");
                break;
            }
        };
        deframer.push(&buf[..n]);
        let frames: Vec<Frame> = std::iter::from_fn(|| deframer.next_frame()).collect();
        sender.store(state, frames).await;
    }
    // A last message without its newline is still a message.
    sender
        .store(state, deframer.finish().into_iter().collect())
        .await;
}

async fn serve_udp(state: AppState, socket: UdpSocket, source: String) {
    // The largest UDP payload; a message is one datagram (RFC 5426).
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "syslog datagram could not be read");
                continue;
            }
        };
        let mut frames = vec![datagram(&buf[..n])];
        let sender = Sender::new(&source, peer);
        // Whatever else already waits from the same sender joins this commit.
        while frames.len() < 512 {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) if from == peer => frames.push(datagram(&buf[..n])),
                Ok((n, from)) => {
                    Sender::new(&source, from)
                        .store(&state, vec![datagram(&buf[..n])])
                        .await;
                }
                Err(_) => break,
            }
        }
        sender.store(&state, frames).await;
    }
}

/// A datagram is one message; a trailing newline, which some senders add, is not part of it.
fn datagram(bytes: &[u8]) -> Frame {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.len() > crate::ingest::syslog::MAX_MESSAGE {
        return Frame::TooLong {
            head: bytes[..crate::ingest::syslog::MAX_MESSAGE].to_vec(),
            len: Some(bytes.len()),
        };
    }
    Frame::Message(bytes.to_vec())
}

/// One sending address on one listener: whose budget it spends and what it is sealed with.
struct Sender {
    origin: Origin,
    acting: Acting,
}

impl Sender {
    fn new(source: &str, peer: SocketAddr) -> Sender {
        let ip: IpAddr = peer.ip();
        Sender {
            origin: Origin {
                source: Source(source.to_string()),
                peer: peer.to_string(),
            },
            acting: Acting {
                user: format!("syslog:{ip}"),
                ip: Some(ip.to_string()),
                user_agent: None,
            },
        }
    }

    /// Stores `frames` as events: waits out the sender's rate limit, then retries the commit
    /// until it holds. Nothing read is let go.
    async fn store(&self, state: &AppState, frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        while let Err(ApiError::RateLimited(wait)) = take_ingest_budget(state, &self.acting).await {
            tokio::time::sleep(wait).await;
        }
        let clock = state.window.at(Utc::now());
        let events: Vec<AuditEvent> = frames
            .into_iter()
            .map(|frame| {
                let mut e = event(frame, &self.origin, clock);
                e.submitted_by = Some(self.acting.user.clone());
                e
            })
            .collect();
        loop {
            match state.store.append(events.clone()).await {
                Ok(_) => return,
                // The server is stopping: the sender's stream ends unread from here.
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, peer = %self.origin.peer,
                        "syslog messages not stored yet; retrying");
                    tokio::time::sleep(RETRY_COMMIT).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_specs_are_read_or_refused_with_the_reason() {
        let spec: SyslogSpec = "tcp://127.0.0.1:6514".parse().unwrap();
        assert_eq!(spec.transport, Transport::Tcp);
        assert_eq!(spec.addr.port(), 6514);
        assert_eq!(
            "udp://[::1]:514".parse::<SyslogSpec>().unwrap().transport,
            Transport::Udp
        );
        for bad in ["127.0.0.1:514", "http://127.0.0.1:514", "tls://localhost"] {
            assert!(bad.parse::<SyslogSpec>().is_err(), "{bad}");
        }
    }
}
