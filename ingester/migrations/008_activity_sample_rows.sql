CREATE TABLE activity_sample_rows (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         pid INTEGER NOT NULL,
         database VARCHAR,
         user_name VARCHAR,
         application VARCHAR,
         client_addr VARCHAR,
         backend_type VARCHAR,
         state VARCHAR,
         wait_event_type VARCHAR,
         wait_event VARCHAR,
         query_id BIGINT,
         query VARCHAR,
         backend_start TIMESTAMP,
         xact_start_before_query_us BIGINT,
         query_start TIMESTAMP,
         state_change_after_query_us BIGINT,
         blocking_pids INTEGER[]
     );
     INSERT INTO activity_sample_rows
     SELECT target, collected_at, pid, database, user_name, application, client_addr, backend_type, state,
            wait_event_type, wait_event, query_id, query, backend_start,
            epoch_us(coalesce(query_start, collected_at)) - epoch_us(xact_start),
            query_start,
            epoch_us(state_change) - epoch_us(coalesce(query_start, collected_at)),
            blocking_pids
     FROM activity_samples
     ORDER BY target, pid, backend_start, collected_at;
     DROP TABLE activity_samples;
CREATE VIEW activity_samples AS
     SELECT target, collected_at, pid, database, user_name, application, client_addr, backend_type, state,
            wait_event_type, wait_event, query_id, query, backend_start,
            make_timestamp(epoch_us(coalesce(query_start, collected_at)) - xact_start_before_query_us) AS xact_start,
            query_start,
            make_timestamp(epoch_us(coalesce(query_start, collected_at)) + state_change_after_query_us) AS state_change,
            blocking_pids
     FROM activity_sample_rows;
CREATE TABLE compactions (compacted_at TIMESTAMP NOT NULL);