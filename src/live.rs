//! The live fan-out and the `/ws/audit` protocol: each committed event is serialised once and
//! offered to every socket; each socket replays from the store after its `sinceSeq`, then
//! follows the live queue, strictly in seq order with no gap and no duplicate. A socket that
//! falls behind the bounded queue is told `lagged` and resumed from the store, so a slow client
//! never slows the others nor grows memory. A subscription may carry a filter (the REST
//! parameter names): the server then sends only matching events, catch-up included, and a new
//! `subscribe` switches filter without a gap. Server build only.

use crate::model::{ClientMessage, EventFilter, Seq, ServerMessage, StoredEvent};
use crate::search::Query;
use crate::store::{Store, StoreError};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{timeout, Instant};

/// How sockets behave; the defaults suit browsers on a LAN or the internet.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// How many serialised events the shared live queue holds for slow sockets.
    pub queue_capacity: usize,
    /// How often the server pings an idle socket; three silent intervals close it.
    pub ping_interval: Duration,
    /// How long one frame may take to leave; a socket stalled longer is closed.
    pub send_timeout: Duration,
    /// How long to wait for a first `subscribe` before sending the default backlog.
    pub subscribe_wait: Duration,
    /// How many recent events a socket that does not subscribe receives first.
    pub default_backlog: u64,
    /// How many events one catch-up read takes from the store.
    pub page_size: usize,
    /// Client messages (text or binary) a socket may send per second on average, and in a
    /// burst; a client over it is disconnected. A dashboard sends one per filter change.
    pub messages_per_second: u32,
    pub message_burst: u32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            queue_capacity: 4096,
            ping_interval: Duration::from_secs(20),
            send_timeout: Duration::from_secs(30),
            subscribe_wait: Duration::from_millis(300),
            default_backlog: 100,
            page_size: 500,
            messages_per_second: 10,
            message_burst: 30,
        }
    }
}

/// One committed event, serialised once for every socket.
#[derive(Debug)]
pub struct Frame {
    pub seq: Seq,
    pub text: Utf8Bytes,
    /// The event itself, for filtered sockets to match without parsing the text.
    pub event: Arc<StoredEvent>,
}

/// The most live frames one socket queues before writing them out.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// The fan-out point between the store's commits and the sockets. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    frames: broadcast::Sender<Arc<Frame>>,
    /// Alerts, serialised once for every socket.
    alerts: broadcast::Sender<Utf8Bytes>,
    store: Store,
    config: LiveConfig,
}

/// Serialises `{"type":"event","event":...}` without cloning the event.
fn event_frame(event: &StoredEvent) -> Result<String, serde_json::Error> {
    #[derive(serde::Serialize)]
    #[serde(tag = "type", rename = "event")]
    struct EventFrame<'a> {
        event: &'a StoredEvent,
    }
    serde_json::to_string(&EventFrame { event })
}

impl Hub {
    /// Starts forwarding the store's commits to sockets. Needs a Tokio runtime.
    pub fn start(store: Store, config: LiveConfig) -> Hub {
        let (frames, _) = broadcast::channel(config.queue_capacity.max(16));
        let mut commits = store.subscribe();
        let tx = frames.clone();
        tokio::spawn(async move {
            loop {
                match commits.recv().await {
                    // No socket is open, so no one would read the frame: a socket that opens
                    // later subscribes first and then reads from the store what came before.
                    // Building frames nobody reads was 7% of the request workers' time during
                    // single-event ingest (BENCHMARKS.md).
                    Ok(_) if tx.receiver_count() == 0 => {}
                    Ok(event) => match event_frame(&event) {
                        Ok(text) => {
                            let _ = tx.send(Arc::new(Frame {
                                seq: event.seq,
                                text: text.into(),
                                event,
                            }));
                        }
                        Err(e) => {
                            tracing::error!(seq = %event.seq, error = %e, "unserialisable event")
                        }
                    },
                    // Sockets see the gap in seq and fill it from the store.
                    Err(RecvError::Lagged(n)) => tracing::warn!(skipped = n, "live hub lagged"),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        let (alerts, _) = broadcast::channel(256);
        Hub {
            frames,
            alerts,
            store,
            config,
        }
    }

    /// Sends an alert to every open socket (`{"type":"alert",...}`), whatever its filter.
    pub fn publish_alert(&self, alert: &crate::model::Alert) {
        match serde_json::to_string(&ServerMessage::Alert(Box::new(alert.clone()))) {
            // No socket open is not an error: the alert is in the log.
            Ok(text) => {
                let _ = self.alerts.send(text.into());
            }
            Err(e) => tracing::error!(error = %e, "unserialisable alert"),
        }
    }

    /// Runs one upgraded socket to its end. `since` comes from the `sinceSeq` query parameter;
    /// without it the server waits briefly for a `subscribe` message, then sends the last
    /// [`LiveConfig::default_backlog`] events. With an `owner` (the `self` role) the socket
    /// carries only that actor's events, whatever the client's filter, and no alerts.
    /// Ends when the client leaves, breaks the protocol or the message rate, or `revoked`
    /// completes; says which.
    pub async fn serve(
        self,
        socket: WebSocket,
        since: Option<Seq>,
        owner: Option<String>,
        revoked: impl std::future::Future<Output = ()> + Send,
    ) -> Ended {
        let (sink, mut stream) = socket.split();
        let (client_tx, client_rx) = mpsc::channel::<Inbound>(16);
        let (rate, burst) = (self.config.messages_per_second, self.config.message_burst);
        let reader = tokio::spawn(async move {
            let mut bucket = MessageBucket::new(rate, burst);
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Text(_) | Message::Binary(_))
                    && !bucket.take(Instant::now())
                {
                    let _ = client_tx.send(Inbound::Flood).await;
                    break;
                }
                let inbound = match msg {
                    Message::Text(text) => match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(m) => Inbound::Message(Box::new(m)),
                        Err(e) => {
                            let (message, subscribe) = invalid(&text, &e);
                            Inbound::Invalid { message, subscribe }
                        }
                    },
                    Message::Close(_) => break,
                    _ => Inbound::Alive,
                };
                if client_tx.send(inbound).await.is_err() {
                    break;
                }
            }
        });
        let owned = Query::default().owned_by(owner.as_deref());
        let mut conn = Connection {
            sink,
            store: self.store.clone(),
            config: self.config.clone(),
            last_sent: Seq(0),
            filter: owner.is_some().then(|| Arc::new(owned)),
            owner,
            alerts_only: false,
        };
        let alerts = self.alerts.subscribe();
        let metrics = crate::metrics::get();
        metrics.sockets_open.inc();
        let outcome = conn
            .run(
                &self.frames,
                alerts,
                client_rx,
                since,
                std::pin::pin!(revoked),
            )
            .await;
        metrics.sockets_open.dec();
        let reason = match &outcome {
            Ok(()) | Err(SocketError::Gone) => "left",
            Err(SocketError::Stalled) => "stalled",
            Err(SocketError::Store(_)) => "store",
            Err(SocketError::Refused) => "refused",
            Err(SocketError::Revoked) => "revoked",
            Err(SocketError::Flooded) => "flooded",
        };
        metrics
            .sockets_closed
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.into(),
            })
            .inc();
        let ended = match outcome {
            Ok(()) | Err(SocketError::Gone) => Ended::Normally,
            Err(SocketError::Flooded) => Ended::Flooded,
            Err(e) => {
                tracing::debug!(error = %e, "socket closed");
                Ended::Normally
            }
        };
        reader.abort();
        ended
    }
}

/// How a socket ended, for the caller to record what needs recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client left, the server stopped, or the socket was closed for a reason that is
    /// not a security event.
    Normally,
    /// The client sent messages faster than [`LiveConfig::messages_per_second`].
    Flooded,
}

/// A token bucket over one socket's client messages.
struct MessageBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl MessageBucket {
    fn new(per_second: u32, burst: u32) -> MessageBucket {
        let burst = f64::from(burst.max(1));
        MessageBucket {
            per_second: f64::from(per_second),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Whether one more message fits; a rate of 0 means no limit.
    fn take(&mut self, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum Inbound {
    Message(Box<ClientMessage>),
    /// A message that did not parse; `subscribe` when it was meant as a subscription.
    Invalid {
        message: String,
        subscribe: bool,
    },
    Alive,
    /// Over the message rate: the reader stopped.
    Flood,
}

#[derive(Debug, thiserror::Error)]
enum SocketError {
    #[error("client went away")]
    Gone,
    #[error("send stalled for longer than the send timeout")]
    Stalled,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("client sent an invalid subscription")]
    Refused,
    #[error("the credentials that opened the socket were revoked")]
    Revoked,
    #[error("the client sent messages faster than allowed")]
    Flooded,
}

struct Connection {
    sink: futures::stream::SplitSink<WebSocket, Message>,
    store: Store,
    config: LiveConfig,
    /// Every event up to here has been sent or, when filtered, found not to match.
    last_sent: Seq,
    filter: Option<Arc<Query>>,
    /// The only actor whose events this socket may carry (the `self` role).
    owner: Option<String>,
    /// Sends alerts and no events.
    alerts_only: bool,
}

impl Connection {
    async fn run(
        &mut self,
        frames: &broadcast::Sender<Arc<Frame>>,
        mut alerts: broadcast::Receiver<Utf8Bytes>,
        mut inbound: mpsc::Receiver<Inbound>,
        since: Option<Seq>,
        mut revoked: std::pin::Pin<&mut (impl std::future::Future<Output = ()> + Send)>,
    ) -> Result<(), SocketError> {
        let mut start = since;
        if start.is_none() {
            match timeout(self.config.subscribe_wait, inbound.recv()).await {
                Ok(None) => return Err(SocketError::Gone),
                Ok(Some(Inbound::Message(msg))) => {
                    let ClientMessage::Subscribe {
                        since_seq,
                        filter,
                        alerts_only,
                    } = *msg;
                    self.alerts_only = alerts_only;
                    self.set_filter(filter.as_ref(), since_seq).await?;
                    start = since_seq;
                }
                Ok(Some(Inbound::Invalid { message, subscribe })) => {
                    self.reject(message, subscribe).await?
                }
                Ok(Some(Inbound::Flood)) => return self.flooded().await,
                Ok(Some(Inbound::Alive)) | Err(_) => {}
            }
        }
        let mut live = self.restart(frames, start).await?;
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                msg = inbound.recv() => {
                    last_heard = Instant::now();
                    match msg {
                        None => return Err(SocketError::Gone),
                        Some(Inbound::Alive) => {}
                        Some(Inbound::Flood) => return self.flooded().await,
                        Some(Inbound::Invalid { message, subscribe }) => {
                            self.reject(message, subscribe).await?
                        }
                        Some(Inbound::Message(msg)) => {
                            let ClientMessage::Subscribe { since_seq, filter, alerts_only } = *msg;
                            self.alerts_only = alerts_only;
                            self.set_filter(filter.as_ref(), since_seq).await?;
                            live = self.restart(frames, since_seq).await?;
                        }
                    }
                }
                frame = live.recv() => {
                    // Whatever else is already queued goes out in the same write: under load a
                    // socket's task wakes to several frames, and one system call per frame
                    // was most of the cost of fan-out to many clients.
                    let mut next = frame;
                    let mut queued = 0;
                    loop {
                        match next {
                            Ok(frame) => self.forward(&frame).await?,
                            Err(RecvError::Lagged(_)) => {
                                crate::metrics::get().sockets_lagged.inc();
                                self.send_message(&ServerMessage::Lagged { last_seq: self.last_sent }).await?;
                                live = self.restart(frames, Some(self.last_sent)).await?;
                                break;
                            }
                            Err(RecvError::Closed) => {
                                self.flush().await?;
                                return Ok(());
                            }
                        }
                        queued += 1;
                        if queued == MAX_FRAMES_PER_WRITE {
                            break;
                        }
                        next = match live.try_recv() {
                            Ok(frame) => Ok(frame),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                            Err(TryRecvError::Closed) => Err(RecvError::Closed),
                        };
                    }
                    self.flush().await?;
                }
                alert = alerts.recv() => match alert {
                    // Alerts speak of everyone's events; the `self` role sees only its own.
                    Ok(_) if self.owner.is_some() => {}
                    Ok(text) => self.send(Message::Text(text)).await?,
                    // Missed alerts stay in the alert log; the socket goes on.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Ok(()),
                },
                () = &mut revoked => {
                    // The credential that opened the socket was revoked: nothing more of the
                    // log is for this client.
                    let _ = self
                        .sink
                        .send(Message::Close(Some(CloseFrame {
                            code: 1008,
                            reason: "credentials revoked".into(),
                        })))
                        .await;
                    return Err(SocketError::Revoked);
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.config.ping_interval * 3 {
                        return Err(SocketError::Gone);
                    }
                    self.send(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// Takes a new subscription's filter and acknowledges it with `subscribed`: whatever the
    /// client receives after that belongs to the new subscription. A filter that does not
    /// compile is refused and the socket closed, rather than streaming events the client
    /// believes are filtered.
    async fn set_filter(
        &mut self,
        filter: Option<&EventFilter>,
        since: Option<Seq>,
    ) -> Result<(), SocketError> {
        let owner = self.owner.as_deref();
        self.filter = match filter.filter(|f| !f.is_empty()).map(EventFilter::compile) {
            None if owner.is_none() => None,
            None => Some(Arc::new(Query::default().owned_by(owner))),
            Some(Ok(query)) => Some(Arc::new(query.owned_by(owner))),
            Some(Err(e)) => {
                return self
                    .refuse(&ServerMessage::Error {
                        message: format!("filter.{e}"),
                    })
                    .await
            }
        };
        self.send_message(&ServerMessage::Subscribed { since_seq: since })
            .await
    }

    /// Answers a message that did not parse. A broken `subscribe` ends the socket: carrying on
    /// would stream events the client believes are filtered. Other noise is only answered.
    async fn reject(&mut self, message: String, subscribe: bool) -> Result<(), SocketError> {
        let msg = ServerMessage::Error { message };
        if subscribe {
            self.refuse(&msg).await
        } else {
            self.send_message(&msg).await
        }
    }

    /// Tells a client over the message rate why, and closes its socket.
    async fn flooded(&mut self) -> Result<(), SocketError> {
        self.send_message(&ServerMessage::Error {
            message: format!(
                "more than {} messages per second; reconnect and send fewer",
                self.config.messages_per_second
            ),
        })
        .await?;
        let _ = self
            .sink
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: "message rate exceeded".into(),
            })))
            .await;
        Err(SocketError::Flooded)
    }

    /// Sends `msg`, closes the socket as a policy violation, and ends it.
    async fn refuse(&mut self, msg: &ServerMessage) -> Result<(), SocketError> {
        self.send_message(msg).await?;
        let _ = self
            .sink
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: "invalid subscription".into(),
            })))
            .await;
        Err(SocketError::Refused)
    }

    /// Replays from `since` (default: the last events), then joins the live queue without a
    /// gap: subscribe first, then read the store again, so nothing committed in between is
    /// missed; duplicates are dropped by seq.
    async fn restart(
        &mut self,
        frames: &broadcast::Sender<Arc<Frame>>,
        since: Option<Seq>,
    ) -> Result<broadcast::Receiver<Arc<Frame>>, SocketError> {
        let head = self.store.head().await?;
        // A client ahead of the head saw a history this store no longer has (a wiped data
        // directory); starting at the head lets `ready` tell it so instead of skipping events.
        self.last_sent = match since {
            _ if self.alerts_only => head,
            Some(seq) => seq.min(head),
            None => Seq(head.0.saturating_sub(self.config.default_backlog)),
        };
        self.catch_up().await?;
        let live = frames.subscribe();
        self.catch_up().await?;
        self.send_message(&ServerMessage::Ready {
            head_seq: self.last_sent,
        })
        .await?;
        Ok(live)
    }

    /// Queues `frame` for this socket unless it was sent already or its filter passes it
    /// over, first filling any gap from the store; [`Connection::flush`] sends what is queued.
    async fn forward(&mut self, frame: &Frame) -> Result<(), SocketError> {
        if frame.seq <= self.last_sent {
            return Ok(());
        }
        if self.alerts_only {
            self.last_sent = frame.seq;
            return Ok(());
        }
        if frame.seq > self.last_sent.next() {
            // The hub skipped something; the store has it.
            self.catch_up().await?;
            if frame.seq <= self.last_sent {
                return Ok(());
            }
        }
        if self.filter.as_ref().is_none_or(|f| f.matches(&frame.event)) {
            let limit = self.config.send_timeout;
            within(limit, self.sink.feed(Message::Text(frame.text.clone()))).await?;
        }
        self.last_sent = frame.seq;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SocketError> {
        within(self.config.send_timeout, self.sink.flush()).await
    }

    /// Sends every stored event after `last_sent` (every matching one, when filtered), page by
    /// page.
    async fn catch_up(&mut self) -> Result<(), SocketError> {
        if let Some(filter) = self.filter.clone() {
            loop {
                let (page, reached) = self
                    .store
                    .matching_from(filter.clone(), self.last_sent, self.config.page_size)
                    .await?;
                for event in &page {
                    self.send_event(event).await?;
                }
                self.last_sent = reached;
                if page.len() < self.config.page_size {
                    return Ok(());
                }
            }
        }
        loop {
            let page = self
                .store
                .read_from(self.last_sent, self.config.page_size)
                .await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                return Ok(());
            };
            for event in &page {
                self.send_event(event).await?;
            }
            self.last_sent = last;
        }
    }

    async fn send_event(&mut self, event: &StoredEvent) -> Result<(), SocketError> {
        let text = event_frame(event).map_err(|e| StoreError::Corrupt {
            seq: event.seq.0,
            detail: e.to_string(),
        })?;
        self.send(Message::Text(text.into())).await
    }

    async fn send_message(&mut self, msg: &ServerMessage) -> Result<(), SocketError> {
        let text = serde_json::to_string(msg).map_err(|e| StoreError::Corrupt {
            seq: 0,
            detail: e.to_string(),
        })?;
        self.send(Message::Text(text.into())).await
    }

    async fn send(&mut self, msg: Message) -> Result<(), SocketError> {
        within(self.config.send_timeout, self.sink.send(msg)).await
    }
}

/// A write to the socket that must finish within `limit`: a failed one means the client is
/// gone, a late one that it stalled.
async fn within(
    limit: Duration,
    write: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> Result<(), SocketError> {
    match timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SocketError::Gone),
        Err(_) => Err(SocketError::Stalled),
    }
}

/// What was wrong with a client message that did not parse: the filter key at fault when the
/// filter is to blame, otherwise the expected shape.
/// Also says whether it was meant as a `subscribe`.
fn invalid(text: &str, error: &serde_json::Error) -> (String, bool) {
    let value = serde_json::from_str::<serde_json::Value>(text).ok();
    let subscribe = value
        .as_ref()
        .is_some_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("subscribe"));
    let filter = value
        .and_then(|v| v.get("filter").cloned())
        .filter(|f| !f.is_null());
    if let Some(Err(e)) = filter.map(|f| EventFilter::from_json(&f)) {
        return (format!("filter.{e}"), subscribe);
    }
    let message =
        format!("expected {{\"type\":\"subscribe\",\"sinceSeq\":N,\"filter\":{{...}}}}: {error}");
    (message, subscribe)
}
