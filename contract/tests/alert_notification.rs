//! The notification body of the generic webhook: its golden fixture keeps its meaning and the
//! published JSON Schema is the one the code generates (regenerate with
//! `PGMON_WRITE_SCHEMA=1 cargo test -p pgmon-contract --test alert_notification`).

use std::path::Path;

use pgmon_contract::alert::{notification_json_schema, AlertNotification, NotificationKind, Severity};

#[test]
fn version_1_firing_notification_keeps_its_meaning() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/notifications/v1/firing.json");
    let notification: AlertNotification = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(notification.schema_version, pgmon_contract::alert::NOTIFICATION_SCHEMA_VERSION);
    assert_eq!(
        (notification.kind, notification.severity),
        (NotificationKind::Firing, Severity::Critical)
    );
    assert_eq!(notification.target.as_str(), "prod-db1");
    assert_eq!(notification.labels["env"], "prod");
    assert_eq!((notification.value, notification.threshold), (4.0, 3.0));
    assert_eq!(notification.links[1].title, "Locks and blocking");
}

#[test]
fn the_published_notification_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/alert-notification-v1.schema.json");
    let generated = serde_json::to_string_pretty(&notification_json_schema()).unwrap() + "\n";
    if std::env::var_os("PGMON_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == published,
        "{} is out of date: regenerate it with PGMON_WRITE_SCHEMA=1 cargo test -p pgmon-contract --test alert_notification",
        path.display()
    );
}
