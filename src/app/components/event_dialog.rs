//! The event detail dialog, open at `/events/{eventId}` over the explorer: overview, changes
//! as a before/after diff, request, location, entity, metadata as a collapsible tree, raw JSON
//! with copy, the chain seal verified on the server, and related events one click away.

use crate::api::load_event;
use crate::app::browser;
use crate::model::{Change, EventDetail, RiskReason, StoredEvent};
use crate::search::RiskBand;
use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_navigate, use_params_map};
use leptos_router::NavigateOptions;
use serde_json::Value;

/// The current query string with its `?`, so links keep the explorer's view.
fn search_of(raw: &str) -> String {
    match raw {
        "" => String::new(),
        s if s.starts_with('?') => s.to_string(),
        s => format!("?{s}"),
    }
}

/// Formats `ms` in the browser's time zone once it is known, in UTC before (the server's
/// render and the first hydrated frame agree on UTC).
pub fn format_time(ms: i64, offset_minutes: Option<i32>, with_date: bool) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    let pattern = if with_date {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%H:%M:%S"
    };
    match offset_minutes.and_then(|m| chrono::FixedOffset::east_opt(m * 60)) {
        Some(offset) => t.with_timezone(&offset).format(pattern).to_string(),
        None => format!("{} UTC", t.format(pattern)),
    }
}

/// A signal holding the browser's UTC offset once hydrated; `None` during server rendering.
pub fn use_local_offset() -> ReadSignal<Option<i32>> {
    let (offset, set_offset) = signal(None::<i32>);
    Effect::new(move |_| {
        set_offset.set(Some(browser::local_offset_minutes(
            chrono::Utc::now().timestamp_millis(),
        )));
    });
    offset
}

/// Where the risk score came from and, when Trailwatch assigned it, each rule's share.
fn risk_section(score: Option<u8>, reasons: Option<Vec<RiskReason>>) -> impl IntoView {
    let body = match (score, reasons) {
        (Some(_), Some(reasons)) if reasons.is_empty() => view! {
            <p class="muted">"Assigned at ingest: no rule flagged this event."</p>
        }
        .into_any(),
        (Some(total), Some(reasons)) => view! {
            <p class="muted small">"Assigned at ingest by the rules below (the sum, at most 100)."</p>
            <table class="risk-reasons">
                <tbody>
                    {reasons
                        .into_iter()
                        .map(|r| {
                            view! {
                                <tr>
                                    <th scope="row">{r.label().to_string()}</th>
                                    <td>{r.detail}</td>
                                    <td class="num">"+" {r.points}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
                <tfoot>
                    <tr><th scope="row" colspan="2">"Score"</th><td class="num">{total}</td></tr>
                </tfoot>
            </table>
        }
        .into_any(),
        (Some(_), None) => view! { <p class="muted">"Given by the sender."</p> }.into_any(),
        (None, _) => view! {
            <p class="muted">"No score: the sender gave none and risk scoring was off."</p>
        }
        .into_any(),
    };
    view! {
        <section class="detail-section" id="risk-section">
            <h3>"Risk " <RiskBadge score=score /></h3>
            {body}
        </section>
    }
}

/// The risk score as a badge coloured by band.
#[component]
pub fn RiskBadge(score: Option<u8>) -> impl IntoView {
    match score {
        Some(s) => {
            let band = RiskBand::of(s).as_str();
            view! {
                <span class=format!("risk risk-{band}") title=format!("risk {s} ({band})")>{s}</span>
            }
            .into_any()
        }
        None => view! { <span class="risk risk-none" title="no risk score">"–"</span> }.into_any(),
    }
}

/// The dialog. Closing it (button, backdrop, `Esc`) returns to the explorer with its view.
#[component]
pub fn EventDialog() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").unwrap_or_default()));
    let detail = Resource::new(move || id.get(), load_event);
    let location = use_location();
    let navigate = use_navigate();
    let close = {
        let navigate = navigate.clone();
        move || {
            let search = search_of(&location.search.get_untracked());
            navigate(
                &format!("/events{search}"),
                NavigateOptions {
                    scroll: false,
                    ..Default::default()
                },
            );
        }
    };
    let on_key = {
        let close = close.clone();
        window_event_listener(leptos::ev::keydown, move |ev| {
            if ev.key() == "Escape" {
                ev.prevent_default();
                close();
            }
        })
    };
    on_cleanup(move || on_key.remove());
    Effect::new(move |_| {
        // Focus moves into the dialog so keyboard users land on it.
        if detail.get().is_some() {
            browser::focus("dialog-close");
        }
    });
    let close_backdrop = close.clone();
    let offset = use_local_offset();
    view! {
        <div class="dialog-backdrop" on:click=move |_| close_backdrop()>
            <div
                class="dialog"
                role="dialog"
                aria-modal="true"
                aria-labelledby="dialog-title"
                on:click=|ev| ev.stop_propagation()
            >
                <Suspense fallback=|| view! { <p class="loading">"Loading the event…"</p> }>
                    {
                        let close = close.clone();
                        move || {
                            let close = close.clone();
                            Suspend::new(async move {
                                let search = search_of(&location.search.get_untracked());
                                match detail.await {
                                    Ok(Some(d)) => view! { <DetailBody detail=d close search offset /> }.into_any(),
                                    Ok(None) => view! {
                                        <DialogMessage title="No such event" text="There is no event with this id.".to_string() close />
                                    }.into_any(),
                                    Err(e) => view! {
                                        <DialogMessage title="The event could not load" text=e.to_string() close />
                                    }.into_any(),
                                }
                            })
                        }
                    }
                </Suspense>
            </div>
        </div>
    }
}

#[component]
fn DialogMessage(
    title: &'static str,
    text: String,
    close: impl Fn() + Clone + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <div class="dialog-head">
            <h2 id="dialog-title">{title}</h2>
            <button id="dialog-close" class="button ghost small" aria-label="Close" on:click=move |_| close()>"✕"</button>
        </div>
        <p class="muted">{text}</p>
    }
}

#[component]
fn DetailBody(
    detail: EventDetail,
    close: impl Fn() + Clone + Send + Sync + 'static,
    search: String,
    offset: ReadSignal<Option<i32>>,
) -> impl IntoView {
    let EventDetail {
        event,
        seal,
        same_correlation,
        same_session,
    } = detail;
    let e = event.event.clone();
    let outcome = e.outcome.as_str();
    let level = e.level.as_str();
    let ts = e.timestamp.timestamp_millis();
    let utc = e.timestamp.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string();
    // Serialised once: shown in the page and handed to the clipboard.
    let raw_text = serde_json::to_string_pretty(&event).unwrap_or_default();
    let raw = raw_text.clone();
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        let raw = raw.clone();
        leptos::task::spawn_local(async move {
            copied.set(Some(browser::copy_text(raw).await));
        });
    };
    let verified = seal.verified;
    let related = |title: &'static str, items: Vec<StoredEvent>, search: String| {
        (!items.is_empty()).then(|| {
            view! {
                <section class="detail-section">
                    <h3>{title}</h3>
                    <ul class="related">
                        {items
                            .into_iter()
                            .map(|r| {
                                let href = format!("/events/{}{}", r.event_id, search);
                                view! {
                                    <li>
                                        <a href=href>
                                            <span class=format!("chip chip-{}", r.event.outcome.as_str())>{r.event.outcome.as_str()}</span>
                                            <span class="related-action">{r.event.action.clone()}</span>
                                            <span class="muted small">{r.event.user.display_name().to_string()}</span>
                                            <span class="muted small">{format!("#{}", r.seq)}</span>
                                        </a>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                </section>
            }
        })
    };
    let row = |label: &'static str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .map(|v| view! { <dt>{label}</dt><dd>{v}</dd> })
    };
    let request = e.request.clone().map(|r| {
        view! {
            <section class="detail-section">
                <h3>"Request"</h3>
                <dl class="detail-grid">
                    {row("Method", r.method.clone())}
                    {row("Path", r.path.clone())}
                    {row("Status", r.status_code.map(|s| s.to_string()))}
                    {row("Response time", r.response_time.map(|t| format!("{t} ms")))}
                    {row("IP", r.ip.clone())}
                    {row("User agent", r.user_agent.clone())}
                </dl>
            </section>
        }
    });
    let place = e.location.clone().map(|l| {
        view! {
            <section class="detail-section">
                <h3>"Location"</h3>
                <dl class="detail-grid">{row("Country", l.country.clone())}{row("City", l.city.clone())}</dl>
            </section>
        }
    });
    let entity = e.entity.clone().map(|x| {
        view! {
            <section class="detail-section">
                <h3>"Entity"</h3>
                <dl class="detail-grid">{row("Type", x.kind.clone())}{row("Id", x.id.clone())}{row("Name", x.name.clone())}</dl>
            </section>
        }
    });
    let system = e.system.clone().map(|x| {
        view! {
            <section class="detail-section">
                <h3>"System"</h3>
                <dl class="detail-grid">
                    {row("Service", x.service.clone())}{row("Host", x.server.clone())}
                    {row("Environment", x.environment.clone())}{row("Version", x.version.clone())}
                </dl>
            </section>
        }
    });
    let changes = e.changes.clone().filter(|c| !c.is_empty()).map(|c| {
        view! {
            <section class="detail-section">
                <h3>"Changes"</h3>
                <table class="diff">
                    <thead><tr><th scope="col">"Field"</th><th scope="col">"Before"</th><th scope="col">"After"</th></tr></thead>
                    <tbody>
                        {c.into_iter().map(|(field, Change { before: old, after: new })| view! {
                            <tr>
                                <th scope="row">{field}</th>
                                <td class="diff-old"><code>{json_text(&old)}</code></td>
                                <td class="diff-new"><code>{json_text(&new)}</code></td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        }
    });
    let metadata = e.metadata.clone().filter(|m| !m.is_empty()).map(|m| {
        view! {
            <section class="detail-section">
                <h3>"Metadata"</h3>
                <div class="tree">{tree_children(&Value::Object(m))}</div>
            </section>
        }
    });
    let filter_link = |param: &str, value: &Option<String>| {
        value.clone().map(|v| {
            let href = format!("/events?{param}={}", crate::app::pages::encode(&v));
            view! { <a href=href title="Show every event with this value">{v}</a> }
        })
    };
    let risk = risk_section(e.risk_score, e.risk_reasons.clone());
    let correlation = filter_link("correlation_id", &e.correlation_id);
    let session = filter_link("session_id", &e.session_id);
    view! {
        <div class="dialog-head">
            <div>
                <h2 id="dialog-title">{e.action.clone()}</h2>
                <div class="chips">
                    <span class=format!("chip chip-{outcome}")>{outcome}</span>
                    <span class=format!("chip level level-chip-{level}")>{level}</span>
                    <span class="chip chip-category">{e.category.as_str().replace('_', " ")}</span>
                    <RiskBadge score=e.risk_score />
                </div>
            </div>
            <button id="dialog-close" class="button ghost small" aria-label="Close" on:click=move |_| close()>"✕"</button>
        </div>
        <div class="dialog-body">
            {e.description.clone().map(|d| view! { <p class="detail-description">{d}</p> })}
            <section class="detail-section">
                <h3>"Overview"</h3>
                <dl class="detail-grid">
                    <dt>"Who"</dt>
                    <dd>{e.user.display_name().to_string()}{e.user.username.is_some().then(|| format!(" ({})", e.user.id))}</dd>
                    <dt>"When"</dt>
                    <dd>
                        <time datetime=e.timestamp.to_rfc3339()>{move || format_time(ts, offset.get(), true)}</time>
                        <span class="muted small">" · " {utc}</span>
                    </dd>
                    <dt>"Source"</dt><dd>{e.source.0.clone()}</dd>
                    {e.submitted_by.clone().map(|s| view! { <dt>"Submitted by"</dt><dd class="mono">{s}</dd> })}
                    {correlation.map(|c| view! { <dt>"Correlation"</dt><dd>{c}</dd> })}
                    {session.map(|s| view! { <dt>"Session"</dt><dd>{s}</dd> })}
                </dl>
            </section>
            {risk}
            {changes}
            {request}
            {place}
            {entity}
            {system}
            {metadata}
            <section class="detail-section">
                <h3>"Integrity"</h3>
                <p>
                    <span class=if verified { "seal seal-ok" } else { "seal seal-bad" }>
                        {if verified { "✓ verified" } else { "✗ verification failed" }}
                    </span>
                    {seal.problem.clone().map(|p| view! { <span class="muted small">" " {p}</span> })}
                </p>
                <dl class="detail-grid mono">
                    <dt>"Seq"</dt><dd>{seal.seq.0}</dd>
                    <dt>"Hash"</dt><dd class="hash">{seal.hash.clone()}</dd>
                    <dt>"Previous"</dt><dd class="hash">{seal.prev_hash.clone()}</dd>
                </dl>
            </section>
            {related("Same correlation", same_correlation, search.clone())}
            {related("Same session", same_session, search)}
            <section class="detail-section">
                <div class="raw-head">
                    <h3>"Raw JSON"</h3>
                    <button class="button small" on:click=copy>"Copy JSON"</button>
                    <span class="muted small" role="status">
                        {move || match copied.get() {
                            Some(true) => "Copied",
                            Some(false) => "Copy failed: the browser refused",
                            None => "",
                        }}
                    </span>
                </div>
                <pre class="raw" aria-label="Raw JSON">{raw_text}</pre>
            </section>
        </div>
    }
    .into_any()
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The children of an object or array as a tree of `<details>`; scalars as `key: value`.
fn tree_children(v: &Value) -> AnyView {
    let entries: Vec<(String, Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        _ => Vec::new(),
    };
    view! {
        <ul>
            {entries
                .into_iter()
                .map(|(k, v)| match &v {
                    Value::Object(_) | Value::Array(_) => {
                        let size = match &v {
                            Value::Object(m) => format!("{{{}}}", m.len()),
                            Value::Array(a) => format!("[{}]", a.len()),
                            _ => String::new(),
                        };
                        view! {
                            <li>
                                <details open>
                                    <summary><span class="tree-key">{k}</span> <span class="muted small">{size}</span></summary>
                                    {tree_children(&v)}
                                </details>
                            </li>
                        }
                        .into_any()
                    }
                    scalar => view! {
                        <li><span class="tree-key">{k}</span>": "<span class="tree-value">{json_text(scalar)}</span></li>
                    }
                    .into_any(),
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}
