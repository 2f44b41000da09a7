"""The cluster monitor and connection allow-list behind ``/api/cluster`` (issue 20, finding 3)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import HTTPException

from airflow_provider_hpcai.plugins.cluster_access import ConnectionAllowList
from airflow_provider_hpcai.plugins.monitor import ClusterMonitor, ServiceUnavailable, redact

STATUS = {"transport": "fake", "nodes": [], "partitions": [], "jobs": []}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_list_only_slurm_connections_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_hpcai.plugins import cluster_access

    monkeypatch.setattr(cluster_access, "configured_conn_ids", list)  # [hpcai] cluster_status_conn_ids unset
    types = {"slurm_a": "slurm", "metadata_db": "postgres"}
    looked_up: list[str] = []

    def is_slurm(conn_id: str) -> bool:
        looked_up.append(conn_id)
        return types.get(conn_id) == "slurm"

    access = ConnectionAllowList(None, is_slurm_connection=is_slurm)
    assert access.resolve(None) == "slurm_default"
    assert access.resolve("slurm_default") == "slurm_default"
    assert access.resolve("slurm_a") == "slurm_a"
    for refused in ("metadata_db", "does_not_exist"):
        with pytest.raises(HTTPException) as caught:
            access.resolve(refused)
        assert caught.value.status_code == 403
        assert "connections of type 'slurm'" in str(caught.value.detail)
    access.resolve("slurm_a")
    assert looked_up == ["slurm_a", "metadata_db", "does_not_exist"], "decisions are remembered"


def test_a_configured_list_is_exact_and_its_first_entry_is_the_default() -> None:
    access = ConnectionAllowList(["slurm_gpu", "slurm_cpu"], is_slurm_connection=lambda c: True)
    assert access.resolve(None) == "slurm_gpu"
    assert access.resolve("slurm_cpu") == "slurm_cpu"
    with pytest.raises(HTTPException, match="slurm_gpu, slurm_cpu"):
        access.resolve("slurm_default")


def test_one_fetch_at_a_time_per_connection_and_answers_are_shared() -> None:
    release = threading.Event()
    calls: list[str | None] = []

    def slow(conn_id: str | None) -> dict[str, Any]:
        calls.append(conn_id)
        release.wait(10)
        return STATUS

    monitor = ClusterMonitor(slow, wait_s=0.2)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: _outcome(monitor, "a"), range(20)))
    assert results == ["503"] * 20 and calls == ["a"], "twenty waiting requests asked the cluster once"
    release.set()
    deadline = time.monotonic() + 5
    while monitor._connections["a"].pending is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor.status("a")["transport"] == "fake" and calls == ["a"]
    monitor.close()


def _outcome(monitor: ClusterMonitor, conn_id: str) -> str:
    try:
        monitor.status(conn_id)
    except ServiceUnavailable:
        return "503"
    return "200"


def test_a_slow_answer_after_a_good_one_serves_the_last_answer_marked_stale() -> None:
    clock = Clock()
    hang = threading.Event()
    calls = []

    def source(conn_id: str | None) -> dict[str, Any]:
        calls.append(conn_id)
        if len(calls) > 1:
            hang.wait(10)
        return STATUS

    monitor = ClusterMonitor(source, ttl=10, wait_s=0.1, clock=clock)
    assert "stale" not in monitor.status("a")
    clock.now += 11
    answer = monitor.status("a")
    assert answer["stale"] is True and answer["cache_age_s"] == 11
    hang.set()
    monitor.close()


def test_failures_are_remembered_and_retried_after_failure_ttl() -> None:
    clock = Clock()
    calls = []

    def down(conn_id: str | None) -> dict[str, Any]:
        calls.append(conn_id)
        raise ServiceUnavailable("connection refused by 10.0.0.5")

    monitor = ClusterMonitor(down, failure_ttl=30, clock=clock)
    for _ in range(5):
        with pytest.raises(ServiceUnavailable, match="did not answer") as caught:
            monitor.status("a")
        assert "10.0.0.5" not in str(caught.value)
    assert len(calls) == 1
    clock.now += 31
    with pytest.raises(ServiceUnavailable):
        monitor.status("a")
    assert len(calls) == 2
    monitor.close()


@pytest.mark.parametrize("leak", [
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    "EYJHBGCIOIJIUZI1NIISINR5CCI6IKPXVCJ9.EYJZDWIIOIJHBGLJZSJ9",
    "eyJhbGciOiJIUzI1Ni",
    "token=s3cr3t-value",
    'X-SLURM-USER-TOKEN: "abc.def"',
])
def test_redact_hides_tokens_however_they_are_echoed(leak: str) -> None:
    text = redact(f"401 Unauthorized: server said {leak} (request rejected)")
    assert "s3cr3t" not in text and "EYJHBGCI" not in text.upper().replace("[REDACTED]", "")
    assert "[redacted]" in text and text.startswith("401 Unauthorized")
