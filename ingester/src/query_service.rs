//! Answers named queries over NATS request/reply with the ingester's own DuckDB connection.
//!
//! No other process may open the file the ingester writes (DuckDB's one-writer rule), so
//! history is read here and shipped as JSON, in several messages when one is too small (never
//! more than `MAX_REPLY_BYTES`). Only named, parameterised queries exist.

use std::sync::{Arc, Mutex};

use duckdb::Connection;
use futures::StreamExt;
use pgmon_contract::query::{
    reply_messages, ActivitySeriesRequest, BlockingRequest, ChangesRequest, DatabaseSeriesRequest, LockHistoryRequest, NamedQuery,
    ObjectGrowthRequest, ObjectsRequest, QueryReply, ReplicationSeriesRequest, SessionHistoryRequest, SessionsRequest,
    SizeForecastsRequest, StatementHistoryRequest, StatementRegressionsRequest, TopStatementsRequest, VacuumHealthRequest,
    WalSeriesRequest, MAX_QUERY_BUDGET, MAX_REPLY_BYTES, QUERY_BUDGET_HEADER, REPLY_PART_HEADER,
};
use pgmon_contract::subjects::{query_subject, QUERY_QUEUE_GROUP};
use pgmon_contract::target::TargetName;
use tokio_util::sync::CancellationToken;

use crate::history;
use crate::series::activity_series;

/// Serves queries about `targets` (all targets when empty) until `shutdown` is cancelled.
pub(crate) async fn serve_queries(
    client: async_nats::Client,
    reader: Connection,
    targets: Vec<TargetName>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let subjects: Vec<String> = if targets.is_empty() {
        vec![query_subject("*", ">")]
    } else {
        targets.iter().map(|target| query_subject("*", target.as_str())).collect()
    };
    let mut subscriptions = Vec::new();
    for subject in subjects {
        subscriptions.push(client.queue_subscribe(subject, QUERY_QUEUE_GROUP.to_owned()).await?);
    }
    let mut requests = futures::stream::select_all(subscriptions);
    let readers = Arc::new(Readers::new(reader));
    loop {
        let request = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            request = requests.next() => match request {
                Some(request) => request,
                None => return Ok(()),
            },
        };
        let Some(reply_subject) = request.reply.clone() else { continue };
        let client = client.clone();
        let readers = Arc::clone(&readers);
        tokio::spawn(async move {
            let query_name = request.subject.as_str().split('.').nth(2).unwrap_or_default().to_owned();
            let answered_name = query_name.clone();
            let deadline = tokio::time::Instant::now() + query_budget(request.headers.as_ref());
            let reply = match readers
                .with_reader(deadline, move |connection| answer(&query_name, &request.payload, connection))
                .await
            {
                Ok(Some(reply)) => reply,
                // Nobody waits for the answer any more: none is sent.
                Ok(None) => {
                    tracing::info!(query = answered_name, "query stopped at its asker's deadline");
                    return;
                }
                Err(panic) => encode(&QueryReply::<()>::Failed(format!("query task failed: {panic}"))),
            };
            send_reply(&client, reply_subject, reply, &answered_name).await;
        });
    }
}

/// How long the asker waits (its [`QUERY_BUDGET_HEADER`]), at most [`MAX_QUERY_BUDGET`].
fn query_budget(headers: Option<&async_nats::HeaderMap>) -> std::time::Duration {
    headers
        .and_then(|headers| headers.get(QUERY_BUDGET_HEADER))
        .and_then(|value| value.as_str().parse::<u64>().ok())
        .map_or(MAX_QUERY_BUDGET, |milliseconds| {
            std::time::Duration::from_millis(milliseconds).min(MAX_QUERY_BUDGET)
        })
}

/// Connections reading the ingester's database, one per core: the several queries of one page
/// (and the pages of several people) run side by side, where one shared connection answered
/// them in turn. DuckDB lets them read while the ingester writes.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    /// One permit per idle connection.
    available: tokio::sync::Semaphore,
    /// Cloned to replace a connection lost with a query that panicked.
    template: Mutex<Connection>,
}

impl Readers {
    fn new(template: Connection) -> Readers {
        let count = std::thread::available_parallelism().map_or(2, |cores| cores.get().max(2));
        let idle: Vec<Connection> = (0..count).filter_map(|_| template.try_clone().ok()).collect();
        Readers {
            available: tokio::sync::Semaphore::new(idle.len()),
            idle: Mutex::new(idle),
            template: Mutex::new(template),
        }
    }

    /// Runs `work` on an idle connection on the blocking pool, waiting for one when all are
    /// busy. At `deadline` the wait ends, or the running query is interrupted: `Ok(None)`.
    async fn with_reader<T: Send + 'static>(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
        work: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<Option<T>, tokio::task::JoinError> {
        let Ok(permit) = tokio::time::timeout_at(deadline, self.available.acquire()).await else {
            return Ok(None);
        };
        let permit = permit.expect("the semaphore is never closed");
        let connection = lock(&self.idle).pop().expect("a permit stands for an idle connection");
        let interrupt = connection.interrupt_handle();
        let mut running = tokio::task::spawn_blocking(move || {
            let result = work(&connection);
            (connection, result)
        });
        let (done, interrupted) = tokio::select! {
            done = &mut running => (done, false),
            _ = tokio::time::sleep_until(deadline) => loop {
                // DuckDB forgets an interrupt that comes before the query starts: repeat it
                // until the query has stopped.
                interrupt.interrupt();
                if let Ok(done) = tokio::time::timeout(std::time::Duration::from_millis(100), &mut running).await {
                    break (done, true);
                }
            }
        };
        match done {
            Ok((connection, result)) => {
                lock(&self.idle).push(connection);
                drop(permit);
                Ok((!interrupted).then_some(result))
            }
            Err(panic) => {
                match lock(&self.template).try_clone() {
                    Ok(replacement) => lock(&self.idle).push(replacement),
                    Err(error) => {
                        tracing::error!(%error, "cannot replace a query connection; queries run on fewer");
                        permit.forget();
                    }
                }
                Err(panic)
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Room left beside a reply message's payload for its headers.
const REPLY_HEADER_ROOM: usize = 1024;

/// Sends a reply in as many messages as the server's message size needs; one larger than any
/// reply may be becomes a [`QueryReply::TooLarge`] the asker can show.
async fn send_reply(client: &async_nats::Client, reply_subject: async_nats::Subject, reply: Vec<u8>, query_name: &str) {
    let reply = if reply.len() > MAX_REPLY_BYTES {
        tracing::info!(query = query_name, bytes = reply.len(), "query answer too large to send");
        encode(&QueryReply::<()>::TooLarge(format!(
            "the answer is {} MiB, more than the {} MiB a reply may carry: choose a shorter time range, a lower limit or a narrower filter",
            reply.len().div_ceil(1024 * 1024),
            MAX_REPLY_BYTES / (1024 * 1024)
        )))
    } else {
        reply
    };
    let message_bytes = client.server_info().max_payload.saturating_sub(REPLY_HEADER_ROOM);
    for (part, payload) in reply_messages(reply, message_bytes) {
        let sent = match part {
            None => client.publish(reply_subject.clone(), payload.into()).await,
            Some(part) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(REPLY_PART_HEADER, part.as_str());
                client.publish_with_headers(reply_subject.clone(), headers, payload.into()).await
            }
        };
        if let Err(error) = sent {
            tracing::warn!(query = query_name, %error, "cannot send a query reply");
            return;
        }
    }
}

fn encode<T: serde::Serialize>(reply: &QueryReply<T>) -> Vec<u8> {
    serde_json::to_vec(reply).expect("query replies always serialise")
}

fn answer(query_name: &str, payload: &[u8], reader: &Connection) -> Vec<u8> {
    match query_name {
        ActivitySeriesRequest::NAME => run(payload, reader, activity_series),
        SessionsRequest::NAME => run(payload, reader, history::sessions),
        SessionHistoryRequest::NAME => run(payload, reader, history::session_history),
        TopStatementsRequest::NAME => run(payload, reader, history::top_statements),
        StatementRegressionsRequest::NAME => run(payload, reader, history::statement_regressions),
        SizeForecastsRequest::NAME => run(payload, reader, history::size_forecasts),
        StatementHistoryRequest::NAME => run(payload, reader, history::statement_history),
        ObjectsRequest::NAME => run(payload, reader, history::objects),
        ObjectGrowthRequest::NAME => run(payload, reader, history::object_growth),
        LockHistoryRequest::NAME => run(payload, reader, history::lock_history),
        BlockingRequest::NAME => run(payload, reader, history::blocking),
        DatabaseSeriesRequest::NAME => run(payload, reader, history::database_series),
        VacuumHealthRequest::NAME => run(payload, reader, history::vacuum_health),
        ReplicationSeriesRequest::NAME => run(payload, reader, history::replication_series),
        ChangesRequest::NAME => run(payload, reader, history::changes),
        WalSeriesRequest::NAME => run(payload, reader, history::wal_series),
        unknown => encode(&QueryReply::<()>::Invalid(format!("unknown query {unknown:?}"))),
    }
}

/// Decodes and checks a request, runs its SQL and encodes the reply; failures of the SQL are
/// logged here and reported without details.
fn run<Query: NamedQuery>(
    payload: &[u8],
    connection: &Connection,
    query: impl FnOnce(&Connection, &Query) -> duckdb::Result<Query::Reply>,
) -> Vec<u8> {
    let request: Query = match serde_json::from_slice(payload) {
        Ok(request) => request,
        Err(error) => return encode(&QueryReply::<()>::Invalid(format!("bad {} request: {error}", Query::NAME))),
    };
    if let Err(error) = request.validate() {
        return encode(&QueryReply::<()>::Invalid(error.to_string()));
    }
    let started = std::time::Instant::now();
    let answered = query(connection, &request);
    crate::metrics::metrics()
        .query_duration
        .get_or_create(&crate::metrics::QueryLabels {
            query: Query::NAME.to_owned(),
        })
        .observe(started.elapsed().as_secs_f64());
    match answered {
        Ok(reply) => encode(&QueryReply::Ok(reply)),
        // Its asker's deadline passed: nobody reads this reply.
        Err(error) if error.to_string().contains("INTERRUPT") => {
            encode(&QueryReply::<()>::Failed("the query was stopped at its deadline".to_owned()))
        }
        Err(error) => {
            tracing::error!(query = Query::NAME, target = %request.target(), %error, "query failed");
            encode(&QueryReply::<()>::Failed("the query failed; see the ingester log".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_past_its_deadline_is_interrupted_and_its_reader_serves_again() {
        let readers = Arc::new(Readers::new(Connection::open_in_memory().unwrap()));
        let endless = "SELECT count(*) FROM range(100000000) AS t1, range(100000000) AS t2";
        let stopped = readers
            .with_reader(tokio::time::Instant::now() + Duration::from_millis(200), move |connection| {
                connection.query_row(endless, [], |row| row.get::<_, i64>(0))
            })
            .await
            .unwrap();
        assert!(stopped.is_none(), "the query ran past its deadline");
        // Every reader, the interrupted one first (the idle list is a stack), answers again.
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        let reader_count = lock(&readers.idle).len();
        for _ in 0..reader_count {
            let answer = readers
                .with_reader(far, |connection| connection.query_row("SELECT 42", [], |row| row.get::<_, i64>(0)))
                .await
                .unwrap();
            assert_eq!(answer.unwrap().unwrap(), 42);
        }
        assert_eq!(query_budget(None), MAX_QUERY_BUDGET);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(QUERY_BUDGET_HEADER, "5000");
        assert_eq!(query_budget(Some(&headers)), Duration::from_secs(5));
        headers.insert(QUERY_BUDGET_HEADER, "99999999");
        assert_eq!(query_budget(Some(&headers)), MAX_QUERY_BUDGET);
    }
}
