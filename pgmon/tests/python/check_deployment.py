"""Checks the deployment files as a cluster and Docker would read them.

- every kustomize overlay under k8s/overlays renders, and the rendered objects pass the
  Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors);
- the NATS configs inlined in the manifests are those of nats/ (server, authorization, TLS),
  and a NetworkPolicy stands in front of NATS;
- docker-compose.yml passes the Compose specification's JSON Schema, and every variable it
  requires is in deploy/pgmon.env.example.

Usage: check_deployment.py REPO_ROOT KUSTOMIZE COMPOSE_SCHEMA. Exits 1 naming each problem."""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml


def check_overlays(root: Path, kustomize: str, problems: list[str]) -> None:
    overlays = sorted(path for path in (root / "k8s/overlays").iterdir() if path.is_dir())
    if not overlays:
        problems.append("no overlays under k8s/overlays")
    for overlay in overlays:
        rendered = subprocess.run([kustomize, "build", str(overlay)], capture_output=True, text=True)
        if rendered.returncode != 0:
            problems.append(f"{overlay.name}: kustomize build failed: {rendered.stderr.strip()}")
            continue
        objects = [document for document in yaml.safe_load_all(rendered.stdout) if document]
        for document in objects:
            name = f"{overlay.name}: {document.get('kind')}/{document.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{name}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                problems.append(f"{name}: no schema: {error}")
        kinds = {document["kind"] for document in objects}
        for kind in ["Namespace", "Deployment", "StatefulSet", "Service", "Ingress", "ConfigMap"]:
            if kind not in kinds:
                problems.append(f"{overlay.name}: renders no {kind}")
        for document in objects:
            if document["kind"] == "ConfigMap" and document["metadata"]["name"] == "nats-config":
                data = document["data"]
                for required in ["authorization.conf", "tls.conf"]:
                    if required not in data:
                        problems.append(f"{overlay.name}: the NATS config in the manifests has no {required}")
                for key, text in data.items():
                    source = root / "nats" / key
                    if source.exists() and text.strip() != source.read_text(encoding="utf-8").strip():
                        problems.append(f"{overlay.name}: {key} in the manifests differs from {source.relative_to(root)}")
        if "NetworkPolicy" not in kinds:
            problems.append(f"{overlay.name}: renders no NetworkPolicy in front of NATS")
        print(f"{overlay.name}: {len(objects)} objects rendered and valid")


def check_compose(root: Path, schema_path: str, problems: list[str]) -> None:
    compose_text = (root / "docker-compose.yml").read_text(encoding="utf-8")
    compose = yaml.safe_load(compose_text)
    with open(schema_path, encoding="utf-8") as schema_file:
        schema = json.load(schema_file)
    for error in jsonschema.Draft7Validator(schema).iter_errors(compose):
        problems.append(f"docker-compose.yml at {list(error.path)}: {error.message}")
    required = set(re.findall(r"\$\{(\w+)", compose_text))
    example = (root / "deploy/pgmon.env.example").read_text(encoding="utf-8")
    offered = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    for variable in sorted(required - offered):
        problems.append(f"docker-compose.yml needs {variable}, which deploy/pgmon.env.example does not set")
    for service, definition in compose["services"].items():
        for volume in definition.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not (root / source).exists():
                problems.append(f"docker-compose.yml service {service} mounts missing {source}")
    print(f"docker-compose.yml: {len(compose['services'])} services valid")


def main() -> int:
    root, kustomize, compose_schema = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    problems: list[str] = []
    check_overlays(root, kustomize, problems)
    check_compose(root, compose_schema, problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
