CREATE TABLE target_status (
         target VARCHAR NOT NULL,
         collected_at TIMESTAMP NOT NULL,
         state VARCHAR NOT NULL,
         reason VARCHAR,
         message VARCHAR,
         since TIMESTAMP NOT NULL
     );