# pgmon container image: one image for every role (collect, ingest, serve, up).
# Build: docker build -t pgmon .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# DuckDB's official prebuilt library (pinned by native/package-lock.json), linked, not compiled.
COPY native/package.json native/package-lock.json native/
RUN npm ci --prefix native --ignore-scripts --no-audit --no-fund \
 && install -m 0644 native/node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so /usr/local/lib/libduckdb.so \
 && ldconfig
COPY ui/package.json ui/package-lock.json ui/
RUN npm ci --prefix ui --ignore-scripts --no-audit --no-fund
COPY . .
RUN cargo build --release --locked --bin pgmon

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --home-dir /var/lib/pgmon --create-home pgmon \
 && install -d -o pgmon -g pgmon /var/lib/pgmon/data /var/lib/pgmon/spool /var/lib/pgmon/nats-keys
COPY --from=build /usr/local/lib/libduckdb.so /usr/local/lib/libduckdb.so
RUN ldconfig
COPY --from=build /src/target/release/pgmon /usr/local/bin/pgmon
USER pgmon
WORKDIR /var/lib/pgmon
ENV PGMON_DATA_DIR=/var/lib/pgmon/data
ENTRYPOINT ["pgmon"]
CMD ["--help"]
