ALTER TABLE object_samples ADD COLUMN size_stale_reason VARCHAR;
     ALTER TABLE object_samples ADD COLUMN size_measured_at TIMESTAMP;