CREATE TABLE setting_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         category VARCHAR NOT NULL,
         name VARCHAR NOT NULL,
         value VARCHAR NOT NULL,
         source VARCHAR,
         pending_restart BOOLEAN NOT NULL
     )