//! What can go wrong storing or reading partitions.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: duckdb::Error },
    #[error("schema migration {version} failed: {source}")]
    Migrate { version: i32, source: duckdb::Error },
    #[error("{path} was written by a newer pgmon (schema version {found}, this one knows up to {known})")]
    NewerSchema { path: PathBuf, found: i32, known: i32 },
    #[error("cannot read the ingest progress: {0}")]
    ReadProgress(duckdb::Error),
    #[error("cannot store a batch: {0}")]
    Write(duckdb::Error),
    #[error("cannot open a reader connection: {0}")]
    Reader(duckdb::Error),
    #[error("cannot close partition {path}: {source}")]
    Close { path: PathBuf, source: duckdb::Error },
    #[error("cannot compact partition {path}: {source}")]
    Compact { path: PathBuf, source: duckdb::Error },
    #[error("cannot {action} {path}: {source}")]
    Files {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot adopt {legacy} as partition {partition}: that partition already exists; move one of them away")]
    LegacyConflict { legacy: PathBuf, partition: PathBuf },
}

/// Maps a file system error of `action` on `path` to a [`StoreError`].
pub(crate) fn files_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Files {
        action,
        path: path.to_owned(),
        source,
    }
}
