//! Trailwatch's own security-relevant actions, recorded as events in its own chain: logins,
//! exports, erasures, cleanups, verification failures and alert acknowledgements, each with
//! who acted, from which address and with which user agent. They are sealed like any other
//! event, so they cannot be quietly removed either. Server build only.

use crate::model::{
    Actor, AuditEvent, Category, Level, Outcome, RequestInfo, Source, SYSTEM_ACTOR,
};
use crate::store::Store;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};
use std::net::SocketAddr;

/// The source of self-audit events, so they can be filtered on.
pub const SOURCE: &str = "trailwatch";

/// Who acted: the credential's holder and the request's origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acting {
    pub user: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Acting {
    /// The administrator, as seen in a request: the admin token and dashboard sessions act
    /// as `admin` until users arrive ([`ActingFrom`] names a scoped token's holder instead).
    pub fn admin(headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>) -> Acting {
        Acting {
            user: "admin".into(),
            ip: peer.map(|ConnectInfo(addr)| addr.ip().to_string()),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
        }
    }

    /// Trailwatch itself: scheduled jobs and background checks.
    pub fn system() -> Acting {
        Acting {
            user: SYSTEM_ACTOR.into(),
            ..Acting::default()
        }
    }
}

/// [`Acting::admin`] as an extractor: the peer address comes from the connection (the
/// server runs with connect info), the agent from the headers.
pub struct ActingFrom(pub Acting);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ActingFrom {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        let mut acting = Acting::admin(&parts.headers, peer);
        // The credential's holder, as the auth middleware found it (a token's name).
        if let Some(p) = parts.extensions.get::<crate::auth::Principal>() {
            acting.user.clone_from(&p.name);
        }
        Ok(ActingFrom(acting))
    }
}

/// One self-audit event, before it is recorded.
pub struct Record<'a> {
    pub action: &'a str,
    pub category: Category,
    pub outcome: Outcome,
    pub level: Level,
    pub description: String,
    pub metadata: Map<String, Value>,
}

/// The event `record` describes, done by `acting`.
pub fn event(acting: &Acting, record: Record<'_>) -> AuditEvent {
    let request = (acting.ip.is_some() || acting.user_agent.is_some()).then(|| RequestInfo {
        ip: acting.ip.clone(),
        user_agent: acting.user_agent.clone(),
        ..RequestInfo::default()
    });
    AuditEvent {
        request,
        description: Some(record.description),
        metadata: (!record.metadata.is_empty()).then_some(record.metadata),
        ..AuditEvent::new(
            chrono::Utc::now(),
            record.level,
            record.category,
            record.action,
            record.outcome,
            Actor {
                id: acting.user.clone(),
                username: None,
            },
            Source(SOURCE.into()),
        )
    }
}

/// Records `record` in the chain. A failure is logged, not returned: the action itself has
/// happened, and refusing its answer would not undo it.
pub async fn record(store: &Store, acting: &Acting, record: Record<'_>) {
    let action = record.action.to_string();
    if let Err(e) = store.append(vec![event(acting, record)]).await {
        tracing::error!(error = %e, %action, "could not record a self-audit event");
    }
}

/// A one-line self-audit record with no metadata.
pub async fn note(
    store: &Store,
    acting: &Acting,
    action: &str,
    category: Category,
    outcome: Outcome,
    level: Level,
    description: String,
) {
    record(
        store,
        acting,
        Record {
            action,
            category,
            outcome,
            level,
            description,
            metadata: Map::new(),
        },
    )
    .await;
}

/// Records that `acting` acknowledged alert `id` (from the REST route or the dashboard).
pub async fn acknowledged(store: &Store, acting: &Acting, id: u64) {
    note(
        store,
        acting,
        "alert.acknowledge",
        Category::Security,
        Outcome::Success,
        Level::Info,
        format!("acknowledged alert {id}"),
    )
    .await;
}

/// The actor of a server function's request.
pub async fn acting_in_server_fn() -> Acting {
    match leptos_axum::extract::<ActingFrom>().await {
        Ok(ActingFrom(a)) => a,
        Err(_) => Acting {
            user: "admin".into(),
            ..Acting::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_address_and_agent_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, "curl/8".parse().unwrap());
        let peer = ConnectInfo(SocketAddr::from(([10, 1, 2, 3], 4000)));
        let acting = Acting::admin(&headers, Some(&peer));
        let e = event(
            &acting,
            Record {
                action: "subject.erase",
                category: Category::Security,
                outcome: Outcome::Success,
                level: Level::Warning,
                description: "erased".into(),
                metadata: Map::new(),
            },
        );
        assert_eq!(e.user.id, "admin");
        let r = e.request.unwrap();
        assert_eq!(r.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(r.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(e.source.0, SOURCE);
        assert!(e.metadata.is_none());
        assert!(event(
            &Acting::system(),
            Record {
                action: "events.cleanup",
                category: Category::DataManagement,
                outcome: Outcome::Success,
                level: Level::Info,
                description: "x".into(),
                metadata: Map::new(),
            }
        )
        .request
        .is_none());
    }
}
