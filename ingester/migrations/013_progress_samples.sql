CREATE TABLE progress_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         pid INTEGER NOT NULL,
         command VARCHAR NOT NULL,
         database VARCHAR,
         relation VARCHAR,
         phase VARCHAR NOT NULL,
         autovacuum BOOLEAN NOT NULL,
         started_at TIMESTAMP,
         blocks_total BIGINT,
         blocks_done BIGINT,
         index_vacuum_count BIGINT
     )