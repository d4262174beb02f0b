//! Pieces every page uses: formatting of times, sizes and durations, the target's tabs, the
//! range picker, and error and empty states.

use maud::{html, Markup};

/// The time ranges offered on history pages, with their query-string value.
pub const RANGES: &[(&str, &str)] = &[
    ("15m", "15 min"),
    ("1h", "1 hour"),
    ("6h", "6 hours"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("30d", "30 days"),
];

/// Microseconds since the epoch as `2026-11-28 10:00:05` (UTC).
pub fn time(unix_us: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(unix_us).unwrap_or(0));
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// Bytes in binary units, as PostgreSQL's `pg_size_pretty` writes them.
pub fn bytes(value: i64) -> String {
    const UNITS: &[&str] = &["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut size = value as f64;
    let mut unit = 0;
    while size.abs() >= 10_240.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value} bytes")
    } else {
        format!("{size:.0} {}", UNITS[unit])
    }
}

/// Milliseconds in the unit a person reads fastest.
pub fn milliseconds(value: f64) -> String {
    if value < 1.0 {
        format!("{:.0} µs", value * 1000.0)
    } else if value < 1000.0 {
        format!("{value:.1} ms")
    } else if value < 60_000.0 {
        format!("{:.2} s", value / 1000.0)
    } else {
        format!("{:.1} min", value / 60_000.0)
    }
}

/// Seconds as `4m 10s`.
pub fn seconds(value: i64) -> String {
    let value = value.max(0);
    match value {
        0..60 => format!("{value}s"),
        60..3600 => format!("{}m {}s", value / 60, value % 60),
        _ => format!("{}h {}m", value / 3600, (value % 3600) / 60),
    }
}

/// An optional text, with a dash for none.
pub fn or_dash(value: Option<&str>) -> &str {
    value.filter(|text| !text.is_empty()).unwrap_or("–")
}

/// The sections of a target's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TargetTab {
    Activity,
    Statements,
    Objects,
    Locks,
    Health,
}

/// The target's name and its tabs.
pub fn target_header(target: &str, selected: TargetTab, title: &str) -> Markup {
    let tabs = [
        (TargetTab::Activity, "Activity", format!("/targets/{target}")),
        (TargetTab::Statements, "Statements", format!("/targets/{target}/statements")),
        (TargetTab::Objects, "Objects", format!("/targets/{target}/objects")),
        (TargetTab::Locks, "Locks", format!("/targets/{target}/locks")),
        (TargetTab::Health, "Health", format!("/targets/{target}/health")),
    ];
    html! {
        h1 { (title) " · " span.target { (target) } }
        nav.tabs aria-label="target sections" {
            @for (tab, label, link) in tabs {
                a.selected[tab == selected] href=(link) { (label) }
            }
        }
    }
}

/// Links choosing a range; `link(range)` gives each one's address.
pub fn range_picker(selected: &str, link: impl Fn(&str) -> String) -> Markup {
    html! {
        div.picker role="group" aria-label="time range" {
            @for (value, label) in RANGES {
                a.selected[*value == selected] href=(link(value)) { (label) }
            }
        }
    }
}

/// An error page body with a message safe to show.
pub fn error_message(title: &str, message: &str) -> Markup {
    html! {
        h1 { (title) }
        p.error { (message) }
        p { a href="/" { "Back to the fleet" } }
    }
}

/// A note where a table or chart has nothing to show.
pub fn empty(message: &str) -> Markup {
    html! { p.empty { (message) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_postgresql() {
        assert_eq!(bytes(8192), "8192 bytes");
        assert_eq!(bytes(16 * 1024 * 1024), "16 MB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3072 MB");
        assert_eq!(milliseconds(0.25), "250 µs");
        assert_eq!(milliseconds(12.34), "12.3 ms");
        assert_eq!(milliseconds(4500.0), "4.50 s");
        assert_eq!(seconds(250), "4m 10s");
        assert_eq!(time(1_764_324_005_000_000), "2025-11-28 10:00:05");
    }
}
