CREATE TABLE statement_text_copies (
         target VARCHAR NOT NULL,
         query_id BIGINT NOT NULL,
         query VARCHAR NOT NULL,
         seen_at TIMESTAMP NOT NULL
     );
     INSERT INTO statement_text_copies
     SELECT target, query_id, arg_max(query, collected_at), max(collected_at)
     FROM statement_samples WHERE query IS NOT NULL GROUP BY target, query_id;
DROP VIEW statement_texts;
-- The newest text of each query id, from the copies every partition keeps.
     CREATE VIEW statement_texts AS
         SELECT target, query_id, arg_max(query, seen_at) AS query, min(seen_at) AS first_seen
         FROM statement_text_copies GROUP BY target, query_id;