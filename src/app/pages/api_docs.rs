//! `/api-docs`: the REST API's reference, read from the OpenAPI document the server builds
//! from its routes (`GET /api/openapi.json`): every operation by group, with the permission
//! it needs and who holds it, its parameters, its request and answers, and their examples.
//! A filter narrows the list as one types; the side index jumps to a group.

use crate::api::api_reference;
use crate::app::components::TopBar;
use crate::model::{ApiAnswer, ApiBody, ApiOperation, ApiReference};
use leptos::prelude::*;

/// `/api-docs`.
#[component]
pub fn ApiDocsPage() -> impl IntoView {
    let reference = Resource::new(|| (), |_| api_reference());
    let filter = RwSignal::new(String::new());
    view! {
        <TopBar current="api" />
        <main class="page api-docs">
            <div class="range-bar">
                <h1 class="page-title">"API reference"</h1>
                <a class="button ghost" href="/api/openapi.json" download="trailwatch-openapi.json"
                    rel="external">"OpenAPI 3.1 document"</a>
            </div>
            <section class="panel api-intro">
                <p>
                    "Every route takes a credential: an API token (made on the "
                    <a href="/tokens">"Tokens"</a>" page or with "<code>"trailwatch token create"</code>
                    ") as "<code>"Authorization: Bearer <token>"</code>", or this dashboard's session. "
                    "Each operation says which permission it needs and which roles and token scopes hold it. "
                    "Errors are JSON with a stable "<code>"error"</code>" code, a "<code>"message"</code>
                    " that says what to fix, and the "<code>"field"</code>" at fault."
                </p>
                <label class="field api-filter">
                    "Filter"
                    <input type="search" placeholder="path, summary or group" autocomplete="off"
                        prop:value=move || filter.get()
                        on:input=move |ev| filter.set(event_target_value(&ev)) />
                </label>
            </section>
            <Suspense fallback=|| view! { <p class="empty">"Loading the reference…"</p> }>
                {move || reference.get().map(|r| match r {
                    Ok(r) => view! { <Reference reference=r filter=filter /> }.into_any(),
                    Err(e) => view! { <p class="empty">{format!("The reference could not be read: {e}")}</p> }.into_any(),
                })}
            </Suspense>
        </main>
    }
}

/// Whether `op` (in `group`) matches what the reader typed.
fn matches(op: &ApiOperation, group: &str, filter: &str) -> bool {
    let filter = filter.trim().to_lowercase();
    filter.is_empty()
        || [&op.path, &op.summary, &op.method, &group.to_string()]
            .iter()
            .any(|s| s.to_lowercase().contains(&filter))
}

#[component]
fn Reference(reference: ApiReference, filter: RwSignal<String>) -> impl IntoView {
    let index = reference
        .groups
        .iter()
        .map(|g| {
            let href = format!("#group-{}", g.name);
            view! { <a href=href>{g.name.clone()}<span class="muted">{g.operations.len()}</span></a> }
        })
        .collect_view();
    let groups = reference
        .groups
        .into_iter()
        .map(|group| {
            let name = group.name.clone();
            let ops = group.operations.clone();
            let shown = {
                let (name, ops) = (name.clone(), ops.clone());
                move || ops.iter().any(|op| matches(op, &name, &filter.get()))
            };
            let operations = ops
                .into_iter()
                .map(|op| {
                    let hidden = {
                        let (op, name) = (op.clone(), name.clone());
                        move || !matches(&op, &name, &filter.get())
                    };
                    view! { <Operation op=op hidden=hidden /> }
                })
                .collect_view();
            view! {
                <section class="api-group" id=format!("group-{name}") class:hidden=move || !shown()>
                    <h2>{name.clone()}</h2>
                    <p class="muted">{group.description}</p>
                    {operations}
                </section>
            }
        })
        .collect_view();
    view! {
        <div class="api-layout">
            <nav class="api-index" aria-label="API groups">
                <span class="muted small">{format!("Version {}", reference.version)}</span>
                {index}
            </nav>
            <div class="api-groups">{groups}</div>
        </div>
    }
}

/// Text with `code` spans, as the document's descriptions write them.
fn rich(text: &str) -> impl IntoView {
    text.split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => view! { <code>{part.to_string()}</code> }.into_any(),
            _ => part.replace("**", "").into_any(),
        })
        .collect_view()
}

/// Paragraphs of a description (the permission note is shown apart).
fn paragraphs(text: &str) -> impl IntoView {
    text.split("\n\n")
        .filter(|p| !p.starts_with("**Needs:**"))
        .map(|p| view! { <p>{rich(&p.replace('\n', " "))}</p> })
        .collect_view()
}

#[component]
fn Operation(op: ApiOperation, hidden: impl Fn() -> bool + Send + Sync + 'static) -> impl IntoView {
    let method = op.method.to_lowercase();
    let anchor = format!("{}-{}", method, op.path.replace(['/', '{', '}', '.'], "-"));
    let needs = match op.permission {
        Some(p) => view! {
            <p class="api-needs">
                "Needs " <code>{p.as_str()}</code>
                <span class="muted">{format!(" · {}", op.granted_to.join(", "))}</span>
            </p>
        }
        .into_any(),
        None => view! { <p class="api-needs">"No credential needed"</p> }.into_any(),
    };
    let params = (!op.params.is_empty()).then(|| {
        let rows = op
            .params
            .iter()
            .map(|p| {
                view! {
                    <tr>
                        <td><code>{p.name.clone()}</code>
                            {p.required.then(|| view! { <span class="api-required">"required"</span> })}
                        </td>
                        <td class="muted">{p.location.clone()}</td>
                        <td class="muted">{p.kind.clone()}</td>
                        <td>{rich(&p.description)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <h4>"Parameters"</h4>
            <div class="table-wrap">
                <table class="api-params">
                    <thead><tr><th>"Name"</th><th>"In"</th><th>"Type"</th><th>"Description"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
    });
    let request = (!op.request.is_empty()).then(|| {
        let bodies = op.request.iter().cloned().map(body).collect_view();
        view! { <h4>"Request body"</h4> {bodies} }
    });
    let responses = op.responses.iter().cloned().map(answer).collect_view();
    view! {
        <article class="api-op" id=anchor class:hidden=hidden>
            <header>
                <span class=format!("api-method api-method-{method}")>{op.method.clone()}</span>
                <code class="api-path">{op.path.clone()}</code>
            </header>
            <h3>{op.summary.clone()}</h3>
            {paragraphs(&op.description)}
            {needs}
            {params}
            {request}
            <h4>"Answers"</h4>
            <div class="api-answers">{responses}</div>
        </article>
    }
}

fn body(b: ApiBody) -> impl IntoView {
    let example = b
        .example
        .map(|e| view! { <pre class="api-example">{e}</pre> });
    view! {
        <div class="api-body">
            <span class="muted small">
                <code>{b.content_type}</code>
                {b.schema.map(|s| format!(" · {s}"))}
            </span>
            {example}
        </div>
    }
}

fn answer(a: ApiAnswer) -> impl IntoView {
    let class = match a.status.chars().next() {
        Some('2') | Some('1') => "api-status api-status-ok",
        Some('4') => "api-status api-status-client",
        _ => "api-status api-status-server",
    };
    let has_example = a.bodies.iter().any(|b| b.example.is_some());
    let schemas: Vec<String> = a.bodies.iter().filter_map(|b| b.schema.clone()).collect();
    let examples = has_example.then(|| {
        let bodies = a.bodies.into_iter().map(body).collect_view();
        view! { <details><summary>"Example"</summary>{bodies}</details> }
    });
    view! {
        <div class="api-answer">
            <span class=class>{a.status}</span>
            <div>
                <span>{rich(&a.description)}</span>
                {(!schemas.is_empty()).then(|| view! {
                    <span class="muted small">{format!(" · {}", schemas.join(", "))}</span>
                })}
                {examples}
            </div>
        </div>
    }
}
