//! Turns SIGINT and SIGTERM into the cancellation token every role's `run` watches.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled at the first SIGINT or SIGTERM.
pub fn cancel_on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}
