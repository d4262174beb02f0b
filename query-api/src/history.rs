//! Reads history by asking the ingesters named queries over NATS request/reply.

use std::time::Duration;

use pgmon_common::query::{ActivitySeriesReply, ActivitySeriesRequest, QueryReply, ACTIVITY_SERIES_QUERY};
use pgmon_common::subjects::query_subject;

use crate::error::AppError;

/// Asks for an activity series.
pub async fn activity_series(
    client: &async_nats::Client,
    timeout: Duration,
    request: &ActivitySeriesRequest,
) -> Result<ActivitySeriesReply, AppError> {
    named_query(client, timeout, ACTIVITY_SERIES_QUERY, request).await
}

async fn named_query<Request: serde::Serialize, Reply: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    timeout: Duration,
    query_name: &str,
    request: &Request,
) -> Result<Reply, AppError> {
    let payload = serde_json::to_vec(request).map_err(|e| AppError::Internal(format!("encode {query_name} request: {e}")))?;
    let asked = tokio::time::timeout(timeout, client.request(query_subject(query_name), payload.into())).await;
    let message = match asked {
        Err(_) => {
            return Err(AppError::Unavailable(format!(
                "no ingester answered within {timeout:?}; history is unavailable"
            )))
        }
        Ok(Err(error)) if matches!(error.kind(), async_nats::RequestErrorKind::NoResponders) => {
            return Err(AppError::Unavailable("no ingester is running; history is unavailable".to_owned()))
        }
        Ok(Err(error)) if matches!(error.kind(), async_nats::RequestErrorKind::TimedOut) => {
            return Err(AppError::Unavailable(format!(
                "no ingester answered within {timeout:?}; history is unavailable"
            )))
        }
        Ok(Err(error)) => return Err(AppError::Unavailable(format!("cannot reach the ingesters: {error}"))),
        Ok(Ok(message)) => message,
    };
    let reply: QueryReply<Reply> =
        serde_json::from_slice(&message.payload).map_err(|e| AppError::Internal(format!("undecodable {query_name} reply: {e}")))?;
    match reply {
        QueryReply::Ok(answer) => Ok(answer),
        QueryReply::Invalid(message) => Err(AppError::bad_request("query", message)),
        QueryReply::Failed(message) => Err(AppError::Internal(format!("{query_name}: {message}"))),
    }
}
