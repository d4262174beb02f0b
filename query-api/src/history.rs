//! Reads history by asking the ingesters named queries (`pgmon_common::named_query`), with
//! their failures said as the web says them.

use std::time::Duration;

use pgmon_common::named_query::{ask, NamedQueryError};
use pgmon_contract::query::NamedQuery;

use crate::error::AppError;

/// Asks the ingester that stores the request's target a named query.
pub async fn named_query<Query: NamedQuery>(
    client: &async_nats::Client,
    timeout: Duration,
    request: &Query,
) -> Result<Query::Reply, AppError> {
    ask(client, timeout, request).await.map_err(|error| match error {
        NamedQueryError::Invalid(message) => AppError::bad_request("query", message),
        NamedQueryError::Failed(message) => AppError::Internal(message),
        unavailable => AppError::Unavailable(unavailable.to_string()),
    })
}
