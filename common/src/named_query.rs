//! Asking the ingesters a named query over NATS request/reply, as the web and the alerter do; a
//! reply too large for one message arrives in parts and is put back together here.

use std::time::Duration;

use futures::StreamExt;
use pgmon_contract::query::{NamedQuery, QueryReply, ReplyAssembly, QUERY_BUDGET_HEADER, REPLY_PART_HEADER};
use pgmon_contract::subjects::query_subject;

/// Why a named query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum NamedQueryError {
    #[error("cannot reach the ingesters: {0}")]
    Unreachable(String),
    #[error("no ingester answered within {0:?}; history is unavailable")]
    NoAnswer(Duration),
    #[error("the ingester's answer was cut off: {received} of its {count} parts arrived within {timeout:?}")]
    CutOff { received: usize, count: usize, timeout: Duration },
    #[error("no ingester is running; history is unavailable")]
    NoIngester,
    /// The request is wrong, or its answer would be too large: what to change.
    #[error("{0}")]
    Invalid(String),
    /// A bug or a broken ingester; not for end users.
    #[error("{0}")]
    Failed(String),
}

/// Asks the ingester that stores the request's target a named query, giving it `timeout`.
pub async fn ask<Query: NamedQuery>(
    client: &async_nats::Client,
    timeout: Duration,
    request: &Query,
) -> Result<Query::Reply, NamedQueryError> {
    let query_name = Query::NAME;
    let payload = serde_json::to_vec(request).map_err(|e| NamedQueryError::Failed(format!("encode {query_name} request: {e}")))?;
    let subject = query_subject(query_name, request.target().as_str());
    let inbox = client.new_inbox();
    let unreachable = |error: &dyn std::fmt::Display| NamedQueryError::Unreachable(error.to_string());
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| unreachable(&e))?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(QUERY_BUDGET_HEADER, timeout.as_millis().to_string().as_str());
    client
        .publish_with_reply_and_headers(subject, inbox, headers, payload.into())
        .await
        .map_err(|e| unreachable(&e))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut assembly = ReplyAssembly::default();
    let whole = loop {
        let message = match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(unreachable(&"the reply subscription ended")),
            Err(_) => {
                return Err(match assembly.progress() {
                    (0, _) => NamedQueryError::NoAnswer(timeout),
                    (received, count) => NamedQueryError::CutOff { received, count, timeout },
                })
            }
        };
        if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(NamedQueryError::NoIngester);
        }
        let part = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(REPLY_PART_HEADER))
            .map(|value| value.as_str());
        match assembly.accept(part, &message.payload) {
            Ok(Some(whole)) => break whole,
            Ok(None) => {}
            Err(error) => return Err(NamedQueryError::Failed(format!("{query_name} reply: {error}"))),
        }
    };
    // Dropping the subscription unsubscribes; a reply cannot arrive twice.
    drop(replies);
    let reply: QueryReply<Query::Reply> =
        serde_json::from_slice(&whole).map_err(|e| NamedQueryError::Failed(format!("undecodable {query_name} reply: {e}")))?;
    match reply {
        QueryReply::Ok(answer) => Ok(answer),
        QueryReply::Invalid(message) | QueryReply::TooLarge(message) => Err(NamedQueryError::Invalid(message)),
        QueryReply::Failed(message) => Err(NamedQueryError::Failed(format!("{query_name}: {message}"))),
    }
}
