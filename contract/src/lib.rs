//! The contract between pgmon's roles and any other client: the versioned snapshot events
//! (`event`), alerts and their notifications (`alert`), the named queries and their replies (`query`), the web API's own answers (`api`), the NATS subjects and names
//! (`subjects`) and target names (`target`). Only serde and schema derives: no web, crypto,
//! NATS client or logging, so an external consumer of the stream depends on this alone.

pub mod alert;
pub mod api;
pub mod event;
pub mod query;
pub mod subjects;
pub mod target;
