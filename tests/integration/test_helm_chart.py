"""The hpcai Helm chart: `helm lint`, `helm template` with several values files, and every rendered
object validated against the official Kubernetes schemas (kubernetes-validate, offline).

Needs a helm binary (scripts/install-helm puts one in .venv/bin); skips only when it cannot be installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import need_service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/hpcai"
#: The Kubernetes versions the rendered chart must satisfy (the chart's kubeVersion floor, and a current one).
K8S_VERSIONS = ("1.30.0", "1.33.0")
VALUES = {
    "default": [],
    "gpu": [CHART / "ci/gpu-values.yaml"],
    "external-db": [CHART / "ci/external-db-values.yaml"],
}


@pytest.fixture(scope="module")
def helm() -> str:
    local = Path(sys.executable).parent / "helm"
    if not local.exists() and shutil.which("helm") is None:
        subprocess.run(["bash", str(ROOT / "scripts/install-helm")], capture_output=True, timeout=300)
    found = str(local) if local.exists() else shutil.which("helm")
    need_service(found is not None, "helm (scripts/install-helm could not install it; no npm registry?)")
    return found


def _helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _render(helm: str, files: list[Path], *extra: str) -> list[dict[str, Any]]:
    args = ["template", "hpcai", str(CHART), "--namespace", "airflow", *extra]
    for path in files:
        args += ["-f", str(path)]
    out = _helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("values", list(VALUES), ids=list(VALUES))
def test_lint(helm: str, values: str) -> None:
    args = ["lint", str(CHART), "--strict"]
    for path in VALUES[values]:
        args += ["-f", str(path)]
    out = _helm(helm, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", list(VALUES), ids=list(VALUES))
def test_rendered_objects_are_valid_kubernetes(helm: str, values: str) -> None:
    import kubernetes_validate

    docs = _render(helm, VALUES[values])
    assert docs
    for doc in docs:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_default_install_has_every_service(helm: str) -> None:
    kinds = _by_kind(_render(helm, []))
    assert {pvc["metadata"]["name"] for pvc in kinds["PersistentVolumeClaim"]} == {
        "hpcai-mlflow",
        "hpcai-templates",
    }
    (deploy,) = kinds["Deployment"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in container["args"]
    assert kinds["Service"][0]["spec"]["ports"][0]["port"] == 5000
    (role,) = kinds["Role"]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for key in (("batch", "jobs"), ("", "pods"), ("kubeflow.org", "mpijobs")):
        assert {"create", "get", "list", "watch", "delete"} <= granted[key], key
    assert "get" in granted[("", "pods/log")]
    (binding,) = kinds["RoleBinding"]
    assert binding["subjects"][0]["name"] == kinds["ServiceAccount"][0]["metadata"]["name"] == "hpcai-airflow"
    (priority,) = kinds["PriorityClass"]
    config = kinds["ConfigMap"][0]["data"]
    assert (
        config["AIRFLOW__HPCAI__KUBERNETES_GPU_PRIORITY_CLASS"] == priority["metadata"]["name"] == "hpcai-gpu"
    )
    assert config["AIRFLOW__HPCAI__MLFLOW_TRACKING_URI"] == "http://hpcai-mlflow.airflow.svc:5000"
    assert "[hpcai]" in config["hpcai.cfg"] and "advisor_mode = advise" in config["hpcai.cfg"]


def test_gpu_values(helm: str) -> None:
    kinds = _by_kind(_render(helm, VALUES["gpu"]))
    assert kinds["PriorityClass"][0]["value"] == 1000000
    config = kinds["ConfigMap"][0]["data"]
    assert config["AIRFLOW__HPCAI__KUBERNETES_GPU_PRIORITY_CLASS"] == "hpcai-gpu-high"
    assert config["AIRFLOW__HPCAI__KUBERNETES_IMAGE"] == "registry.example/airflow-hpcai:0.1.0"
    assert config["AIRFLOW__HPCAI__ADVISOR_MODE"] == "enforce"
    assert kinds["Role"][0]["metadata"]["namespace"] == "hpc-jobs"  # rights where the jobs run
    assert {"kind": "ServiceAccount", "name": "airflow-worker", "namespace": "airflow"} in kinds[
        "RoleBinding"
    ][0]["subjects"]


def test_external_database_reads_the_uri_from_a_secret(helm: str) -> None:
    kinds = _by_kind(_render(helm, VALUES["external-db"]))
    container = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-db", "key": "uri"}
    assert [p["metadata"]["name"] for p in kinds["PersistentVolumeClaim"]] == ["hpcai-templates"]
    assert "PriorityClass" not in kinds
    assert all(group != "kubeflow.org" for rule in kinds["Role"][0]["rules"] for group in rule["apiGroups"])


def test_external_database_without_a_secret_fails_with_what_to_set(helm: str) -> None:
    out = _helm(helm, "template", "hpcai", str(CHART), "--set", "mlflow.database.external=true")
    assert out.returncode != 0 and "mlflow.database.uriSecret.name" in out.stderr


def test_airflow_values_use_the_chart_objects(helm: str) -> None:
    values = yaml.safe_load((ROOT / "charts/airflow-values.yaml").read_text())
    kinds = _by_kind(_render(helm, []))
    assert values["workers"]["serviceAccount"]["name"] == kinds["ServiceAccount"][0]["metadata"]["name"]
    assert values["triggerer"]["serviceAccount"]["name"] == kinds["ServiceAccount"][0]["metadata"]["name"]
    assert kinds["ConfigMap"][0]["metadata"]["name"] in values["extraEnvFrom"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in values["workers"]["extraVolumes"]}
    assert claims <= {p["metadata"]["name"] for p in kinds["PersistentVolumeClaim"]}
    assert "pod_mutation_hook" in values["airflowLocalSettings"]
    containerfile = (ROOT / "Containerfile").read_text()
    assert "FROM apache/airflow:${AIRFLOW_VERSION}-python3.11" in containerfile
    assert "ARG AIRFLOW_VERSION=3.3." in containerfile
