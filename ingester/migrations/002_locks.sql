CREATE TABLE lock_samples (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         pid INTEGER NOT NULL,
         lock_type VARCHAR NOT NULL,
         mode VARCHAR NOT NULL,
         granted BOOLEAN NOT NULL,
         database VARCHAR,
         relation VARCHAR,
         page INTEGER,
         tuple INTEGER,
         virtual_xid VARCHAR,
         transaction_id VARCHAR,
         waiting_since TIMESTAMP,
         blocked_by INTEGER[]
     );