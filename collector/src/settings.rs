//! The `settings` snapshot: the server's start time and version, the settings that differ from
//! their defaults (with a pending restart), and the extensions of the database the collector
//! connects to. Sampled on a schedule and published only when something changed, so the stored
//! snapshots are the target's change timeline.

use pgmon_contract::event::{SettingCategory, SettingRow};
use tokio_postgres::{Client, Statement};

/// Settings whose source is the collector's own session (`client`, `session`) or a value
/// computed at start (`override`) are left out: they are not the server's configuration.
const SETTINGS_QUERY: &str = "SELECT 'server', 'start_time',
            to_char(pg_postmaster_start_time() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), NULL, false
     UNION ALL
     SELECT 'server', 'version', version(), NULL, false
     UNION ALL
     SELECT 'setting', name, current_setting(name), source, pending_restart
     FROM pg_settings
     WHERE source NOT IN ('default', 'override', 'client', 'session') OR pending_restart
     UNION ALL
     SELECT 'extension', extname::text, extversion, NULL, false FROM pg_extension
     ORDER BY 1, 2";

pub(crate) async fn prepare(client: &Client) -> Result<Statement, tokio_postgres::Error> {
    client.prepare(SETTINGS_QUERY).await
}

/// Takes one sample, in a stable order (by category, then name).
pub(crate) async fn sample(client: &Client, statement: &Statement) -> Result<Vec<SettingRow>, tokio_postgres::Error> {
    let rows = client.query(statement, &[]).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let category = match row.get::<_, &str>(0) {
                "server" => SettingCategory::Server,
                "setting" => SettingCategory::Setting,
                "extension" => SettingCategory::Extension,
                _ => return None,
            };
            Some(SettingRow {
                category,
                name: row.get(1),
                value: row.get::<_, Option<String>>(2).unwrap_or_default(),
                source: row.get(3),
                pending_restart: row.get(4),
            })
        })
        .collect())
}
