//! The few browser calls the pages make from event handlers and effects: focus, scroll,
//! clipboard, the local time zone. In the server build they do nothing, as nothing there
//! scrolls or copies.

/// Puts the keyboard focus on the element with this id.
pub fn focus(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(el) = leptos::prelude::document()
            .get_element_by_id(id)
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

/// How far the page is scrolled down, in CSS pixels.
pub fn scroll_y() -> f64 {
    #[cfg(feature = "hydrate")]
    return leptos::prelude::window().scroll_y().unwrap_or(0.0);
    #[cfg(not(feature = "hydrate"))]
    0.0
}

/// Scrolls back to the top of the page.
pub fn scroll_to_top() {
    #[cfg(feature = "hydrate")]
    leptos::prelude::window().scroll_to_with_x_and_y(0.0, 0.0);
}

/// Scrolls the element with this id into view if it is off screen.
pub fn reveal(id: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(el) = leptos::prelude::document().get_element_by_id(id) {
        let options = web_sys::ScrollIntoViewOptions::new();
        options.set_block(web_sys::ScrollLogicalPosition::Nearest);
        el.scroll_into_view_with_scroll_into_view_options(&options);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

/// Copies `text` to the clipboard; resolves to whether the browser allowed it.
pub async fn copy_text(text: String) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let promise = leptos::prelude::window()
            .navigator()
            .clipboard()
            .write_text(&text);
        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        false
    }
}

/// The browser's offset from UTC in minutes (east positive), as of `ms`.
pub fn local_offset_minutes(ms: i64) -> i32 {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        -(date.get_timezone_offset() as i32)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = ms;
        0
    }
}

/// The browser's IANA time zone (`Europe/Berlin`), if it says. (The server has no browser
/// to ask, so this exists in the browser build only.)
#[cfg(feature = "hydrate")]
pub fn time_zone() -> Option<String> {
    let format = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &js_sys::Object::new());
    js_sys::Reflect::get(&format.resolved_options(), &"timeZone".into())
        .ok()
        .and_then(|v| v.as_string())
}

/// Whether the element focused now takes typing (so single-key shortcuts must not fire).
pub fn typing_in_field() -> bool {
    #[cfg(feature = "hydrate")]
    {
        leptos::prelude::document()
            .active_element()
            .map(|e| {
                let tag = e.tag_name().to_ascii_lowercase();
                matches!(tag.as_str(), "input" | "textarea" | "select")
                    || e.has_attribute("contenteditable")
            })
            .unwrap_or(false)
    }
    #[cfg(not(feature = "hydrate"))]
    false
}
