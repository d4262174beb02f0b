//! Answers named queries over NATS request/reply with the ingester's own DuckDB connection.
//!
//! No other process may open the file the ingester writes (DuckDB's one-writer rule), so
//! history is read here and shipped as JSON. Only named, parameterised queries exist.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use pgmon_common::query::{ActivitySeriesRequest, QueryReply, ACTIVITY_SERIES_QUERY};
use pgmon_common::subjects::{query_subject, QUERY_QUEUE_GROUP};
use tokio_util::sync::CancellationToken;

use crate::series::activity_series;

/// Serves queries until `shutdown` is cancelled.
pub(crate) async fn serve_queries(
    client: async_nats::Client,
    reader: duckdb::Connection,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = client.queue_subscribe(query_subject(">"), QUERY_QUEUE_GROUP.to_owned()).await?;
    let reader = Arc::new(Mutex::new(reader));
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            request = requests.next() => match request {
                Some(request) => request,
                None => return Ok(()),
            },
        };
        let Some(reply_subject) = request.reply.clone() else { continue };
        let client = client.clone();
        let reader = Arc::clone(&reader);
        tokio::spawn(async move {
            let query_name = request.subject.as_str().strip_prefix("pgmon.query.").unwrap_or_default().to_owned();
            let reply = tokio::task::spawn_blocking(move || answer(&query_name, &request.payload, &reader))
                .await
                .unwrap_or_else(|panic| QueryReply::<()>::Failed(format!("query task failed: {panic}")).to_json());
            if let Err(error) = client.publish(reply_subject, reply.into()).await {
                tracing::warn!(%error, "cannot send a query reply");
            }
        });
    }
}

trait ReplyJson {
    fn to_json(&self) -> Vec<u8>;
}

impl<T: serde::Serialize> ReplyJson for QueryReply<T> {
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("query replies always serialise")
    }
}

fn answer(query_name: &str, payload: &[u8], reader: &Mutex<duckdb::Connection>) -> Vec<u8> {
    match query_name {
        ACTIVITY_SERIES_QUERY => {
            let request: ActivitySeriesRequest = match serde_json::from_slice(payload) {
                Ok(request) => request,
                Err(error) => return QueryReply::<()>::Invalid(format!("bad {ACTIVITY_SERIES_QUERY} request: {error}")).to_json(),
            };
            if let Err(error) = request.validate() {
                return QueryReply::<()>::Invalid(error.to_string()).to_json();
            }
            let connection = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match activity_series(&connection, &request) {
                Ok(series) => QueryReply::Ok(series).to_json(),
                Err(error) => {
                    tracing::error!(query = ACTIVITY_SERIES_QUERY, target = %request.target, %error, "query failed");
                    QueryReply::<()>::Failed("the query failed; see the ingester log".to_owned()).to_json()
                }
            }
        }
        unknown => QueryReply::<()>::Invalid(format!("unknown query {unknown:?}")).to_json(),
    }
}
