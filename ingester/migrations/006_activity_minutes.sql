CREATE TABLE activity_minutes (
         target VARCHAR NOT NULL,
         minute TIMESTAMP NOT NULL,
         wait_event_type VARCHAR,
         wait_event VARCHAR,
         query_id BIGINT,
         database VARCHAR,
         user_name VARCHAR,
         application VARCHAR,
         client_addr VARCHAR,
         backend_type VARCHAR,
         active_rows INTEGER NOT NULL
     );