//! `docs/configuration.md` is what `pgmon reference` generates from the code: every flag,
//! environment variable and targets-file key, never out of date.

use std::process::Command;

#[test]
fn the_configuration_reference_is_current() {
    let output = Command::new(env!("CARGO_BIN_EXE_pgmon")).arg("reference").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let generated = String::from_utf8(output.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/configuration.md is out of date: run `pgmon reference > docs/configuration.md`"
    );
    for key in [
        "PGMON_NATS_URL",
        "PGMON_RETENTION",
        "PGMON_HEALTH_LISTEN",
        "`intervals`",
        "## `pgmon targets add`",
    ] {
        assert!(generated.contains(key), "{key} missing from the reference");
    }
}
