//! `/usage`: metrics from the numbers inside events (`GET /api/v1/aggregate`): a numeric
//! field's statistics for the matching events, grouped, over time. Every choice lives in the
//! URL, so a view is a link to keep or share; a chart shows the top groups' first statistic
//! over time and a table, sortable by any column, shows them all.

use crate::analytics::aggregate::{Aggregate, AggregateGroup, Stat};
use crate::api::aggregate_metrics;
use crate::app::browser;
use crate::app::components::charts::{format_measure, Series, SeriesChart};
use crate::app::components::TopBar;
use crate::app::pages::encode;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;

/// Numeric fields offered as suggestions (any `metadata.<key>` is accepted).
const FIELDS: [&str; 5] = [
    "request.responseTime",
    "metadata.tokens_used",
    "metadata.duration_ms",
    "request.statusCode",
    "riskScore",
];

/// Groupings offered as suggestions (any `metadata.<key>` is accepted).
const GROUPS: [&str; 10] = [
    "action",
    "user_id",
    "request.path",
    "entity",
    "source",
    "level",
    "outcome",
    "system.service",
    "system.environment",
    "location.country",
];

/// The time spans offered, by their length in hours.
const RANGES: [(&str, &str, i64); 3] = [
    ("24h", "Last 24 hours", 24),
    ("7d", "Last 7 days", 168),
    ("30d", "Last 30 days", 720),
];

/// The page's choices, as its URL holds them.
#[derive(Clone, Debug, PartialEq)]
struct UsageView {
    field: String,
    stats: Vec<String>,
    by: String,
    interval: String,
    range: String,
    q: String,
    top: String,
}

impl UsageView {
    fn from_params(get: impl Fn(&str) -> Option<String>) -> UsageView {
        let or = |name: &str, default: &str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        UsageView {
            field: or("field", "request.responseTime"),
            stats: or("stats", "p95,avg,count")
                .split(',')
                .map(str::trim)
                .filter(|s| Stat::parse(s).is_some())
                .map(str::to_string)
                .collect(),
            by: get("by").unwrap_or_else(|| "action".into()),
            interval: or("interval", "1h"),
            range: or("range", "24h"),
            q: get("q").unwrap_or_default(),
            top: or("top", "6"),
        }
    }

    /// The page's URL for these choices.
    fn to_url(&self) -> String {
        let mut pairs = vec![
            ("field", self.field.clone()),
            ("stats", self.stats.join(",")),
            ("by", self.by.clone()),
            ("interval", self.interval.clone()),
            ("range", self.range.clone()),
            ("top", self.top.clone()),
        ];
        if !self.q.is_empty() {
            pairs.push(("q", self.q.clone()));
        }
        format!("/usage?{}", encode_pairs(&pairs))
    }

    /// `GET /api/v1/aggregate`'s query string, the range ending now.
    fn api_query(&self, now_ms: i64) -> String {
        let hours = RANGES
            .iter()
            .find(|(name, ..)| *name == self.range)
            .map_or(24, |(.., h)| *h);
        let start = chrono::DateTime::from_timestamp_millis(now_ms - hours * 3_600_000)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut pairs = vec![
            ("field", self.field.clone()),
            ("stats", self.stats.join(",")),
            ("top", self.top.clone()),
            ("start_date", start),
        ];
        if !self.by.is_empty() {
            pairs.push(("by", self.by.clone()));
        }
        if self.interval != "none" {
            pairs.push(("interval", self.interval.clone()));
        }
        if !self.q.trim().is_empty() {
            pairs.push(("q", self.q.clone()));
        }
        encode_pairs(&pairs)
    }
}

/// `a=1&b=x%20y`; commas stay as they are, so a list reads `stats=p95,count` in the address.
fn encode_pairs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v).replace("%2C", ",")))
        .collect::<Vec<_>>()
        .join("&")
}

/// `/usage`.
#[component]
pub fn UsagePage() -> impl IntoView {
    let params = use_query_map();
    let view = Memo::new(move |_| params.with(|p| UsageView::from_params(|name| p.get(name))));
    let answer = Resource::new(
        move || view.get(),
        |v| async move { aggregate_metrics(v.api_query(chrono::Utc::now().timestamp_millis())).await },
    );
    let navigate = use_navigate();
    let go = move |change: &dyn Fn(&mut UsageView)| {
        let mut v = view.get_untracked();
        change(&mut v);
        navigate(
            &v.to_url(),
            NavigateOptions {
                scroll: false,
                ..Default::default()
            },
        );
    };
    let go = StoredValue::new(go);
    let set = move |change: Box<dyn Fn(&mut UsageView)>| go.with_value(|go| go(&*change));
    let text_input = move |name: &'static str,
                           label: &'static str,
                           list: &'static str,
                           get: fn(&UsageView) -> String,
                           put: fn(&mut UsageView, String)| {
        view! {
            <label class="field grow">
                {label}
                <input type="text" name=name list=list autocomplete="off" spellcheck="false"
                    prop:value=move || view.with(get)
                    on:change=move |ev| {
                        let value = event_target_value(&ev);
                        set(Box::new(move |v| put(v, value.trim().to_string())));
                    } />
            </label>
        }
    };
    let stat_chips = Stat::ALL
        .into_iter()
        .map(|s| {
            let name = s.as_str();
            let on = move || view.with(|v| v.stats.iter().any(|x| x == name));
            view! {
                <button type="button" class="filter-chip" class:on=on aria-pressed=move || on().to_string()
                    on:click=move |_| set(Box::new(move |v| {
                        match v.stats.iter().position(|x| x == name) {
                            Some(i) if v.stats.len() > 1 => { v.stats.remove(i); }
                            Some(_) => {}
                            None => v.stats.push(name.to_string()),
                        }
                    }))>
                    {name}
                </button>
            }
        })
        .collect_view();
    let select = move |label: &'static str,
                       options: Vec<(&'static str, &'static str)>,
                       get: fn(&UsageView) -> String,
                       put: fn(&mut UsageView, String)| {
        let options = options
            .into_iter()
            .map(|(value, text)| {
                view! {
                    <option value=value selected=move || view.with(get) == value>{text}</option>
                }
            })
            .collect_view();
        view! {
            <label class="field">
                {label}
                <select on:change=move |ev| {
                    let value = event_target_value(&ev);
                    set(Box::new(move |v| put(v, value.clone())));
                }>{options}</select>
            </label>
        }
    };
    view! {
        <TopBar current="usage" />
        <main class="page usage">
            <div class="range-bar">
                <h1 class="page-title">"Usage"</h1>
                <span class="muted small">"Statistics of a number the events carry, by group and over time"</span>
            </div>
            <section class="panel usage-form" aria-label="Metric">
                <div class="usage-row">
                    {text_input("field", "Number", "usage-fields", |v| v.field.clone(), |v, x| v.field = x)}
                    {text_input("by", "Group by", "usage-groups", |v| v.by.clone(), |v, x| v.by = x)}
                    {text_input("q", "Events matching", "", |v| v.q.clone(), |v, x| v.q = x)}
                </div>
                <div class="usage-row">
                    {select("Range", RANGES.iter().map(|(n, t, _)| (*n, *t)).collect(), |v| v.range.clone(), |v, x| v.range = x)}
                    {select("Every", vec![("1h", "hour"), ("6h", "6 hours"), ("1d", "day"), ("none", "no series")], |v| v.interval.clone(), |v, x| v.interval = x)}
                    {select("Groups", vec![("6", "top 6"), ("10", "top 10"), ("25", "top 25"), ("100", "top 100")], |v| v.top.clone(), |v, x| v.top = x)}
                    <div class="field">
                        "Statistics"
                        <div class="chips" role="group" aria-label="Statistics">{stat_chips}</div>
                    </div>
                </div>
                <datalist id="usage-fields">
                    {FIELDS.iter().map(|f| view! { <option value=*f /> }).collect_view()}
                </datalist>
                <datalist id="usage-groups">
                    {GROUPS.iter().map(|g| view! { <option value=*g /> }).collect_view()}
                </datalist>
            </section>
            <Suspense fallback=|| view! { <p class="empty">"Measuring…"</p> }>
                {move || answer.get().map(|r| match r {
                    Ok(a) => view! { <Measured answer=a /> }.into_any(),
                    Err(e) => view! { <p class="empty" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </Suspense>
        </main>
    }
}

/// A statistic's value in a group, as a number when it has one.
fn value(g: &AggregateGroup, stat: &str) -> Option<f64> {
    g.values.get(stat).and_then(serde_json::Value::as_f64)
}

/// The answer: the counts, the chart of the top groups and the table.
#[component]
fn Measured(answer: Aggregate) -> impl IntoView {
    let offset = RwSignal::new(0);
    Effect::new(move |_| {
        offset.set(browser::local_offset_minutes(
            chrono::Utc::now().timestamp_millis(),
        ));
    });
    let first = answer
        .stats
        .first()
        .cloned()
        .unwrap_or_else(|| "count".into());
    let bucket_ms = answer
        .interval
        .as_deref()
        .and_then(|i| crate::analytics::aggregate::parse_interval(i).ok())
        .unwrap_or(3_600_000);
    let name = |k: &Option<String>| k.clone().unwrap_or_else(|| "(none)".into());
    let lines: Vec<Series> = answer
        .groups
        .iter()
        .take(6)
        .filter(|g| !g.series.is_empty())
        .map(|g| {
            let points = g
                .series
                .iter()
                .filter_map(|p| {
                    p.values
                        .get(&first)
                        .and_then(serde_json::Value::as_f64)
                        .map(|v| (p.start, v))
                })
                .collect();
            (name(&g.key), points)
        })
        .collect();
    let chart = (!lines.is_empty()).then(|| {
        let label = format!(
            "{first} of {} over time, top {} groups",
            answer.field,
            lines.len()
        );
        view! {
            <section class="panel">
                <div class="panel-head">
                    <h2>{format!("{first} of {}", answer.field)}</h2>
                    <span class="muted small">"the top groups, over time"</span>
                </div>
                <SeriesChart lines=Signal::stored(lines) bucket_ms=Signal::stored(bucket_ms)
                    offset=offset label=Signal::stored(label) />
            </section>
        }
    });
    // The table's sort: a column (a statistic, or the key) and a direction.
    let sort = RwSignal::new((first.clone(), true));
    let stats = answer.stats.clone();
    let groups = answer.groups.clone();
    let header = {
        let stats = stats.clone();
        move || {
            let (col, desc) = sort.get();
            let cell = move |key: String, label: String| {
                let here = col == key;
                let aria = here.then_some(if desc { "descending" } else { "ascending" });
                let k = key.clone();
                view! {
                    <th aria-sort=aria>
                        <button type="button" class="sort" on:click=move |_| {
                            let k = k.clone();
                            sort.update(|(c, d)| {
                                if *c == k { *d = !*d } else { *c = k; *d = true }
                            })
                        }>{label}</button>
                    </th>
                }
            };
            let mut cells = vec![cell("key".into(), "Group".into())];
            cells.extend(stats.iter().map(|s| cell(s.clone(), s.clone())));
            cells.push(cell("withField".into(), "events".into()));
            cells.push(cell("notNumeric".into(), "not numeric".into()));
            cells.collect_view()
        }
    };
    let rows = move || {
        let (col, desc) = sort.get();
        let mut groups = groups.clone();
        groups.sort_by(|a, b| {
            let order = match col.as_str() {
                "key" => a.key.cmp(&b.key),
                "withField" => a.with_field.cmp(&b.with_field),
                "notNumeric" => a.not_numeric.cmp(&b.not_numeric),
                stat => match (value(a, stat), value(b, stat)) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (a, b) => a.is_some().cmp(&b.is_some()),
                },
            };
            if desc {
                order.reverse()
            } else {
                order
            }
        });
        let stats = stats.clone();
        groups
            .into_iter()
            .map(|g| {
                let cells = stats
                    .iter()
                    .map(|s| view! { <td class="num">{value(&g, s).map_or("–".into(), format_measure)}</td> })
                    .collect_view();
                view! {
                    <tr>
                        <td class="usage-key">{name(&g.key)}</td>
                        {cells}
                        <td class="num">{format_measure(g.with_field as f64)}</td>
                        <td class="num muted">{format_measure(g.not_numeric as f64)}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    let empty = answer.groups.is_empty();
    let summary = format!(
        "{} events matched: {} with a number in {}, {} without it, {} not numeric{}",
        format_measure(answer.matched as f64),
        format_measure(answer.with_field as f64),
        answer.field,
        format_measure(answer.without_field as f64),
        format_measure(answer.not_numeric as f64),
        if answer.other_groups > 0 {
            format!("; {} more groups not shown", answer.other_groups)
        } else {
            String::new()
        }
    );
    view! {
        <p class="usage-summary muted" role="status">{summary}</p>
        {chart}
        <section class="panel">
            <div class="table-wrap">
                <table class="tokens-table usage-table" aria-label="Groups">
                    <thead><tr>{header}</tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {empty.then(|| view! { <p class="empty">"No events match."</p> })}
        </section>
    }
}
