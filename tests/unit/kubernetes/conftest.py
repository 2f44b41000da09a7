"""Fixtures of the Kubernetes tests: a fake API server at the cncf hooks' client seam."""

from __future__ import annotations

import pytest

from tests.unit.kubernetes.fake_k8s import FakeCluster, install
from tests.unit.kubernetes.helpers import ListLog


@pytest.fixture()
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    install(monkeypatch, fake, namespace="hpc")
    monkeypatch.setenv("AIRFLOW__HPCAI__KUBERNETES_IMAGE", "registry.example/hpcai:1.0")
    return fake


@pytest.fixture()
def task_log() -> ListLog:
    return ListLog()
