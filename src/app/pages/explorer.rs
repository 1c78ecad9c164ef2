//! `/events`: the log explorer. Server-side search and filters with keyset "load more", in
//! event-time order or sorted by a column, matches highlighted, new matching events streaming
//! in at their place through a filtered subscription, the whole view in the URL, keyboard
//! navigation, exports. The event detail dialog opens over it at `/events/{eventId}`.

pub mod view;

use crate::api::{list_events, list_views, DeleteView, SaveView};
use crate::app::browser;
use crate::app::components::counter::group_thousands;
use crate::app::components::event_dialog::{format_time, use_local_offset, RiskBadge};
use crate::app::components::{ConnectionBadge, TopBar};
use crate::app::live::{follow, Follower};
use crate::model::{
    Category, ConnectionState, EventFilter, EventOrder, EventPage, Level, Outcome, Seq, SortField,
    StoredEvent,
};
use crate::search::{Column, Query, RiskBand, Run};
use leptos::prelude::*;
use leptos_router::components::Outlet;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;
use view::{parse_local, to_local_input, ExplorerView, TimeRange};

pub use view::encode;

/// How far down (CSS pixels) the reader may scroll before new events wait behind the pill.
const TOP_SLACK: f64 = 120.0;

/// Navigates to `view`, keeping the scroll position; a new history entry, so back and
/// forward step through views.
fn use_go() -> impl Fn(&ExplorerView) + Clone + Send + Sync + 'static {
    let navigate = use_navigate();
    move |v: &ExplorerView| {
        navigate(
            &format!("/events{}", v.to_query()),
            NavigateOptions {
                scroll: false,
                ..Default::default()
            },
        )
    }
}

/// `/events` and, through its outlet, `/events/{eventId}`.
#[component]
pub fn ExplorerPage() -> impl IntoView {
    let params = use_query_map();
    let view = Memo::new(move |_| {
        params.with(|p| ExplorerView::from_params(p.latest_values().map(|(k, v)| (k.as_ref(), v))))
    });
    // Pausing changes the URL but not the data.
    let key = Memo::new(move |_| view.with(|v| (v.filter.clone(), v.range, v.order)));
    let page = Resource::new(
        move || key.get(),
        |(filter, range, order)| async move {
            let v = ExplorerView {
                filter,
                range,
                order,
                paused: false,
            };
            let effective = v.effective_filter(chrono::Utc::now());
            let result = list_events(effective.clone(), Some(order), None).await;
            (effective, order, result)
        },
    );
    let connection = RwSignal::new(ConnectionState::Connecting);
    view! {
        <TopBar current="events">
            <Show when=move || view.with(ExplorerView::follows_live)>
                <ConnectionBadge state=connection />
            </Show>
        </TopBar>
        <main class="page explorer">
            <SearchBar view />
            <Transition fallback=|| view! { <p class="loading">"Searching…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        (filter, order, Ok(p)) => view! { <Results filter order page=p view connection /> }.into_any(),
                        (_, _, Err(e)) => view! {
                            <div class="panel notice" role="alert">
                                <strong>"The search could not run. "</strong>
                                <span>{e.to_string()}</span>
                            </div>
                        }.into_any(),
                    }
                })}
            </Transition>
            <Outlet />
        </main>
    }
}

/// The search box, its inline syntax errors, and the filters.
#[component]
fn SearchBar(view: Memo<ExplorerView>) -> impl IntoView {
    let go = use_go();
    let draft = RwSignal::new(view.with_untracked(|v| v.filter.q.clone().unwrap_or_default()));
    // Back/forward and links change the URL; the box follows.
    Effect::new(move |_| draft.set(view.with(|v| v.filter.q.clone().unwrap_or_default())));
    let error = RwSignal::new(None::<String>);
    let submit = {
        let go = go.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let text = draft.get_untracked();
            match Query::parse(&text) {
                Err(e) => error.set(Some(match e.position {
                    Some(p) => format!("{} (at character {})", e.message, p + 1),
                    None => e.message,
                })),
                Ok(_) => {
                    error.set(None);
                    let mut v = view.get_untracked();
                    v.filter.q = (!text.trim().is_empty()).then_some(text);
                    go(&v);
                }
            }
        }
    };
    let update = {
        let go = go.clone();
        move |f: Box<dyn FnOnce(&mut ExplorerView)>| {
            let mut v = view.get_untracked();
            f(&mut v);
            go(&v);
        }
    };
    let toggle_chip = {
        let update = update.clone();
        move |kind: &'static str, value: &'static str| {
            update(Box::new(move |v: &mut ExplorerView| {
                fn flip<T: PartialEq + Copy>(list: &mut Vec<T>, item: T) {
                    if let Some(i) = list.iter().position(|x| *x == item) {
                        list.remove(i);
                    } else {
                        list.push(item);
                    }
                }
                match kind {
                    "level" => Level::parse(value)
                        .into_iter()
                        .for_each(|l| flip(&mut v.filter.level, l)),
                    "outcome" => Outcome::parse(value)
                        .into_iter()
                        .for_each(|o| flip(&mut v.filter.outcome, o)),
                    _ => Category::parse(value)
                        .into_iter()
                        .for_each(|c| flip(&mut v.filter.category, c)),
                }
            }))
        }
    };
    let chip = {
        let toggle_chip = toggle_chip.clone();
        move |kind: &'static str, value: &'static str, label: String| {
            let toggle_chip = toggle_chip.clone();
            let on = move || {
                view.with(|v| match kind {
                    "level" => v.filter.level.iter().any(|l| l.as_str() == value),
                    "outcome" => v.filter.outcome.iter().any(|o| o.as_str() == value),
                    _ => v.filter.category.iter().any(|c| c.as_str() == value),
                })
            };
            view! {
                <button
                    type="button"
                    class=move || format!("filter-chip {kind}-{value}{}", if on() { " on" } else { "" })
                    aria-pressed=move || on().to_string()
                    on:click=move |_| toggle_chip(kind, value)
                >
                    {label}
                </button>
            }
        }
    };
    let set_range = {
        let update = update.clone();
        move |ev: leptos::ev::Event| {
            let name = event_target_value(&ev);
            update(Box::new(move |v: &mut ExplorerView| {
                v.range = match TimeRange::PRESETS.iter().find(|(_, n, _)| *n == name) {
                    Some((r, _, _)) => *r,
                    // A custom range starts as the last 24 hours, open-ended, to be edited; in
                    // whole seconds, as the pickers show it.
                    None => TimeRange::Custom {
                        from: chrono::DateTime::from_timestamp(
                            (chrono::Utc::now() - chrono::Duration::hours(24)).timestamp(),
                            0,
                        ),
                        to: None,
                    },
                };
            }))
        }
    };
    let offset = use_local_offset();
    let custom_bound = {
        let update = update.clone();
        move |which: &'static str, label: &'static str| {
            let update = update.clone();
            let current = move || {
                let bound = view.with(|v| match v.range {
                    TimeRange::Custom { from, to } => {
                        if which == "from" {
                            from
                        } else {
                            to
                        }
                    }
                    _ => None,
                });
                bound
                    .map(|t| to_local_input(t, offset.get().unwrap_or(0)))
                    .unwrap_or_default()
            };
            view! {
                <label class="field inline">
                    <span>{label}</span>
                    <input
                        type="datetime-local"
                        step="1"
                        name=which
                        prop:value=current
                        on:change=move |ev| {
                            let t = parse_local(&event_target_value(&ev), offset.get_untracked().unwrap_or(0));
                            update(Box::new(move |v: &mut ExplorerView| {
                                if let TimeRange::Custom { from, to } = &mut v.range {
                                    if which == "from" { *from = t } else { *to = t }
                                }
                            }))
                        }
                    />
                </label>
            }
        }
    };
    let set_risk = {
        let update = update.clone();
        move |ev: leptos::ev::Event| {
            let band = event_target_value(&ev);
            update(Box::new(move |v: &mut ExplorerView| {
                let range = RiskBand::ALL
                    .into_iter()
                    .find(|b| b.as_str() == band)
                    .map(RiskBand::range);
                v.filter.min_risk = range.map(|r| r.0);
                v.filter.max_risk = range.map(|r| r.1);
            }))
        }
    };
    let risk_band = move || {
        view.with(|v| {
            RiskBand::ALL
                .into_iter()
                .find(|b| Some(b.range()) == v.filter.min_risk.zip(v.filter.max_risk))
                .map_or_else(
                    || {
                        if v.filter.min_risk.is_some() || v.filter.max_risk.is_some() {
                            "custom"
                        } else {
                            "any"
                        }
                    },
                    RiskBand::as_str,
                )
        })
    };
    let risk_bound = {
        let update = update.clone();
        move |which: &'static str, label: &'static str| {
            let update = update.clone();
            let current = move || {
                view.with(|v| {
                    if which == "min_risk" {
                        v.filter.min_risk
                    } else {
                        v.filter.max_risk
                    }
                })
                .map(|r| r.to_string())
                .unwrap_or_default()
            };
            view! {
                <label class="field">
                    <span>{label}</span>
                    <input
                        type="number"
                        min="0"
                        max="100"
                        name=which
                        prop:value=current
                        on:change=move |ev| {
                            let value = event_target_value(&ev).trim().parse::<u8>().ok().filter(|r| *r <= 100);
                            update(Box::new(move |v: &mut ExplorerView| {
                                if which == "min_risk" { v.filter.min_risk = value } else { v.filter.max_risk = value }
                            }))
                        }
                    />
                </label>
            }
        }
    };
    let field = {
        let update = update.clone();
        move |name: &'static str, label: &'static str| {
            let update = update.clone();
            let current = move || {
                view.with(|v| {
                    let f = &v.filter;
                    match name {
                        "user_id" => f.user_id.clone(),
                        "action" => f.action.clone(),
                        "entity" => f.entity.clone(),
                        "source" => f.source.clone(),
                        "submitted_by" => f.submitted_by.clone(),
                        "session_id" => f.session_id.clone(),
                        _ => f.correlation_id.clone(),
                    }
                    .unwrap_or_default()
                })
            };
            view! {
                <label class="field">
                    <span>{label}</span>
                    <input
                        type="text"
                        name=name
                        prop:value=current
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            let value = (!value.trim().is_empty()).then(|| value.trim().to_string());
                            update(Box::new(move |v: &mut ExplorerView| {
                                let f = &mut v.filter;
                                match name {
                                    "user_id" => f.user_id = value,
                                    "action" => f.action = value,
                                    "entity" => f.entity = value,
                                    "source" => f.source = value,
                                    "submitted_by" => f.submitted_by = value,
                                    "session_id" => f.session_id = value,
                                    _ => f.correlation_id = value,
                                }
                            }))
                        }
                    />
                </label>
            }
        }
    };
    let clear = {
        let go = go.clone();
        move |_| {
            error.set(None);
            go(&ExplorerView::default())
        }
    };
    let more_count = move || {
        view.with(|v| {
            let f = &v.filter;
            [
                &f.user_id,
                &f.action,
                &f.entity,
                &f.source,
                &f.submitted_by,
                &f.session_id,
                &f.correlation_id,
            ]
            .iter()
            .filter(|x| x.is_some())
            .count()
                + usize::from(!f.category.is_empty())
        })
    };
    view! {
        <section class="panel searchbar" aria-label="Search and filters">
            <form class="search-form" role="search" on:submit=submit>
                <label class="visually-hidden" for="explorer-q">"Search events"</label>
                <input
                    id="explorer-q"
                    class="search-input"
                    type="search"
                    placeholder="Search: words, \"phrases\", user:alice, -action:login, risk>70   (press /)"
                    autocomplete="off"
                    spellcheck="false"
                    prop:value=move || draft.get()
                    on:input=move |ev| {
                        draft.set(event_target_value(&ev));
                        error.set(None);
                    }
                    aria-invalid=move || error.with(Option::is_some).to_string()
                    aria-describedby="explorer-q-error"
                />
                <button type="submit" class="button">"Search"</button>
            </form>
            <p id="explorer-q-error" class="query-error" role="alert">
                {move || error.get().map(|e| format!("Query not run: {e}"))}
            </p>
            <div class="filters">
                <div class="filter-group" role="group" aria-label="Level">
                    {Level::ALL.iter().rev().map(|l| chip("level", l.as_str(), l.as_str().to_string())).collect_view()}
                </div>
                <div class="filter-group" role="group" aria-label="Outcome">
                    {Outcome::ALL.iter().map(|o| chip("outcome", o.as_str(), o.as_str().to_string())).collect_view()}
                </div>
                <label class="field inline">
                    <span>"Time"</span>
                    <select name="range" on:change=set_range prop:value=move || view.with(|v| v.range.name())>
                        {TimeRange::PRESETS.iter().map(|(_, n, label)| view! { <option value=*n>{*label}</option> }).collect_view()}
                        <option value="custom">"Custom range…"</option>
                    </select>
                </label>
                <Show when=move || view.with(|v| matches!(v.range, TimeRange::Custom { .. }))>
                    {custom_bound("from", "From")}
                    {custom_bound("to", "To")}
                </Show>
                <label class="field inline">
                    <span>"Risk"</span>
                    <select name="risk" on:change=set_risk prop:value=risk_band>
                        <option value="any">"Any"</option>
                        <option value="low">"Low (0–30)"</option>
                        <option value="medium">"Medium (31–70)"</option>
                        <option value="high">"High (71–100)"</option>
                        <option value="custom" disabled>"Custom (see more filters)"</option>
                    </select>
                </label>
                <details class="more-filters">
                    <summary>
                        "More filters"
                        {move || (more_count() > 0).then(|| view! { <span class="count-dot">{more_count()}</span> })}
                    </summary>
                    <div class="more-grid">
                        {field("user_id", "User")}
                        {field("action", "Action (prefix*)")}
                        {field("entity", "Entity")}
                        {field("source", "Source (prefix*)")}
                        {field("submitted_by", "Submitted by (token:*)")}
                        {field("session_id", "Session id")}
                        {field("correlation_id", "Correlation id")}
                        {risk_bound("min_risk", "Min risk (0–100)")}
                        {risk_bound("max_risk", "Max risk (0–100)")}
                        <div class="filter-group wide" role="group" aria-label="Category">
                            {Category::ALL.iter().map(|c| chip("category", c.as_str(), c.as_str().replace('_', " "))).collect_view()}
                        </div>
                    </div>
                </details>
                <button type="button" class="button ghost small" on:click=clear>"Clear"</button>
                <SavedViewsMenu view />
            </div>
        </section>
    }
}

/// Saving the current view under a name, and the saved views to open or delete.
#[component]
fn SavedViewsMenu(view: Memo<ExplorerView>) -> impl IntoView {
    let save = ServerAction::<SaveView>::new();
    let delete = ServerAction::<DeleteView>::new();
    let views = Resource::new(
        move || (save.version().get(), delete.version().get()),
        |_| list_views(),
    );
    let name = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save.dispatch(SaveView {
            name: name.get_untracked(),
            query: view.with_untracked(ExplorerView::to_query),
        });
        name.set(String::new());
    };
    let save_error = move || {
        save.value()
            .get()
            .and_then(Result::err)
            .map(|e| view! { <p class="query-error" role="alert">{e.to_string()}</p> })
    };
    view! {
        <details class="saved-views">
            <summary class="button small ghost">"Saved views"</summary>
            <div class="menu wide">
                <form class="save-view" on:submit=submit>
                    <label class="field">
                        <span>"Name this view"</span>
                        <input
                            type="text"
                            name="view-name"
                            maxlength="80"
                            required
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev))
                        />
                    </label>
                    <button type="submit" class="button small">"Save view"</button>
                </form>
                {save_error}
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match views.await {
                            Ok(list) if list.is_empty() => view! { <p class="muted small">"No saved views yet."</p> }.into_any(),
                            Ok(list) => view! {
                                <ul class="view-list" aria-label="Saved views">
                                    {list.into_iter().map(|v| {
                                        let id = v.id;
                                        let label = format!("Delete view {}", v.name);
                                        view! {
                                            <li>
                                                <a href=format!("/events{}", v.query)>{v.name.clone()}</a>
                                                <button
                                                    type="button"
                                                    class="button ghost small"
                                                    aria-label=label
                                                    on:click=move |_| { delete.dispatch(DeleteView { id }); }
                                                >"✕"</button>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                            }.into_any(),
                            Err(e) => view! { <p class="query-error">{e.to_string()}</p> }.into_any(),
                        }
                    })}
                </Transition>
            </div>
        </details>
    }
}

/// The rows the explorer shows and what the live socket adds to them.
#[derive(Clone, Copy)]
struct ExplorerLive {
    /// The rows, in `order`.
    rows: RwSignal<Vec<StoredEvent>>,
    order: EventOrder,
    /// Matches that arrived while the reader was paused, or that belong at the top while
    /// the reader is scrolled down: they wait behind the "new events" pill.
    pending: RwSignal<Vec<StoredEvent>>,
    /// Matches that belong below the last loaded row (older, in time order): counted, and
    /// shown when the pages reach them, never inserted out of place.
    below: RwSignal<Vec<StoredEvent>>,
    /// Where the next page starts; `None` when every match is loaded.
    cursor: RwSignal<Option<String>>,
    /// The newest seq the stream has covered; resume after it.
    position: RwSignal<Seq>,
    total: RwSignal<u64>,
    filter: StoredValue<EventFilter>,
    paused: Signal<bool>,
    at_top: RwSignal<bool>,
    connection: RwSignal<ConnectionState>,
}

impl ExplorerLive {
    /// Puts a new match where the order puts it: in the loaded rows; behind the pill when
    /// that is the top and the reader is scrolled away from it (unless `top_ok`); or with
    /// the uncounted rows below the last loaded one.
    fn place(&self, event: StoredEvent, top_ok: bool) {
        // A page read after the event was stored may already hold it.
        if self
            .rows
            .with_untracked(|r| r.iter().any(|x| x.seq == event.seq))
        {
            return;
        }
        let order = self.order;
        let (at, len) = self.rows.with_untracked(|r| {
            (
                r.partition_point(|x| order.compare(x, &event).is_lt()),
                r.len(),
            )
        });
        if at == len && self.cursor.with_untracked(Option::is_some) {
            self.below.update(|b| b.push(event));
        } else if at == 0 && !top_ok && !self.at_top.get_untracked() {
            self.pending.update(|p| p.push(event));
        } else {
            self.rows.update(|r| r.insert(at, event));
        }
    }

    /// Places what waited behind the pill.
    fn flush(&self) {
        let fresh = self.pending.try_update(std::mem::take).unwrap_or_default();
        for event in fresh {
            self.place(event, true);
        }
    }

    /// Appends a further page: rows already shown are left out, and the waiting rows it
    /// reached are no longer counted as below.
    fn extend(&self, page: EventPage) {
        let order = self.order;
        self.rows.update(|r| {
            let shown: std::collections::HashSet<Seq> = r.iter().map(|e| e.seq).collect();
            r.extend(page.items.into_iter().filter(|e| !shown.contains(&e.seq)));
        });
        let more = page.next_cursor.is_some();
        self.cursor.set(page.next_cursor);
        let last = self.rows.with_untracked(|r| r.last().cloned());
        self.below.update(|b| {
            b.retain(|e| more && last.as_ref().is_some_and(|l| order.compare(e, l).is_gt()))
        });
    }
}

impl Follower for ExplorerLive {
    fn last_seq(&self) -> Seq {
        self.position.get_untracked()
    }

    fn filter(&self) -> Option<EventFilter> {
        Some(self.filter.get_value())
    }

    fn apply(&self, event: StoredEvent) {
        if event.seq <= self.position.get_untracked() {
            return;
        }
        self.position.set(event.seq);
        self.total.update(|t| *t += 1);
        if self.paused.get_untracked() {
            self.pending.update(|p| p.push(event));
        } else {
            self.place(event, false);
        }
    }

    fn caught_up(&self, head: Seq) {
        if head > self.position.get_untracked() {
            self.position.set(head);
        }
    }

    fn set_connection(&self, state: ConnectionState) {
        self.connection.set(state);
    }
}

/// The result table for one query, live while the view follows now.
#[component]
fn Results(
    filter: EventFilter,
    order: EventOrder,
    page: EventPage,
    view: Memo<ExplorerView>,
    connection: RwSignal<ConnectionState>,
) -> impl IntoView {
    let highlight = StoredValue::new(filter.compile().unwrap_or_default());
    let at_top = RwSignal::new(true);
    let paused = Memo::new(move |_| view.with(|v| v.paused));
    let cursor = RwSignal::new(page.next_cursor);
    let live = ExplorerLive {
        rows: RwSignal::new(page.items),
        order,
        pending: RwSignal::new(Vec::new()),
        below: RwSignal::new(Vec::new()),
        cursor,
        position: RwSignal::new(page.head_seq),
        total: RwSignal::new(page.total),
        filter: StoredValue::new(filter.clone()),
        paused: paused.into(),
        at_top,
        connection,
    };
    let capped = page.total_is_lower_bound;
    // The search index was still catching up with a burst: say how far this answer reaches.
    let indexing = page.search_indexed_through;
    let loading_more = RwSignal::new(false);
    let selected = RwSignal::new(None::<Seq>);
    let follows = view.with_untracked(ExplorerView::follows_live);
    if follows {
        follow(live);
    }

    let flush = move || {
        live.flush();
        browser::scroll_to_top();
    };
    // Back at the top and not paused: what waited joins the rows.
    Effect::new(move |_| {
        if !paused.get() && at_top.get() && live.pending.with(|p| !p.is_empty()) {
            live.flush();
        }
    });
    let scroll = window_event_listener(leptos::ev::scroll, move |_| {
        at_top.set(browser::scroll_y() < TOP_SLACK);
    });
    on_cleanup(move || scroll.remove());

    let go = use_go();
    let navigate = use_navigate();
    let open = move |seq: Seq| {
        let id = live
            .rows
            .with_untracked(|r| r.iter().find(|e| e.seq == seq).map(|e| e.event_id.clone()));
        if let Some(id) = id {
            navigate(
                &format!(
                    "/events/{id}{}",
                    view.with_untracked(ExplorerView::to_query)
                ),
                NavigateOptions {
                    scroll: false,
                    ..Default::default()
                },
            );
        }
    };
    let keys = {
        let open = open.clone();
        window_event_listener(leptos::ev::keydown, move |ev| {
            if ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
                return;
            }
            let key = ev.key();
            if key == "/" && !browser::typing_in_field() {
                ev.prevent_default();
                browser::focus("explorer-q");
                return;
            }
            if browser::typing_in_field() {
                return;
            }
            let step = match key.as_str() {
                "j" | "ArrowDown" => 1_i64,
                "k" | "ArrowUp" => -1,
                "Enter" => {
                    if let Some(seq) = selected.get_untracked() {
                        ev.prevent_default();
                        open(seq);
                    }
                    return;
                }
                _ => return,
            };
            ev.prevent_default();
            let next = live.rows.with_untracked(|rows| {
                let at = selected
                    .get_untracked()
                    .and_then(|s| rows.iter().position(|e| e.seq == s));
                let i = match at {
                    None => 0,
                    Some(i) => (i as i64 + step).clamp(0, rows.len() as i64 - 1) as usize,
                };
                rows.get(i).map(|e| e.seq)
            });
            if let Some(seq) = next {
                selected.set(Some(seq));
                browser::reveal(&format!("row-{}", seq.0));
            }
        })
    };
    on_cleanup(move || keys.remove());

    let load_more = move |_| {
        let Some(c) = cursor.get_untracked() else {
            return;
        };
        loading_more.set(true);
        let filter = live.filter.get_value();
        leptos::task::spawn_local(async move {
            if let Ok(next) = list_events(filter, Some(order), Some(c)).await {
                live.extend(next);
            }
            loading_more.set(false);
        });
    };
    let toggle_pause = {
        let go = go.clone();
        move |_| {
            let mut v = view.get_untracked();
            v.paused = !v.paused;
            go(&v);
        }
    };
    let export = move |format: &'static str| {
        let rest = rest_query(&live.filter.get_value());
        let sort = if order == EventOrder::default() {
            String::new()
        } else {
            format!("&sort={}", encode(&order.as_param()))
        };
        format!("/api/v1/events/export?format={format}{rest}{sort}")
    };
    let sort_by = {
        let go = go.clone();
        move |field: SortField| {
            let mut v = view.get_untracked();
            v.order = if v.order.field == field {
                v.order.reversed()
            } else {
                EventOrder::by(field)
            };
            go(&v);
        }
    };
    let header = {
        let sort_by = sort_by.clone();
        move |field: SortField, label: &'static str, class: &'static str| {
            let sort_by = sort_by.clone();
            let on = order.field == field;
            let aria = match (on, order.descending) {
                (false, _) => "none",
                (true, true) => "descending",
                (true, false) => "ascending",
            };
            let arrow = match (on, order.descending) {
                (false, _) => "",
                (true, true) => " ↓",
                (true, false) => " ↑",
            };
            view! {
                <th scope="col" class=class aria-sort=aria>
                    <button
                        type="button"
                        class=if on { "sort on" } else { "sort" }
                        title=format!("Sort by {}", label.to_lowercase())
                        on:click=move |_| sort_by(field)
                    >
                        {label}
                        <span class="sort-arrow" aria-hidden="true">{arrow}</span>
                    </button>
                </th>
            }
        }
    };
    let set_sort = {
        let go = go.clone();
        move |ev: leptos::ev::Event| {
            if let Some(field) = SortField::parse(&event_target_value(&ev)) {
                let mut v = view.get_untracked();
                v.order = EventOrder::by(field);
                go(&v);
            }
        }
    };
    let flip = move |_| {
        let mut v = view.get_untracked();
        v.order = v.order.reversed();
        go(&v);
    };
    let below_text = move || {
        let n = live.below.with(Vec::len);
        let noun = if n == 1 { "event" } else { "events" };
        let place = match (order.field, order.descending) {
            (SortField::Timestamp, true) => "earlier in time",
            (SortField::Timestamp, false) => "later in time",
            _ => "further down",
        };
        format!("{n} new {noun} {place}")
    };
    let count_text = move || count_line(live.rows.with(Vec::len) as u64, live.total.get(), capped);
    let offset = use_local_offset();
    view! {
        <section class="panel results" aria-label="Events">
            <div class="results-head">
                <span class="results-count" role="status">{count_text}</span>
                <Show when=move || live.below.with(|b| !b.is_empty())>
                    <span class="below-note" role="status" title="They belong further down the list, and show when Load more reaches them">
                        {below_text}
                    </span>
                </Show>
                <div class="results-actions">
                    <label class="field inline sort-field">
                        <span>"Sort"</span>
                        <select name="sort" aria-label="Sort by" on:change=set_sort prop:value=order.field.as_str()>
                            {SortField::ALL.iter().map(|f| view! { <option value=f.as_str()>{sort_label(*f)}</option> }).collect_view()}
                        </select>
                    </label>
                    <button
                        type="button"
                        class="button small ghost sort-direction"
                        aria-label=if order.descending { "Descending; sort ascending" } else { "Ascending; sort descending" }
                        on:click=flip
                    >
                        {direction_label(order)}
                    </button>
                    {follows.then(|| view! {
                        <button type="button" class="button small" on:click=toggle_pause aria-pressed=move || paused.get().to_string()>
                            {move || if paused.get() { "Resume live" } else { "Pause" }}
                        </button>
                    })}
                    <details class="export">
                        <summary class="button small ghost">"Export"</summary>
                        <div class="menu">
                            <a href=move || export("csv") download>"CSV"</a>
                            <a href=move || export("json") download>"JSON"</a>
                            <a href=move || export("ndjson") download>"NDJSON"</a>
                            <a href=move || export("ocsf") download title="Open Cybersecurity Schema Framework 1.2 records">"OCSF"</a>
                        </div>
                    </details>
                </div>
            </div>
            {indexing.map(|through| view! {
                <p class="notice" role="status">
                    {format!(
                        "Search is still indexing a burst: the list was read through #{through}, and newer matches are added live as they are found."
                    )}
                </p>
            })}
            <Show when=move || live.pending.with(|p| !p.is_empty())>
                <button type="button" class="new-pill" on:click=move |_| flush()>
                    {move || {
                        let n = live.pending.with(Vec::len);
                        format!("↑ {n} new event{}", if n == 1 { "" } else { "s" })
                    }}
                </button>
            </Show>
            <div class="table-wrap">
                <table class="events-table">
                    <thead>
                        <tr>
                            {header(SortField::Timestamp, "Time", "")}
                            {header(SortField::Level, "Level", "")}
                            <th scope="col" class="col-category">"Category"</th>
                            {header(SortField::Action, "Action", "")}
                            {header(SortField::User, "User", "")}
                            <th scope="col" class="col-entity">"Entity"</th>
                            <th scope="col">"Outcome"</th>
                            {header(SortField::Risk, "Risk", "col-risk")}
                            <th scope="col" class="col-description">"Description"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || live.rows.get()
                            key=|e| e.seq
                            children=move |e| {
                                let open = open.clone();
                                view! { <Row event=e highlight selected open offset /> }
                            }
                        />
                    </tbody>
                </table>
            </div>
            <Show when=move || live.rows.with(Vec::is_empty)>
                <div class="empty">
                    <p>"No events match."</p>
                    <p class="muted small">"Try fewer filters, a longer time range, or another query."</p>
                </div>
            </Show>
            <Show when=move || cursor.with(Option::is_some)>
                <div class="load-more">
                    <button type="button" class="button" on:click=load_more disabled=move || loading_more.get()>
                        {move || if loading_more.get() { "Loading…" } else { "Load more" }}
                    </button>
                </div>
            </Show>
        </section>
    }
    .into_any()
}

/// The results' count line: rows shown of the matches, with "+" when the count is a lower
/// bound (stopped by its cap, or by the answer's time budget short of it).
fn count_line(shown: u64, total: u64, lower_bound: bool) -> String {
    let plus = if lower_bound { "+" } else { "" };
    format!(
        "{} of {}{plus} matching",
        group_thousands(shown),
        group_thousands(total)
    )
}

/// What the sort menu calls `field`.
fn sort_label(field: SortField) -> &'static str {
    match field {
        SortField::Timestamp => "Event time",
        SortField::ReceivedAt => "Received",
        SortField::Seq => "Arrival (seq)",
        SortField::Level => "Level",
        SortField::Risk => "Risk",
        SortField::Action => "Action",
        SortField::User => "User",
    }
}

/// The direction button's words for `order`.
fn direction_label(order: EventOrder) -> &'static str {
    match (order.field, order.descending) {
        (SortField::Timestamp | SortField::ReceivedAt | SortField::Seq, true) => "↓ Newest first",
        (SortField::Timestamp | SortField::ReceivedAt | SortField::Seq, false) => "↑ Oldest first",
        (SortField::Action | SortField::User, false) => "↓ A to Z",
        (SortField::Action | SortField::User, true) => "↑ Z to A",
        (_, true) => "↓ Highest first",
        (_, false) => "↑ Lowest first",
    }
}

/// `filter` as REST query parameters (`&level=error&...`), for the export links.
fn rest_query(filter: &EventFilter) -> String {
    filter
        .rest_params()
        .into_iter()
        .map(|(k, v)| format!("&{k}={}", encode(&v)))
        .collect()
}

fn runs_view(runs: Vec<Run>) -> impl IntoView {
    runs.into_iter()
        .map(|r| {
            if r.marked {
                view! { <mark>{r.text}</mark> }.into_any()
            } else {
                r.text.into_any()
            }
        })
        .collect_view()
}

#[component]
fn Row(
    event: StoredEvent,
    highlight: StoredValue<Query>,
    selected: RwSignal<Option<Seq>>,
    open: impl Fn(Seq) + Clone + Send + Sync + 'static,
    offset: ReadSignal<Option<i32>>,
) -> impl IntoView {
    let seq = event.seq;
    let e = event.event;
    let marks = |column: Column, text: &str| highlight.with_value(|q| q.highlight(column, text));
    let outcome = e.outcome.as_str();
    let level = e.level.as_str();
    let ts = e.timestamp.timestamp_millis();
    let entity = e
        .entity
        .as_ref()
        .and_then(|x| x.name.clone().or_else(|| x.id.clone()))
        .unwrap_or_default();
    let user = e.user.id.clone();
    let description = e.description.clone().unwrap_or_default();
    let label = format!("{} {} by {}", e.action, outcome, user);
    let action = marks(Column::Action, &e.action);
    let user_runs = marks(Column::User, &user);
    let entity_runs = marks(Column::Entity, &entity);
    let description_runs = marks(Column::Description, &description);
    let is_selected = move || selected.get() == Some(seq);
    let open_click = open.clone();
    view! {
        <tr
            id=format!("row-{}", seq.0)
            class=move || format!("event-row outcome-{outcome} level-{level}{}", if is_selected() { " selected" } else { "" })
            aria-selected=move || is_selected().to_string()
            aria-label=label
            data-seq=seq.0
            on:click=move |_| {
                selected.set(Some(seq));
                open_click(seq);
            }
        >
            <td class="col-time">
                <time datetime=e.timestamp.to_rfc3339()>{move || format_time(ts, offset.get(), true)}</time>
            </td>
            <td class="col-level"><span class=format!("chip level level-chip-{level}")>{level}</span></td>
            <td class="col-category muted">{e.category.as_str().replace('_', " ")}</td>
            <td class="col-action">{runs_view(action)}</td>
            <td class="col-user">{runs_view(user_runs)}</td>
            <td class="col-entity">{runs_view(entity_runs)}</td>
            <td class="col-outcome"><span class=format!("chip chip-{outcome}")>{outcome}</span></td>
            <td class="col-risk"><RiskBadge score=e.risk_score /></td>
            <td class="col-description">{runs_view(description_runs)}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::count_line;

    #[test]
    fn a_lower_bound_count_says_so_below_the_cap_too() {
        assert_eq!(count_line(100, 493, true), "100 of 493+ matching");
        assert_eq!(count_line(100, 10_000, true), "100 of 10,000+ matching");
        assert_eq!(count_line(37, 37, false), "37 of 37 matching");
    }
}
