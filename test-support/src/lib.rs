//! Throw-away PostgreSQL and nats-server instances for pgmon's tests: temp dirs, random ports, cleaned up on drop.
//!
//! Binaries are found through environment variables first, then the usual places:
//! - PostgreSQL: `PGMON_TEST_PG_BIN` (a `bin` directory), else `pg_config --bindir`, else the
//!   newest `/usr/lib/postgresql/<major>/bin`; a given major version (13 to 18) from
//!   `PGMON_TEST_PG_VERSIONS` (default `/opt/pgmon/postgresql`, installed by `scripts/setup.sh`);
//! - nats-server: `PGMON_TEST_NATS_SERVER`, else `nats-server` on `PATH` (2.10 or newer).

mod nats;
mod postgres;
mod process;

pub use nats::{ca_file_for, connect_as, find_nats_server, key_file_for, nats_args_as, TestNats};
pub use postgres::{TestCertificates, TestPostgres};
pub use process::free_local_port;
