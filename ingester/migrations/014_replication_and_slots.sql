CREATE TABLE replication_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         role VARCHAR NOT NULL,
         name VARCHAR NOT NULL,
         client_addr VARCHAR,
         state VARCHAR,
         sync_state VARCHAR,
         replay_lag_bytes BIGINT,
         write_lag_bytes BIGINT,
         flush_lag_bytes BIGINT,
         write_lag_ms DOUBLE,
         flush_lag_ms DOUBLE,
         replay_lag_ms DOUBLE,
         replay_paused BOOLEAN,
         slot_name VARCHAR
     );
     CREATE TABLE slot_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         slot_name VARCHAR NOT NULL,
         slot_type VARCHAR NOT NULL,
         plugin VARCHAR,
         database VARCHAR,
         temporary BOOLEAN NOT NULL,
         active BOOLEAN NOT NULL,
         active_pid INTEGER,
         retained_bytes BIGINT,
         wal_status VARCHAR,
         safe_wal_size BIGINT,
         inactive_since TIMESTAMP,
         conflicting BOOLEAN,
         invalidation_reason VARCHAR
     )