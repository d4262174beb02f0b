//! Reads history by asking the ingesters named queries over NATS request/reply; a reply too
//! large for one message arrives in parts and is put back together here.

use std::time::Duration;

use futures::StreamExt;
use pgmon_contract::query::{NamedQuery, QueryReply, ReplyAssembly, QUERY_BUDGET_HEADER, REPLY_PART_HEADER};
use pgmon_contract::subjects::query_subject;

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
    let inbox = client.new_inbox();
    let cannot_reach = |error: &dyn std::fmt::Display| AppError::Unavailable(format!("cannot reach the ingesters: {error}"));
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| cannot_reach(&e))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(QUERY_BUDGET_HEADER, timeout.as_millis().to_string().as_str());
    client
        .publish_with_reply_and_headers(subject, inbox, headers, payload.into())
        .await
        .map_err(|e| cannot_reach(&e))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut assembly = ReplyAssembly::default();
    let whole = loop {
        let message = match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(cannot_reach(&"the reply subscription ended")),
            Err(_) => {
                return Err(match assembly.progress() {
                    (0, _) => AppError::Unavailable(format!("no ingester answered within {timeout:?}; history is unavailable")),
                    (received, count) => AppError::Unavailable(format!(
                        "the ingester's answer was cut off: {received} of its {count} parts arrived within {timeout:?}"
                    )),
                })
            }
        };
        if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(AppError::Unavailable("no ingester is running; history is unavailable".to_owned()));
        }
        let part = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(REPLY_PART_HEADER))
            .map(|value| value.as_str());
        match assembly.accept(part, &message.payload) {
            Ok(Some(whole)) => break whole,
            Ok(None) => {}
            Err(error) => return Err(AppError::Internal(format!("{query_name} reply: {error}"))),
        }
    };
    // Dropping the subscription unsubscribes; a reply cannot arrive twice.
    drop(replies);
    let reply: QueryReply<Query::Reply> =
        serde_json::from_slice(&whole).map_err(|e| AppError::Internal(format!("undecodable {query_name} reply: {e}")))?;
    match reply {
        QueryReply::Ok(answer) => Ok(answer),
        QueryReply::Invalid(message) | QueryReply::TooLarge(message) => Err(AppError::bad_request("query", message)),
        QueryReply::Failed(message) => Err(AppError::Internal(format!("{query_name}: {message}"))),
    }
}
