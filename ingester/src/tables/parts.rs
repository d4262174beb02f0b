//! `snapshot_parts`: one row per message of a kind whose snapshots may be split (statements,
//! objects, tables), so a reader can tell a complete snapshot (all `part_count` parts stored) from a
//! partial one; the statements' dealloc count and reset time ride along.

use std::sync::Arc;

use duckdb::arrow::array::{Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use duckdb::arrow::record_batch::RecordBatch;
use pgmon_contract::event::{AnySnapshot, SnapshotKind, SnapshotPart};

use super::{column, record_batch, Compaction, Source, Stores, Table};

pub(crate) const SNAPSHOT_PARTS: Table = Table {
    name: "snapshot_parts",
    read_through: None,
    columns: &[
        column("target", "VARCHAR", Source::Target),
        column("kind", "VARCHAR", Source::Computed),
        column("collected_at", "TIMESTAMP", Source::CollectedAt),
        column("stream_sequence", "UBIGINT", Source::Computed),
        column("part_index", "INTEGER", Source::Computed),
        column("part_count", "INTEGER", Source::Computed),
        column("row_count", "INTEGER", Source::Computed),
        column("statements_dealloc", "BIGINT", Source::Computed),
        column("statements_stats_reset", "TIMESTAMP", Source::Computed),
    ],
    compaction: Compaction::ArrivalOrder,
    stores: Stores {
        // The kinds whose samples may come in parts and have no table of their own for them.
        kinds: &[SnapshotKind::Statements, SnapshotKind::Objects, SnapshotKind::Tables],
        batch,
        sample_rows: false,
    },
};

/// Rows of `snapshot_parts`: one per message of a kind whose snapshots may be split, so a
/// reader can tell a complete snapshot (all `part_count` parts stored) from a partial one.
fn batch(snapshots: &[(u64, &AnySnapshot)]) -> RecordBatch {
    let mut target = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut collected_at = TimestampMicrosecondBuilder::new();
    let mut stream_sequence = UInt64Builder::new();
    let mut part_index = Int32Builder::new();
    let mut part_count = Int32Builder::new();
    let mut row_count = Int32Builder::new();
    let mut dealloc = Int64Builder::new();
    let mut stats_reset = TimestampMicrosecondBuilder::new();
    for (sequence, snapshot) in snapshots {
        let part = snapshot.part().unwrap_or(SnapshotPart { index: 0, count: 1 });
        let statements_info = snapshot.statements_info();
        target.append_value(snapshot.target().as_str());
        kind.append_value(snapshot.kind().as_str());
        collected_at.append_value(snapshot.collected_at_us());
        stream_sequence.append_value(*sequence);
        part_index.append_value(i32::try_from(part.index).unwrap_or(i32::MAX));
        part_count.append_value(i32::try_from(part.count).unwrap_or(i32::MAX));
        row_count.append_value(i32::try_from(snapshot.row_count()).unwrap_or(i32::MAX));
        dealloc.append_option(statements_info.map(|info| info.dealloc));
        stats_reset.append_option(statements_info.map(|info| info.stats_reset_us));
    }
    record_batch(vec![
        ("target", Arc::new(target.finish())),
        ("kind", Arc::new(kind.finish())),
        ("collected_at", Arc::new(collected_at.finish())),
        ("stream_sequence", Arc::new(stream_sequence.finish())),
        ("part_index", Arc::new(part_index.finish())),
        ("part_count", Arc::new(part_count.finish())),
        ("row_count", Arc::new(row_count.finish())),
        ("statements_dealloc", Arc::new(dealloc.finish())),
        ("statements_stats_reset", Arc::new(stats_reset.finish())),
    ])
}
