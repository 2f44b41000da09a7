"""Helpers of the Kubernetes tests: schema validation and a task-log stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
#: The Kubernetes versions whose official schemas every manifest must satisfy (kubernetes-validate
#: 1.37 ships 1.25-1.37): the oldest release we claim, and a current one.
K8S_VERSIONS = ("1.30.0", "1.33.0")
MPIJOB_SCHEMA = ROOT / "tests/fixtures/kubernetes/mpijob-v2beta1-schema.yaml"


class ListLog:
    """A logger stand-in that keeps the lines (what a user would see in the task log)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args if args else msg)

    info = warning = error = debug = exception = _add

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def validate_k8s(manifest: dict[str, Any]) -> None:
    """Fail unless ``manifest`` satisfies the official schema of every version in :data:`K8S_VERSIONS`."""
    import kubernetes_validate

    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def validate_mpijob(manifest: dict[str, Any]) -> None:
    """Validate an MPIJob against the CRD schema, and each replica's pod template as a v1 Pod."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(MPIJOB_SCHEMA.read_text())
    jsonschema.validate(manifest, schema)
    for role, replica in manifest["spec"]["mpiReplicaSpecs"].items():
        template = replica["template"]
        validate_k8s(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{manifest['metadata']['name']}-{role.lower()}",
                    **template.get("metadata", {}),
                },
                "spec": template["spec"],
            }
        )
