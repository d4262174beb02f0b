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
    #[arg(long = "log", env = "PGMON_LOG", default_value = "info", global = true)]
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
