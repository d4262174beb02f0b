#!/bin/sh
# Demo PostgreSQL for docker-compose.yml: a least-privilege monitoring role and pg_stat_statements.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE pgmon LOGIN PASSWORD '${PGMON_DEMO_PASSWORD}' IN ROLE pg_monitor;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
