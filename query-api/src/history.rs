//! Reads history by asking the ingesters named queries over NATS request/reply.

use std::time::Duration;

use pgmon_common::query::{NamedQuery, QueryReply};
use pgmon_common::subjects::query_subject;

use crate::error::AppError;

/// Asks the ingester that stores the request's target a named query.
pub async fn named_query<Query: NamedQuery>(
    client: &async_nats::Client,
    timeout: Duration,
    request: &Query,
) -> Result<Query::Reply, AppError> {
    let query_name = Query::NAME;
    let payload = serde_json::to_vec(request).map_err(|e| AppError::Internal(format!("encode {query_name} request: {e}")))?;
    let subject = query_subject(query_name, request.target().as_str());
    let asked = tokio::time::timeout(timeout, client.request(subject, payload.into())).await;
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
    let reply: QueryReply<Query::Reply> =
        serde_json::from_slice(&message.payload).map_err(|e| AppError::Internal(format!("undecodable {query_name} reply: {e}")))?;
    match reply {
        QueryReply::Ok(answer) => Ok(answer),
        QueryReply::Invalid(message) => Err(AppError::bad_request("query", message)),
        QueryReply::Failed(message) => Err(AppError::Internal(format!("{query_name}: {message}"))),
    }
}
