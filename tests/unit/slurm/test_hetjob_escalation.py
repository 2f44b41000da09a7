"""A hetjob's retry after an out-of-memory kill or a timeout grows the groups that ran out, not only group 0."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.hetjob import groups_that_failed
from tests.unit.slurm.test_slurm_operator import DictStore, FakeTI, context, defer, make_op, wire_fake_cluster

MIB = 1024**2
SOLVER = Resources(ntasks=2, memory="1G", time_limit="00:30:00")
POST = Resources(ntasks=1, memory="256M", time_limit="00:30:00")


def _component(group: int, state: str, *, peak: int | None = None, request: int = 256 * MIB) -> dict:
    return {"het_group": group, "job_id": str(100 + group), "state": state, "max_rss_bytes": peak,
            "requested_memory_bytes": request}


def _store_after(failure: str, result: dict) -> DictStore:
    """The task's state as the failed first try left it (its result and failure class)."""
    store = DictStore()
    store.set("hpcai_job", {"failure": failure, "result": result, "escalations": 0})
    return store


def test_the_group_killed_for_memory_is_the_one_that_grows(monkeypatch, sleeps) -> None:
    cluster = wire_fake_cluster(monkeypatch)
    # Slurm ends every group FAILED (as 22.05.8 recorded it); group 1's peak is over its own 256M.
    result = {"state": "OUT_OF_MEMORY", "het_components": [_component(0, "FAILED", peak=80 * MIB, request=1024 * MIB),
                                                           _component(1, "FAILED", peak=300 * MIB)]}
    store = _store_after("oom", result)
    trigger = defer(make_op(job_resources=SOLVER, components=[POST]), context(store, FakeTI(try_number=2)))
    spec = cluster.job(trigger.job_id).spec
    assert spec.resources.memory_bytes == SOLVER.memory_bytes  # group 0 did not run out: unchanged
    assert spec.components[0].memory_bytes == 2 * 300 * MIB  # twice the killed group's peak
    assert "--mem=600M" in cluster.job(trigger.job_id).script.split("#SBATCH hetjob", 1)[1]


def test_a_timeout_of_one_group_grows_that_groups_limit(monkeypatch, sleeps) -> None:
    cluster = wire_fake_cluster(monkeypatch)
    result = {"state": "TIMEOUT", "het_components": [_component(0, "CANCELLED"), _component(1, "TIMEOUT")]}
    trigger = defer(make_op(job_resources=SOLVER, components=[POST]),
                    context(_store_after("timeout", result), FakeTI(try_number=2)))
    spec = cluster.job(trigger.job_id).spec
    assert spec.resources.time_limit_seconds == 1800
    assert spec.components[0].time_limit_seconds == 2700


def test_the_retry_keeps_the_first_tries_digest(monkeypatch, sleeps) -> None:
    """Escalation changes what is submitted, not which work it is: a third try still adopts the second's job."""
    wire_fake_cluster(monkeypatch)
    first = make_op(job_resources=SOLVER, components=[POST])
    defer(first, context(DictStore()))
    retry = make_op(job_resources=SOLVER, components=[POST])
    defer(retry, context(_store_after("oom", {"het_components": [_component(1, "OUT_OF_MEMORY")]}),
                         FakeTI(try_number=2)))
    assert retry._digest == first._digest


@pytest.mark.parametrize(("failure", "result", "groups", "expected"), [
    ("oom", {"het_components": [_component(0, "OUT_OF_MEMORY"), _component(1, "COMPLETED")]}, 2, [0]),
    ("oom", {"het_components": [_component(0, "FAILED"), _component(1, "FAILED")]}, 2, [0, 1]),  # unknown: all
    ("oom", {"het_components": [_component(0, "FAILED", peak=10 * MIB), _component(1, "FAILED", peak=240 * MIB)]},
     2, [1]),  # 240 of 256 MiB: the group at its limit
    ("oom", {}, 3, [0, 1, 2]),
    ("timeout", {"het_components": [_component(2, "TIMEOUT"), _component(1, "CANCELLED")]}, 3, [2]),
    ("timeout", {"het_components": [_component(7, "TIMEOUT")]}, 2, [0, 1]),  # a group the job does not have
    ("oom", None, 1, [0]),
])
def test_groups_that_failed(failure, result, groups, expected) -> None:
    assert groups_that_failed(result, failure, groups) == expected
