ALTER TABLE target_status ADD COLUMN limitations STRUCT(kind VARCHAR, reason VARCHAR, message VARCHAR)[];
     CREATE TABLE snapshot_parts (
         target VARCHAR NOT NULL,
         kind VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         stream_sequence UBIGINT NOT NULL,
         part_index INTEGER NOT NULL,
         part_count INTEGER NOT NULL,
         row_count INTEGER NOT NULL,
         statements_dealloc BIGINT,
         statements_stats_reset TIMESTAMP
     );
     CREATE TABLE statement_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         database VARCHAR NOT NULL,
         user_name VARCHAR NOT NULL,
         query_id BIGINT NOT NULL,
         toplevel BOOLEAN,
         query VARCHAR,
         calls BIGINT NOT NULL,
         total_exec_time_ms DOUBLE NOT NULL,
         min_exec_time_ms DOUBLE NOT NULL,
         max_exec_time_ms DOUBLE NOT NULL,
         mean_exec_time_ms DOUBLE NOT NULL,
         stddev_exec_time_ms DOUBLE NOT NULL,
         plans BIGINT NOT NULL,
         total_plan_time_ms DOUBLE NOT NULL,
         rows BIGINT NOT NULL,
         shared_blks_hit BIGINT NOT NULL,
         shared_blks_read BIGINT NOT NULL,
         shared_blks_dirtied BIGINT NOT NULL,
         shared_blks_written BIGINT NOT NULL,
         local_blks_hit BIGINT NOT NULL,
         local_blks_read BIGINT NOT NULL,
         local_blks_dirtied BIGINT NOT NULL,
         local_blks_written BIGINT NOT NULL,
         temp_blks_read BIGINT NOT NULL,
         temp_blks_written BIGINT NOT NULL,
         shared_blk_read_time_ms DOUBLE NOT NULL,
         shared_blk_write_time_ms DOUBLE NOT NULL,
         local_blk_read_time_ms DOUBLE,
         local_blk_write_time_ms DOUBLE,
         temp_blk_read_time_ms DOUBLE,
         temp_blk_write_time_ms DOUBLE,
         wal_records BIGINT NOT NULL,
         wal_fpi BIGINT NOT NULL,
         wal_bytes BIGINT NOT NULL,
         wal_buffers_full BIGINT,
         jit_functions BIGINT,
         jit_time_ms DOUBLE,
         parallel_workers_to_launch BIGINT,
         parallel_workers_launched BIGINT,
         stats_since TIMESTAMP
     );
-- The text of each query id, sent once per collector run.
     CREATE VIEW statement_texts AS
         SELECT target, query_id, arg_max(query, collected_at) AS query, min(collected_at) AS first_seen
         FROM statement_samples WHERE query IS NOT NULL GROUP BY target, query_id;
     -- What each entry did between two samples. An entry counts from zero again after a reset of
     -- all statistics (stats_reset moved), after its own reset or eviction (stats_since moved, or
     -- a counter went down), so deltas are never negative. An entry first seen after the
     -- target's first sample counted from zero since then; in the first sample it has no delta.
     CREATE VIEW statement_deltas AS
         WITH info AS (
             SELECT target, collected_at, any_value(statements_stats_reset) AS stats_reset
             FROM snapshot_parts WHERE kind = 'statements' GROUP BY target, collected_at
         ),
         firsts AS (
             SELECT target, min(collected_at) AS first_collected_at FROM info GROUP BY target
         ),
         paired AS (
             SELECT s.*, i.stats_reset, f.first_collected_at,
                    lag(s.collected_at) OVER entry AS previous_collected_at,
                    lag(i.stats_reset) OVER entry AS previous_stats_reset,
                    lag(s.stats_since) OVER entry AS previous_stats_since,
                    lag(s.calls) OVER entry AS previous_calls,
                    lag(s.total_exec_time_ms) OVER entry AS previous_total_exec_time_ms,
                    lag(s.total_plan_time_ms) OVER entry AS previous_total_plan_time_ms,
                    lag(s.rows) OVER entry AS previous_rows,
                    lag(s.shared_blks_hit) OVER entry AS previous_shared_blks_hit,
                    lag(s.shared_blks_read) OVER entry AS previous_shared_blks_read,
                    lag(s.shared_blks_written) OVER entry AS previous_shared_blks_written,
                    lag(s.temp_blks_read) OVER entry AS previous_temp_blks_read,
                    lag(s.temp_blks_written) OVER entry AS previous_temp_blks_written,
                    lag(s.shared_blk_read_time_ms) OVER entry AS previous_shared_blk_read_time_ms,
                    lag(s.wal_bytes) OVER entry AS previous_wal_bytes
             FROM statement_samples s
             LEFT JOIN info i USING (target, collected_at)
             LEFT JOIN firsts f USING (target)
             WINDOW entry AS (PARTITION BY s.target, s.database, s.user_name, s.query_id, s.toplevel ORDER BY s.collected_at)
         ),
         classified AS (
             SELECT *,
                    CASE
                        WHEN previous_calls IS NULL THEN collected_at > first_collected_at
                        ELSE stats_reset IS DISTINCT FROM previous_stats_reset
                          OR stats_since IS DISTINCT FROM previous_stats_since
                          OR calls < previous_calls
                          OR total_exec_time_ms < previous_total_exec_time_ms
                    END AS counts_from_zero
             FROM paired
         )
         SELECT target, collected_at, previous_collected_at, database, user_name, query_id, toplevel, counts_from_zero,
                CASE WHEN counts_from_zero THEN calls WHEN previous_calls IS NOT NULL THEN calls - previous_calls END AS calls,
                CASE WHEN counts_from_zero THEN total_exec_time_ms WHEN previous_calls IS NOT NULL THEN total_exec_time_ms - previous_total_exec_time_ms END AS total_exec_time_ms,
                CASE WHEN counts_from_zero THEN total_plan_time_ms WHEN previous_calls IS NOT NULL THEN total_plan_time_ms - previous_total_plan_time_ms END AS total_plan_time_ms,
                CASE WHEN counts_from_zero THEN rows WHEN previous_calls IS NOT NULL THEN rows - previous_rows END AS rows,
                CASE WHEN counts_from_zero THEN shared_blks_hit WHEN previous_calls IS NOT NULL THEN shared_blks_hit - previous_shared_blks_hit END AS shared_blks_hit,
                CASE WHEN counts_from_zero THEN shared_blks_read WHEN previous_calls IS NOT NULL THEN shared_blks_read - previous_shared_blks_read END AS shared_blks_read,
                CASE WHEN counts_from_zero THEN shared_blks_written WHEN previous_calls IS NOT NULL THEN shared_blks_written - previous_shared_blks_written END AS shared_blks_written,
                CASE WHEN counts_from_zero THEN temp_blks_read WHEN previous_calls IS NOT NULL THEN temp_blks_read - previous_temp_blks_read END AS temp_blks_read,
                CASE WHEN counts_from_zero THEN temp_blks_written WHEN previous_calls IS NOT NULL THEN temp_blks_written - previous_temp_blks_written END AS temp_blks_written,
                CASE WHEN counts_from_zero THEN shared_blk_read_time_ms WHEN previous_calls IS NOT NULL THEN shared_blk_read_time_ms - previous_shared_blk_read_time_ms END AS shared_blk_read_time_ms,
                CASE WHEN counts_from_zero THEN wal_bytes WHEN previous_calls IS NOT NULL THEN wal_bytes - previous_wal_bytes END AS wal_bytes
         FROM classified;
CREATE TABLE object_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         database VARCHAR NOT NULL,
         schema_name VARCHAR NOT NULL,
         name VARCHAR NOT NULL,
         kind VARCHAR NOT NULL,
         parent VARCHAR,
         total_bytes BIGINT NOT NULL,
         table_bytes BIGINT NOT NULL,
         index_bytes BIGINT NOT NULL,
         toast_bytes BIGINT NOT NULL,
         row_estimate BIGINT,
         last_vacuum TIMESTAMP,
         last_autovacuum TIMESTAMP,
         last_analyze TIMESTAMP,
         last_autoanalyze TIMESTAMP
     );