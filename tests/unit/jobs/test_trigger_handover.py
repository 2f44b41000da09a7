"""A trigger that moves to another triggerer must not cancel its job; a user's kill still does.

Airflow 3.3's triggerer calls ``on_kill`` for every trigger it stops running, also when the trigger
only moved to a second triggerer (found by the soak bench with two triggerers: jobs cancelled by
their own provider while their tasks still waited).
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook, SlurmHook
from airflow_provider_hpcai.spec import JobSpec, make_tag
from airflow_provider_hpcai.triggers.job import JobTrigger
from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger
from tests.fakes.slurm import FakeSlurmTransport


class Comms:
    """The triggerer's channel to its supervisor: answers GetTaskStates from a table."""

    def __init__(self, states: dict[str, dict[str, str]] | Exception) -> None:
        self.states = states
        self.asked: list[Any] = []

    async def asend(self, msg: Any) -> Any:
        self.asked.append(msg)
        if isinstance(self.states, Exception):
            raise self.states
        return types.SimpleNamespace(task_states=self.states)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeSlurmTransport:
    fake = FakeSlurmTransport()
    hook = SlurmHook(transport=fake)
    monkeypatch.setattr(SlurmJobTrigger, "_hook", lambda self: AsyncSlurmHook(hook=hook))
    monkeypatch.setattr(JobTrigger, "_backend", lambda self: SlurmBackend(self.conn_id, hook=hook))
    return fake


def _running_trigger(cluster: FakeSlurmTransport, map_index: int = -1) -> SlurmJobTrigger:
    job_id = cluster.submit(JobSpec(name="d.t", script="sleep 60\n", tag=make_tag("d", "t", "r1", map_index)), "/w")
    cluster.advance()
    trigger = SlurmJobTrigger(job_id=job_id)
    trigger.task_instance = types.SimpleNamespace(dag_id="d", task_id="t", run_id="r1", map_index=map_index)
    return trigger


def _kill(trigger: SlurmJobTrigger, comms: Comms, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    asyncio.run(trigger.on_kill())


@pytest.mark.parametrize("map_index", [-1, 3])
def test_a_trigger_that_moved_to_another_triggerer_leaves_the_job_running(cluster, monkeypatch, map_index):
    trigger = _running_trigger(cluster, map_index)
    key = "t" if map_index < 0 else f"t_{map_index}"
    comms = Comms({"r1": {key: "deferred"}})
    _kill(trigger, comms, monkeypatch)
    assert cluster.cancelled == [] and cluster.only_job().base_state == "RUNNING"
    asked = comms.asked[0]
    assert (asked.dag_id, asked.task_ids, asked.run_ids) == ("d", ["t"], ["r1"])
    assert asked.map_index == (None if map_index < 0 else map_index)


@pytest.mark.parametrize("state", ["failed", "success", None, "up_for_retry"])
def test_a_task_the_user_acted_on_gets_its_job_cancelled(cluster, monkeypatch, state):
    trigger = _running_trigger(cluster)
    _kill(trigger, Comms({"r1": {"t": state}} if state else {"r1": {}}), monkeypatch)
    assert cluster.cancelled == [trigger.job_id] and cluster.only_job().base_state == "CANCELLED"


def test_when_the_state_cannot_be_read_the_job_is_cancelled_as_asked(cluster, monkeypatch):
    trigger = _running_trigger(cluster)
    _kill(trigger, Comms(ConnectionError("supervisor gone")), monkeypatch)
    assert cluster.cancelled == [trigger.job_id]
