//! Logging set-up shared by every role: `tracing` to stderr, as text or JSON lines.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log filter in `tracing` syntax, e.g. "info" or "info,pgmon_collector=debug".
    #[arg(long = "log", env = "PGMON_LOG", default_value = "info,async_nats=warn", global = true)]
    pub filter: String,

    /// Log line format.
    #[arg(long = "log-format", env = "PGMON_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {filter:?}: {source}")]
pub struct LogFilterError {
    filter: String,
    source: tracing_subscriber::filter::ParseError,
}

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init_logging(args: &LogArgs) -> Result<(), LogFilterError> {
    let filter = EnvFilter::try_new(&args.filter).map_err(|source| LogFilterError {
        filter: args.filter.clone(),
        source,
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// An error and its causes on one line ("error connecting to server: Connection refused"),
/// for libraries whose top-level message hides the cause; a cause already in the text is skipped.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error connecting to server")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_names_the_cause_once() {
        let error = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused"));
        assert_eq!(error_chain(&error), "error connecting to server: Connection refused");
    }
}
