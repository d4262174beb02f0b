//! `AppError`: every failure of a request, rendered as JSON for the API and HTML for pages,
//! with internals logged and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::Markup;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong; `field` names the parameter at fault.
    #[error("{message}")]
    BadRequest { field: &'static str, message: String },
    /// No valid session or API token.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but the role (or a missing CSRF token) does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (a target of that name).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of one user at once; retrying in a moment works.
    #[error("{0}")]
    TooManyRequests(String),
    /// History cannot be read right now (no ingester answered); retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or broken dependency; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(field: &'static str, message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            field,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to users: internals are replaced by a generic sentence.
    fn public_message(&self) -> String {
        match self {
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "internal error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// The body of every JSON error: what went wrong and, for bad input, which field.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let field = match &self {
            AppError::BadRequest { field, .. } => Some(*field),
            _ => None,
        };
        let body = ErrorBody {
            error: self.public_message(),
            field,
        };
        (status, Json(body)).into_response()
    }
}

/// An [`AppError`] met while rendering a page: the same status, as an HTML page.
#[derive(Debug)]
pub struct PageError(pub AppError);

impl From<AppError> for PageError {
    fn from(error: AppError) -> PageError {
        PageError(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let page: Markup = pgmon_ui::layout::bare_page(title, pgmon_ui::components::error_message(title, &self.0.public_message()));
        (status, page).into_response()
    }
}
