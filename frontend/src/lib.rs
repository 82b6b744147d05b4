//! The operator console's pages: Leptos components rendered to HTML on the server. There is no
//! wasm and no hydration: every page and form works without JavaScript, and `console.js` adds
//! live updates (server-sent events) and upload progress.
//!
//! *API boundary:* this crate turns view models into HTML and nothing else. The server crate owns
//! the routes, sessions, CSRF checks and data access, and fills the view models from the core
//! (`app`) types, which the pages use directly where they fit.

use leptos::prelude::*;

mod chrome;
pub mod pages;

pub use chrome::{Chrome, Flash, Nav, NodeBadge, Viewer};

/// The stylesheet, served at [`CSS_PATH`].
pub const CSS: &str = include_str!("../assets/console.css");
/// The script, served at [`JS_PATH`].
pub const JS: &str = include_str!("../assets/console.js");
/// Versioned by content, so browsers may cache them for good.
pub const CSS_PATH: &str = concat!("/console/assets/console.css?v=", env!("CARGO_PKG_VERSION"));
pub const JS_PATH: &str = concat!("/console/assets/console.js?v=", env!("CARGO_PKG_VERSION"));

/// A whole page: the document, the top bar and `body`.
pub fn page<V: IntoView + 'static>(chrome: Chrome, body: impl FnOnce() -> V + 'static) -> String {
    let html = Owner::new().with(|| chrome::document(chrome, body).to_html());
    format!("<!DOCTYPE html>{html}")
}

/// Only a piece of a page (a live section), for `console.js` to swap in.
pub fn fragment<V: IntoView + 'static>(body: impl FnOnce() -> V + 'static) -> String {
    Owner::new().with(|| body().to_html())
}

/// A short form of a long hex string: its first 10 and last 6 characters.
pub fn short(hex: &str) -> String {
    if hex.len() <= 18 {
        hex.to_string()
    } else {
        format!("{}…{}", &hex[..10], &hex[hex.len() - 6..])
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    // `YYYY-MM-DDTHH:MM:SSZ`, read more easily with a space and without the zone letter.
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string()
}

/// Bytes in the largest unit that keeps the number readable.
/// Where a Run is placed, in a sentence: "placed on node X (taken over from Y)", why it waits,
/// or how it ended.
pub fn placement_sentence(p: &app::placement::Placement) -> String {
    let node = |n: &app::placement::PlacedOn| {
        let who = n
            .public_key
            .as_deref()
            .map_or_else(|| n.peer_id.clone(), short);
        let mut s = if n.local {
            format!("this node ({who})")
        } else {
            format!("node {who}")
        };
        if let Some(from) = &n.taken_over_from {
            s.push_str(&format!(", taken over from {from}"));
        }
        s
    };
    match p.state {
        "placed" => format!(
            "placed on {}",
            p.nodes.iter().map(node).collect::<Vec<_>>().join(" and ")
        ),
        "ended" => format!(
            "ended ({}){}",
            p.outcome.as_deref().unwrap_or("unknown"),
            p.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        _ => format!(
            "waiting{}",
            p.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_564_800_000), "2026-11-25 00:00:00");
        assert_eq!(time(951_782_400_000 + 3_661_000), "2000-02-29 01:01:01");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(short(&"ab".repeat(32)), "ababababab…ababab");
    }

    #[test]
    fn text_is_escaped() {
        let html = fragment(|| view! { <p>{"<script>alert(1)</script>"}</p> });
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}
