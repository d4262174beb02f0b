//! The page frame shared by every page: head with embedded assets, top bar, main area.

use maud::{html, Markup, DOCTYPE};

/// A complete HTML page.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pgmon" }
                link rel="stylesheet" href="/assets/uPlot.min.css";
                link rel="stylesheet" href="/assets/pgmon.css";
                script src="/assets/htmx.min.js" defer {}
                script src="/assets/uPlot.iife.min.js" defer {}
                script src="/assets/pgmon.js" defer {}
            }
            body {
                header.topbar {
                    a.brand href="/" { "pgmon" }
                    nav { a href="/" { "Fleet" } }
                }
                main { (body) }
            }
        }
    }
}
