//! Stat cards whose numbers ease to each new value (requestAnimationFrame, ease-out cubic).

use crate::model::Counters;
use leptos::prelude::*;

/// How long one counter transition takes.
const ANIMATION_MS: f64 = 650.0;

/// "1,234,567".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The four running totals as stat cards.
#[component]
pub fn Totals(#[prop(into)] counters: Signal<Counters>) -> impl IntoView {
    view! {
        <section class="stats" aria-label="Totals">
            <StatCard label="Events" value=Signal::derive(move || counters.get().total as f64) tone="neutral" />
            <StatCard label="Denied" value=Signal::derive(move || counters.get().denied as f64) tone="denied" />
            <StatCard label="Failures" value=Signal::derive(move || counters.get().failures as f64) tone="failure" />
            <StatCard label="Critical" value=Signal::derive(move || counters.get().critical as f64) tone="critical" />
        </section>
    }
}

/// How a stat card shows its number.
fn shown_text(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.1}%", v)
    } else {
        group_thousands(v.round().max(0.0) as u64)
    }
}

/// A labelled number that animates when it changes: a count, or a percentage.
#[component]
pub fn StatCard(
    label: &'static str,
    #[prop(into)] value: Signal<f64>,
    /// `neutral`, `denied`, `failure`, `critical` or `users`: the card's accent.
    tone: &'static str,
    /// Shows the value as a percentage with one decimal.
    #[prop(optional)]
    percent: bool,
    /// A line under the number.
    #[prop(optional, into)]
    hint: Option<Signal<String>>,
) -> impl IntoView {
    let shown = RwSignal::new(value.get_untracked());
    let generation = StoredValue::new(0u32);
    let bumped = RwSignal::new(false);
    Effect::new(move |previous: Option<f64>| {
        let target = value.get();
        if previous.is_some_and(|p| p != target) {
            generation.update_value(|g| *g = g.wrapping_add(1));
            bumped.set(true);
            animate(
                shown,
                generation,
                generation.get_value(),
                shown.get_untracked(),
                target,
                now_ms(),
            );
        }
        target
    });
    view! {
        <div class=format!("stat stat-{tone}") class:bumped=move || bumped.get()>
            <span class="stat-label">{label}</span>
            <span class="stat-value" aria-label=move || format!("{label}: {}", shown_text(value.get(), percent))>
                {move || shown_text(shown.get(), percent)}
            </span>
            {hint.map(|h| view! { <span class="stat-hint">{h}</span> })}
        </div>
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// One animation frame; stops when done or when a newer animation has started.
fn animate(
    shown: RwSignal<f64>,
    generation: StoredValue<u32>,
    mine: u32,
    from: f64,
    to: f64,
    start: f64,
) {
    if generation.get_value() != mine {
        return;
    }
    let t = ((now_ms() - start) / ANIMATION_MS).clamp(0.0, 1.0);
    let eased = 1.0 - (1.0 - t).powi(3);
    shown.set(from + (to - from) * eased);
    if t < 1.0 {
        request_animation_frame(move || animate(shown, generation, mine, from, to, start));
    }
}

#[cfg(test)]
mod tests {
    use super::group_thousands;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1234567), "1,234,567");
    }
}
