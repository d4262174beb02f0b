//! Managing monitored connections (admins only): the list, the add/edit form with
//! "test connection", and what a test found.

use maud::{html, Markup};
use pgmon_common::registry::ConnectionTestReport;

use crate::layout::{csrf_field, Viewer};

/// A registered target as the list shows it: never its password.
pub struct ConnectionRow {
    pub name: String,
    pub dsn: String,
    pub enabled: bool,
    pub has_password: bool,
    pub labels: String,
}

pub fn connections_page(viewer: &Viewer, rows: &[ConnectionRow], notice: Option<&str>) -> Markup {
    html! {
        h1 { "Connections" }
        @if let Some(notice) = notice { p.notice { (notice) } }
        p { a.button href="/connections/new" { "Add a connection" } }
        @if rows.is_empty() {
            p.empty { "No connection is registered. Targets given to a collector on its command line are not listed here." }
        } @else {
            table.data.connections {
                thead { tr { th { "Name" } th { "Connection string" } th { "Password" } th { "Labels" } th { "Sampling" } th { "" } } }
                tbody {
                    @for row in rows {
                        tr {
                            td { a href={ "/targets/" (row.name) } { (row.name) } }
                            td { code { (row.dsn) } }
                            td { @if row.has_password { "stored (encrypted)" } @else { "none" } }
                            td { (row.labels) }
                            td {
                                form.inline method="post" action={ "/connections/" (row.name) "/enabled" } {
                                    (csrf_field(viewer))
                                    input type="hidden" name="enabled" value=(if row.enabled { "false" } else { "true" });
                                    @if row.enabled { "on " button type="submit" { "Disable" } } @else { "off " button type="submit" { "Enable" } }
                                }
                            }
                            td {
                                a href={ "/connections/" (row.name) "/edit" } { "Edit" } " "
                                form.inline method="post" action={ "/connections/" (row.name) "/delete" } {
                                    (csrf_field(viewer))
                                    button.danger type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the form holds: what was typed, never a stored password.
#[derive(Default)]
pub struct ConnectionFormValues {
    pub name: String,
    pub dsn: String,
    pub enabled: bool,
    pub labels: String,
    /// Editing a target that has a stored password: an empty password field keeps it.
    pub has_stored_password: bool,
}

/// The add/edit form. `editing` is the name of the edited target; `errors` are (field, message).
pub fn connection_form(viewer: &Viewer, editing: Option<&str>, values: &ConnectionFormValues, errors: &[(&str, String)]) -> Markup {
    let error_for = |field: &str| errors.iter().find(|(name, _)| *name == field).map(|(_, message)| message.clone());
    let action = match editing {
        Some(name) => format!("/connections/{name}"),
        None => "/connections".to_owned(),
    };
    let field = |name: &str, label: &str, input: Markup, help: &str| {
        let error = error_for(name);
        html! {
            div.field.invalid[error.is_some()] {
                label for=(name) { (label) }
                (input)
                @if let Some(error) = error { p.field-error id={ (name) "-error" } { (error) } }
                @if !help.is_empty() { p.help { (help) } }
            }
        }
    };
    html! {
        h1 { @if let Some(name) = editing { "Edit " span.target { (name) } } @else { "Add a connection" } }
        @if !errors.is_empty() { p.error { "Please correct the fields marked below." } }
        form.connection method="post" action=(action) novalidate {
            (csrf_field(viewer))
            (field("name", "Name", html! {
                input #name type="text" name="name" value=(values.name) readonly[editing.is_some()] required autocomplete="off";
            }, "Lowercase letters, digits, '_' and '-'; it names the target in pages, subjects and files."))
            (field("dsn", "Connection string", html! {
                input #dsn type="text" name="dsn" value=(values.dsn) required autocomplete="off" placeholder="host=db1 port=5432 user=pgmon dbname=postgres sslmode=require";
            }, "libpq key=value or a postgresql:// URL, without the password."))
            (field("password", "Password", html! {
                input #password type="password" name="password" value="" autocomplete="new-password"
                    placeholder=(if values.has_stored_password { "leave empty to keep the stored password" } else { "none" });
            }, "Stored encrypted; never shown again."))
            @if values.has_stored_password {
                div.field { label { input type="checkbox" name="clear_password" value="true"; " Remove the stored password" } }
            }
            (field("labels", "Labels", html! {
                input #labels type="text" name="labels" value=(values.labels) placeholder="region=eu, tier=gold";
            }, "Optional KEY=VALUE pairs, comma-separated."))
            div.field { label { input type="checkbox" name="enabled" value="true" checked[values.enabled]; " Sample this target" } }
            div.actions {
                button type="submit" { @if editing.is_some() { "Save" } @else { "Add" } }
                " "
                button type="button" hx-post="/connections/test" hx-include="closest form" hx-target="#test-result" hx-swap="innerHTML" {
                    "Test connection"
                }
                " " a href="/connections" { "Cancel" }
            }
            input type="hidden" name="editing" value=(editing.unwrap_or(""));
        }
        div #test-result aria-live="polite" {}
    }
}

/// What "test connection" found.
pub fn test_result(report: &ConnectionTestReport) -> Markup {
    html! {
        div.test-result.ok[report.ok].failed[!report.ok] {
            p { strong { @if report.ok { "Connected. " } @else { "Cannot connect: " } } (report.message) }
            @if !report.checks.is_empty() {
                ul {
                    @for check in &report.checks {
                        li.passed[check.passed].failed[!check.passed] {
                            (if check.passed { "✓ " } else { "✗ " }) strong { (check.name) } ": " (check.message)
                        }
                    }
                }
            }
        }
    }
}

/// A form-level problem of "test connection" (a field is wrong before any connection).
pub fn test_problem(message: &str) -> Markup {
    html! { div.test-result.failed { p { strong { "Cannot test: " } (message) } } }
}
