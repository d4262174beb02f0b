//! The collector's session on a target: connected with its own name and timeouts, so it can
//! never hold locks or run long on the monitored server.

use std::time::Duration;

use pgmon_common::telemetry::error_chain;
use pgmon_contract::event::{DownReason, ServerIdentity};
use tokio_postgres::Client;

use crate::config::TargetSpec;
use crate::dial;
use crate::tls::TlsError;

/// The `application_name` of every pgmon session, so DBAs can recognise (and exclude) it.
pub(crate) const APPLICATION_NAME: &str = "pgmon";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("the connection string cannot be used: {0}")]
    Settings(String),
    #[error("cannot resolve host {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("cannot connect to {destination}: {source}")]
    Socket { destination: String, source: std::io::Error },
    #[error(
        "{destination} asked for the password in clear text over a connection that is not TLS-verified, \
         and pgmon does not send it there: connect with sslmode=verify-full (or verify-ca), \
         or have pg_hba.conf use scram-sha-256"
    )]
    ClearTextPasswordRefused { destination: String },
    #[error("{destination} is {}, and target_session_attrs asks otherwise", if *.read_only { "read-only" } else { "read-write" })]
    WrongSessionKind { destination: String, read_only: bool },
    #[error("cannot connect: {}", error_chain(.0))]
    Connect(tokio_postgres::Error),
    #[error("cannot read the server version: {}", error_chain(.0))]
    Identify(tokio_postgres::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
}

impl ConnectError {
    pub(crate) fn down_reason(&self) -> DownReason {
        match self {
            ConnectError::Connect(error) | ConnectError::Identify(error) => down_reason(error),
            ConnectError::Tls(_) => DownReason::TlsFailed,
            ConnectError::Settings(_) | ConnectError::Resolve { .. } | ConnectError::Socket { .. } => DownReason::Unreachable,
            ConnectError::ClearTextPasswordRefused { .. } => DownReason::AuthenticationFailed,
            // A standby where a primary is asked for (or the reverse) is in the wrong state.
            ConnectError::WrongSessionKind { .. } => DownReason::ServerNotReady,
        }
    }
}

/// Sorts a failure into the reasons operators act on; anything else without a server error
/// code (refused, timed out, closed) is unreachable.
pub(crate) fn down_reason(error: &tokio_postgres::Error) -> DownReason {
    let Some(code) = error.code() else {
        return if is_tls_failure(error) {
            DownReason::TlsFailed
        } else {
            DownReason::Unreachable
        };
    };
    match code.code() {
        "28P01" | "28000" => DownReason::AuthenticationFailed,
        "3D000" => DownReason::DatabaseMissing,
        "42501" => DownReason::InsufficientPrivilege,
        "57P01" | "57P02" | "57P03" => DownReason::ServerNotReady,
        "53300" => DownReason::TooManyConnections,
        _ => DownReason::QueryFailed,
    }
}

/// A handshake rustls refused (an untrusted or wrongly named certificate, …), or a server
/// without TLS where TLS is required.
fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    caused_by::<rustls::Error>(error) || error_chain(error).contains("does not support TLS")
}

/// Whether an error of type `E` is among the causes of `error`, also where an I/O error
/// carries it (a stream's read or write failing with it).
pub(crate) fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(current) = source {
        let carried = current.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if current.is::<E>() || carried.is_some_and(|inner| inner.is::<E>()) {
            return true;
        }
        source = current.source();
    }
    false
}

/// The longest a pgmon query waits for a lock: it must never queue behind DDL for long, since
/// everything that queues behind pgmon then waits too.
const LONGEST_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens a monitoring session (to `database`, or the target's own database) and reads who the
/// server is. Its queries are cancelled after `statement_timeout`.
pub(crate) async fn connect(
    target: &TargetSpec,
    statement_timeout: Duration,
    database: Option<&str>,
) -> Result<(Client, ServerIdentity), ConnectError> {
    let mut config = target.connection.clone();
    config.application_name(APPLICATION_NAME);
    if let Some(database) = database {
        config.dbname(database);
    }
    let milliseconds = |duration: Duration| duration.as_millis().max(1);
    let session_settings = format!(
        "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
        milliseconds(statement_timeout),
        milliseconds((statement_timeout / 2).min(LONGEST_LOCK_WAIT)),
        milliseconds(statement_timeout * 5),
    );
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {session_settings}"),
        _ => session_settings,
    };
    config.options(options);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let (client, connection) = dial::open(&config, &target.tls).await?;
    let target_name = target.name.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(target = %target_name, %error, "monitoring connection ended");
        }
    });
    let identity = server_identity(&client).await?;
    Ok((client, identity))
}

async fn server_identity(client: &Client) -> Result<ServerIdentity, ConnectError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(ConnectError::Identify)?;
    // pg_control_system() may be denied to a monitoring role; the identifier is then left out.
    let system_identifier = match client
        .query_one("SELECT system_identifier::text FROM pg_control_system()", &[])
        .await
    {
        Ok(row) => row.get::<_, Option<String>>(0),
        Err(error) => {
            tracing::debug!(%error, "system identifier not readable");
            None
        }
    };
    Ok(ServerIdentity {
        system_identifier,
        server_version_num: row.get(0),
        server_version: row.get(1),
    })
}
