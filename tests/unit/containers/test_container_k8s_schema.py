"""A pod built around kubernetes_container() satisfies the official schemas of Kubernetes 1.30 and 1.33."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hpcai.containers import Container, kubernetes_container

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_VERSIONS = ("1.30.0", "1.33.0")  # as tests/unit/kubernetes/helpers.py


def _pod(container: Container, **kwargs: Any) -> dict[str, Any]:
    built = kubernetes_container(container, **kwargs)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stage-1", "labels": {"app.kubernetes.io/managed-by": "airflow-provider-hpcai"}},
        "spec": {"restartPolicy": "Never", "containers": [built["container"]], "volumes": built["volumes"]},
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_pod_with_a_container_validates(version: str) -> None:
    c = Container(
        image="registry.example.org:5000/team/stage:1.2@sha256:" + "a" * 64,
        mounts=["/shared/runs/42:/out:rw", "/reference:/ref", "/shared/inputs:/in"],
        workdir="/out",
        env={"OMP_NUM_THREADS": "1", "NOTE": "any text: $(x) `y` 'z'"},
        gpus=True,
    )
    pod = _pod(c, command=["python", "-m", "simulation_kernels.seismic"], claims={"/shared": "shared-data"})
    kubernetes_validate.validate(pod, version, strict=True)
    # Both mounts under /shared share one claim volume, each with its own subPath.
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["hpcai-mount-0", "hpcai-mount-1"]
    assert [m.get("subPath") for m in pod["spec"]["containers"][0]["volumeMounts"]] == ["runs/42", None, "inputs"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_minimal_pod_validates_and_a_broken_one_does_not(version: str) -> None:
    pod = _pod(Container(image="python:3.11"))
    kubernetes_validate.validate(pod, version, strict=True)
    pod["spec"]["containers"][0]["volumeMounts"] = [{"mountPath": "/x"}]  # no name: the schema must object
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, version, strict=True)
