//! Committed seq ranges, from the node that committed them to every other: the appending
//! transaction notifies [`CHANNEL`] with `first-last`, which PostgreSQL delivers to every
//! listening session only once that transaction commits, and in commit order; each node then
//! reads those rows for its sockets. No gossip between nodes: PostgreSQL is the one channel.

use super::PgError;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, GenericClient, NoTls};

/// The channel committed ranges are announced on.
pub const CHANNEL: &str = "trailwatch_commits";

/// Seqs `first..=last` were committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub first: u64,
    pub last: u64,
}

impl Committed {
    pub(super) fn payload(self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    fn parse(payload: &str) -> Option<Committed> {
        let (first, last) = payload.split_once('-')?;
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        (first <= last).then_some(Committed { first, last })
    }
}

/// Announces `committed` from within the transaction that commits it (a client or a
/// transaction): delivered when, and only if, that transaction commits.
///
/// # Errors
/// Database errors.
pub async fn announce(client: &impl GenericClient, committed: Committed) -> Result<(), PgError> {
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &committed.payload()],
        )
        .await?;
    Ok(())
}

/// What a [`notices`] stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A notice's payload.
    Payload(String),
    /// Listening (again): notices sent before this, while no session listened, were
    /// missed. The first one says the stream has started.
    Resumed,
}

/// Listens on `channel` from a session of its own for as long as the receiver lives,
/// reconnecting by itself after the session is lost; each time it listens it says so with
/// [`Notice::Resumed`].
pub fn notices(
    config: tokio_postgres::Config,
    channel: &'static str,
) -> mpsc::UnboundedReceiver<Notice> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_millis(100);
        while !tx.is_closed() {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    let (inner_tx, mut inner) = mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        let mut messages =
                            futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(Ok(message)) = messages.next().await {
                            if let AsyncMessage::Notification(n) = message {
                                if n.channel() == channel
                                    && inner_tx.send(n.payload().to_string()).is_err()
                                {
                                    return;
                                }
                            }
                        }
                    });
                    if client
                        .batch_execute(&format!("LISTEN {channel}"))
                        .await
                        .is_ok()
                    {
                        wait = std::time::Duration::from_millis(100);
                        if tx.send(Notice::Resumed).is_err() {
                            return;
                        }
                        while let Some(payload) = inner.recv().await {
                            if tx.send(Notice::Payload(payload)).is_err() {
                                return;
                            }
                        }
                    }
                    driver.abort();
                }
                Err(e) => tracing::debug!(error = %e, channel, "cannot listen yet"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(2));
        }
    });
    rx
}

/// A session listening on [`CHANNEL`].
pub struct Listener {
    ranges: mpsc::UnboundedReceiver<Committed>,
    /// The session's client: dropping it would end the session and the listening.
    _client: Client,
}

impl Listener {
    /// Opens a session of its own on `url` and listens; ranges committed from then on arrive
    /// in commit order.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn open(url: &str) -> Result<Listener, PgError> {
        Listener::open_with(&url.parse()?).await
    }

    /// [`Listener::open`] with a parsed configuration.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn open_with(config: &tokio_postgres::Config) -> Result<Listener, PgError> {
        let (client, mut connection) = config.connect(NoTls).await?;
        let (tx, ranges) = mpsc::unbounded_channel();
        // The connection carries the notifications; it is polled here, for as long as the
        // listener lives or the session lasts.
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                        match Committed::parse(n.payload()) {
                            Some(c) => {
                                if tx.send(c).is_err() {
                                    return;
                                }
                            }
                            None => {
                                tracing::warn!(payload = n.payload(), "unreadable commit notice")
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the listening session ended");
                        return;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(Listener {
            ranges,
            _client: client,
        })
    }

    /// The next committed range; `None` once the session has ended (the caller opens a new
    /// one and reads what it missed from the rows).
    pub async fn next(&mut self) -> Option<Committed> {
        self.ranges.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::Committed;

    #[test]
    fn ranges_travel_as_first_dash_last() {
        let c = Committed { first: 7, last: 12 };
        assert_eq!(Committed::parse(&c.payload()), Some(c));
        for bad in ["", "7", "7-", "-7", "9-3", "a-b", "1-2-3"] {
            assert_eq!(Committed::parse(bad), None, "{bad:?}");
        }
    }
}
