//! "Test connection": connects to a target as the collector would and reports exactly what
//! fails (name lookup, refused, TLS, authentication, database, privileges, pg_stat_statements).

use std::time::Duration;

use pgmon_common::registry::{ConnectionCheck, ConnectionTestReport};
use pgmon_common::telemetry::error_chain;
use pgmon_contract::event::DownReason;

use crate::config::TargetSpec;
use crate::connection::{self, ConnectError};
use crate::statements;

/// How long a test may take before it reports the target as unreachable.
const TEST_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a failed connection looked like, in the words a DBA acts on.
fn connect_failure_message(error: &ConnectError) -> String {
    let detail = match error {
        ConnectError::Connect(source) | ConnectError::Identify(source) => error_chain(source),
        // Says itself what to do: no generic reason in front.
        ConnectError::ClearTextPasswordRefused { .. } | ConnectError::WrongSessionKind { .. } => return error.to_string(),
        other => other.to_string(),
    };
    let lowered = detail.to_lowercase();
    let what = match error.down_reason() {
        DownReason::Unreachable if lowered.contains("lookup") || lowered.contains("name or service not known") => {
            "the host name does not resolve (DNS)"
        }
        DownReason::Unreachable if lowered.contains("refused") => "the connection was refused: nothing listens at that host and port",
        DownReason::Unreachable if lowered.contains("timed out") || lowered.contains("timeout") => {
            "the connection timed out: a firewall or a wrong address"
        }
        DownReason::Unreachable => "the server cannot be reached",
        DownReason::TlsFailed => "the TLS handshake failed",
        DownReason::AuthenticationFailed => "authentication failed: wrong password or user, or pg_hba.conf refuses pgmon",
        DownReason::DatabaseMissing => "the database does not exist",
        DownReason::InsufficientPrivilege => "the user may not connect to that database",
        DownReason::ServerNotReady => "the server is starting, stopping or in recovery",
        DownReason::TooManyConnections => "the server has no free connection slot",
        DownReason::QueryFailed => "the server refused a query",
    };
    format!("{what} ({detail})")
}

/// Connects with the target's settings and checks what pgmon needs; never returns an error:
/// every failure is part of the report.
pub async fn test_connection(target: &TargetSpec) -> ConnectionTestReport {
    let (client, identity) = match connection::connect(target, TEST_STATEMENT_TIMEOUT, None).await {
        Ok(connected) => connected,
        Err(error) => {
            return ConnectionTestReport {
                ok: false,
                failure: Some(error.down_reason()),
                message: connect_failure_message(&error),
                server_version: None,
                checks: Vec::new(),
            }
        }
    };
    let mut checks = Vec::new();
    let sees_all_sessions = client
        .query_one(
            "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .map(|row| row.get::<_, Option<bool>>(0).unwrap_or(false));
    checks.push(match sees_all_sessions {
        Ok(true) => ConnectionCheck::passed("privileges", "sees every session's queries and waits"),
        Ok(false) => ConnectionCheck::failed(
            "privileges",
            "cannot see other users' queries: run GRANT pg_monitor TO the monitoring user",
        ),
        Err(error) => ConnectionCheck::failed("privileges", format!("cannot check privileges: {}", error_chain(&error))),
    });
    checks.push(match statements::prepare(&client).await {
        Ok(Ok(_)) => ConnectionCheck::passed("pg_stat_statements", "installed and readable"),
        Ok(Err(limitation)) => ConnectionCheck::failed("pg_stat_statements", limitation.message),
        Err(error) => ConnectionCheck::failed(
            "pg_stat_statements",
            format!("cannot check pg_stat_statements: {}", error_chain(&error)),
        ),
    });
    let all_passed = checks.iter().all(|check| check.passed);
    ConnectionTestReport {
        ok: true,
        failure: None,
        message: if all_passed {
            format!(
                "connected to PostgreSQL {}; everything pgmon samples is readable",
                identity.server_version
            )
        } else {
            format!("connected to PostgreSQL {}, with limitations below", identity.server_version)
        },
        server_version: Some(identity.server_version),
        checks,
    }
}
