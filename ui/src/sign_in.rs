//! The sign-in form.

use maud::{html, Markup};

pub fn sign_in_form(next: &str, user: &str, error: Option<&str>) -> Markup {
    html! {
        div.sign-in {
            h1 { "Sign in to pgmon" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                div.field { label for="user" { "User name" } input #user type="text" name="user" value=(user) autocomplete="username" required autofocus; }
                div.field { label for="password" { "Password" } input #password type="password" name="password" autocomplete="current-password" required; }
                div.actions { button type="submit" { "Sign in" } }
            }
        }
    }
}
