//! Typed request extractors shared by the pages and the API: the target of the path and the
//! parameter structs of `params`, read once, with errors that name their field and render as a
//! page or as JSON depending on where the request went.

use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use pgmon_contract::target::TargetName;
use serde::de::DeserializeOwned;

use crate::error::{AppError, PageError};
use crate::params;

/// A request's parameters that cannot be read: answered as the page or the API would answer
/// any other error of the request.
pub struct ParameterRejection {
    error: AppError,
    for_a_page: bool,
}

impl ParameterRejection {
    fn new(parts: &Parts, error: AppError) -> ParameterRejection {
        ParameterRejection {
            error,
            for_a_page: !parts.uri.path().starts_with("/api/"),
        }
    }
}

impl IntoResponse for ParameterRejection {
    fn into_response(self) -> Response {
        if self.for_a_page {
            PageError(self.error).into_response()
        } else {
            self.error.into_response()
        }
    }
}

/// The `{target}` of the path, a valid target name.
pub struct Target(pub TargetName);

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = ParameterRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Target, ParameterRejection> {
        let missing = || AppError::bad_request("target", "the path names no target");
        let path = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ParameterRejection::new(parts, missing()))?;
        let text = path
            .iter()
            .find(|(name, _)| *name == "target")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| ParameterRejection::new(parts, missing()))?;
        params::target_name(&text)
            .map(Target)
            .map_err(|error| ParameterRejection::new(parts, error))
    }
}

impl utoipa::IntoParams for Target {
    fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        vec![ParameterBuilder::new()
            .name("target")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The target's name: lowercase letters, digits and hyphens"))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()]
    }
}

/// One parameter struct of `params`, read from the query string (the names it does not know
/// are left to the other structs of the request).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ParameterRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params<T>, ParameterRejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| Params(value))
            .map_err(|rejection| ParameterRejection::new(parts, AppError::bad_request("query", rejection.body_text())))
    }
}
