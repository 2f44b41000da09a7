"""Fixtures for the plugin's API tests: real Airflow auth (SimpleAuthManager JWTs), a real
template repository in a temporary folder, and stateful fakes for the cluster and advisor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "hpcai-plugin-tests-" + "s" * 64)


#: The fake job history: one finished job of the viewer's, one of another user's.
USAGE_ROWS = [
    {"job_id": "9", "requested_seconds": 600, "elapsed_seconds": 120, "user": "viewer-user"},
    {"job_id": "10", "requested_seconds": 60, "elapsed_seconds": 30, "user": "someone-else"},
]


class FakeCluster:
    """A cluster whose status changes between calls; counts how often it is asked."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def __call__(self, conn_id: str | None) -> dict[str, Any]:
        from airflow_provider_hpcai.plugins.monitor import ServiceUnavailable

        self.calls += 1
        if self.down:
            raise ServiceUnavailable("slurmctld is not responding")
        return {
            "transport": "fake",
            "nodes": [
                {"name": "n1", "partition": "debug", "state": "mixed", "cpus_allocated": self.calls, "cpus_total": 8},
                {"name": "n1", "partition": "long", "state": "mixed", "cpus_allocated": self.calls, "cpus_total": 8},
                {"name": "n2", "partition": "debug", "state": "idle", "cpus_allocated": 0, "cpus_total": 8},
            ],
            "partitions": [{"name": "debug", "state": "UP"}],
            "jobs": [{"job_id": "1", "state": "RUNNING"}, {"job_id": "2", "state": "PENDING"}],
        }


class FakeAdvisor:
    """Predicts twice the template's memory; remembers the keys it was asked about."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []

    def __call__(self, key, requested):
        self.keys.append(dict(key))
        memory = (requested.get("memory") or 2**30) * 2
        return {"resources": {**requested, "memory": memory}, "explanation": "fake: twice the default"}


@pytest.fixture()
def auth(monkeypatch):
    """Tokens for each SimpleAuthManager role; revocation goes through a stateful fake."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken

    revoked: set[str] = set()
    monkeypatch.setattr(RevokedToken, "is_revoked", classmethod(lambda cls, jti, session=None: jti in revoked))
    manager = create_auth_manager()
    tokens = {
        role: manager.generate_jwt(SimpleAuthManagerUser(username=f"{role}-user", role=role))
        for role in ("viewer", "user", "op", "admin")
    }
    return {"tokens": tokens, "revoked": revoked}


@pytest.fixture()
def repo(tmp_path):
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    repository = TemplateRepository(tmp_path / "repo", TemplateSettings(root=tmp_path / "repo"))
    repository.publish(ROOT / "airflow_provider_hpcai/templates/builtin" / "hello-local", publisher="seed")
    return repository


@pytest.fixture()
def fakes():
    return {"cluster": FakeCluster(), "advisor": FakeAdvisor()}


@pytest.fixture()
def client(auth, repo, fakes):
    """A TestClient on the plugin app mounted under /hpcai, as Airflow's API server mounts it."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_hpcai.plugins.app import create_app

    parent = FastAPI()
    parent.mount(
        "/hpcai",
        create_app(
            repository=lambda: repo,
            cluster_status=fakes["cluster"],
            advisor=fakes["advisor"],
            usage_history=lambda limit: USAGE_ROWS[-limit:],
        ),
    )
    client = TestClient(parent)
    client.parent = parent
    client.tokens = auth["tokens"]

    def as_role(role):
        return {"Authorization": f"Bearer {auth['tokens'][role]}"}

    client.as_role = as_role
    return client
