//! The page frame shared by every page: head with embedded assets, top bar, main area.

use maud::{html, Markup, DOCTYPE};

/// The signed-in user, as the page frame shows them.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user_name: String,
    pub is_admin: bool,
    /// Sent by htmx with every request (`hx-headers`), and by forms as a hidden field.
    pub csrf_token: Option<String>,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx would add a <style> element for its request indicators, which the page's
            // Content-Security-Policy (style-src 'self') refuses; pgmon.css styles them instead.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
            title { (title) " · pgmon" }
            link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
            link rel="stylesheet" href="/assets/uPlot.min.css";
            link rel="stylesheet" href="/assets/pgmon.css";
            script src="/assets/htmx.min.js" defer {}
            script src="/assets/uPlot.iife.min.js" defer {}
            script src="/assets/pgmon.js" defer {}
        }
    }
}

/// The `hx-headers` value carrying the CSRF token; JSON built by serde so no token breaks it.
fn htmx_headers(csrf_token: &str) -> String {
    serde_json::json!({ "X-CSRF-Token": csrf_token }).to_string()
}

/// A complete HTML page for a signed-in user.
pub fn page(viewer: &Viewer, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=[viewer.csrf_token.as_deref().map(htmx_headers)] {
                header.topbar {
                    a.brand href="/" { "pgmon" }
                    nav {
                        a href="/" { "Fleet" }
                        a href="/alerts" { "Alerts" }
                        @if viewer.is_admin { a href="/connections" { "Connections" } }
                        a href="/api/v1/openapi.json" { "API" }
                    }
                    div.account {
                        span.user { (viewer.user_name) @if viewer.is_admin { " (admin)" } }
                        form method="post" action="/sign-out" {
                            (csrf_field(viewer))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden form field with the CSRF token, for plain (non-htmx) forms.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! {
        @if let Some(token) = &viewer.csrf_token {
            input type="hidden" name="csrf_token" value=(token);
        }
    }
}

/// A page with no user: sign-in and errors met before signing in.
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.topbar { a.brand href="/" { "pgmon" } }
                main { (body) }
            }
        }
    }
}
