CREATE TABLE activity_snapshots (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         stream_sequence UBIGINT NOT NULL,
         server_version_num INTEGER NOT NULL,
         system_identifier VARCHAR,
         row_count INTEGER NOT NULL
     );
     CREATE TABLE activity_samples (
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
         xact_start TIMESTAMP,
         query_start TIMESTAMP,
         state_change TIMESTAMP,
         blocking_pids INTEGER[]
     );
     CREATE TABLE ingest_progress (
         stream VARCHAR PRIMARY KEY,
         last_sequence UBIGINT NOT NULL
     );