"""Reattach that cannot pick the wrong job: a try adopts or reuses a job only when it runs the same input.

The hazard: a mapped task keeps its map index (and so its tag) when its upstream list changes;
cleared, index 2 would adopt the running job, or return the stored result, of the item that
held index 2 before. The submission digest (script, environment, resources, image, array)
stored with the job tells them apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai.backends.local import LocalBackend
from airflow_provider_hpcai.jobs.digest import submission_digest
from airflow_provider_hpcai.operators.base import BaseJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.unit.slurm.test_slurm_operator import DictStore, FakeTI, cluster, context, defer, fire  # noqa: F401
from tests.unit.slurm.test_slurm_operator import make_op as make_slurm_op

RUN = "manual__2027-01-01"


def _mapped_slurm(item: str, **kwargs: Any) -> Any:
    return make_slurm_op(script=f"python process.py --item {item}\n", **kwargs)


def test_a_cleared_mapped_task_whose_input_changed_runs_its_own_job(cluster):  # noqa: F811
    store, ti = DictStore(), FakeTI(map_index=2)
    first = _mapped_slurm("c")
    done = first.execute_complete(context(store, ti), fire(defer(first, context(store, ti))))
    assert cluster.submissions == 1

    # The upstream list changed: index 2 is now item "d". The task is cleared and runs again
    # with its state store kept (today's clear) and the same tag.
    messages: list[str] = []
    again = _mapped_slurm("d")
    again.log.warning = lambda msg, *args: messages.append(msg % args)  # type: ignore[method-assign]
    trigger = defer(again, context(store, FakeTI(map_index=2, try_number=2)))
    assert cluster.submissions == 2 and trigger.job_id != done["job_id"]
    assert "--item d" in cluster.job(trigger.job_id).script
    assert any("submitted for other input" in m and done["job_id"] in m for m in messages), messages


def test_the_same_input_after_a_clear_reuses_the_result_unless_told_not_to(cluster):  # noqa: F811
    store, ti = DictStore(), FakeTI(map_index=2)
    first = _mapped_slurm("c")
    done = first.execute_complete(context(store, ti), fire(defer(first, context(store, ti))))
    assert _mapped_slurm("c").execute(context(store, FakeTI(map_index=2, try_number=2))) == done
    assert cluster.submissions == 1

    fresh = _mapped_slurm("c", reuse_after_clear=False)
    trigger = defer(fresh, context(store, FakeTI(map_index=2, try_number=3)))
    assert cluster.submissions == 2 and trigger.job_id != done["job_id"]


def test_escalated_resources_keep_the_digest_so_a_retry_still_adopts_its_job():
    """The digest is of the request before escalation: a retry with more memory is the same work."""
    spec = JobSpec(name="n", script="run\n", resources=Resources(memory="1G"))
    assert submission_digest(spec) == submission_digest(spec.replace(exclude_nodes="node1", name="other"))
    assert submission_digest(spec) != submission_digest(spec.replace(resources=Resources(memory="2G")))
    assert submission_digest(spec) != submission_digest(spec.replace(environment={"ITEM": "d"}))


def _advised(op: Any, applied: Resources, requested: Resources) -> Any:
    """What the advisor's task policy leaves on a task (``enforce``: applied resources + the decision)."""
    op.job_resources = applied
    op.hpcai_decision = {"requested": requested.to_dict(), "applied": applied.to_dict(), "predicted": {},
                         "mode": "enforce", "reason": "test", "model_version": None}
    return op


def test_a_retry_whose_advice_changed_still_adopts_the_job_of_the_try_before(cluster):  # noqa: F811
    """The guard's live state moves between tries: the worker that died had submitted the cut limit,
    the retry's parse keeps the request. Same work, so the retry adopts the job, never submits twice."""
    request = Resources(memory="1G", time_limit="02:00:00")
    store = DictStore()
    first = _advised(_mapped_slurm("c"), Resources(memory="1G", time_limit="00:40:00"), request)
    job_id = defer(first, context(store, FakeTI(map_index=2))).job_id  # the worker dies while deferred
    assert cluster.submissions == 1

    retry = _advised(_mapped_slurm("c"), request, request)
    trigger = defer(retry, context(store, FakeTI(map_index=2, try_number=2)))
    assert trigger.job_id == job_id and cluster.submissions == 1

    other = _advised(_mapped_slurm("c"), request, Resources(memory="2G", time_limit="02:00:00"))
    assert defer(other, context(store, FakeTI(map_index=2, try_number=3))).job_id != job_id  # another request
    assert cluster.submissions == 2


class _ScriptOp(BaseJobOperator):
    def __init__(self, *, script: str, **kwargs: Any) -> None:
        super().__init__(backend="local", **kwargs)
        self.script = script

    def build_script(self, context: Any) -> str:
        return self.script


def test_a_live_job_found_by_tag_is_adopted_only_for_the_same_input(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any state store (a clear that discards it): the live job's own record decides."""
    backend = LocalBackend(base_dir=str(tmp_path), sample_interval=0.05, kill_grace_seconds=1)
    monkeypatch.setattr("airflow_provider_hpcai.operators.base.get_backend", lambda name, conn_id=None, **o: backend)

    def op(script: str) -> _ScriptOp:
        with DAG("mapped_dag", schedule=None):
            return _ScriptOp(task_id="item", script=script, deferrable=False, poll_interval=0.05,
                             job_resources=Resources(time_limit=30))

    tag = make_tag("mapped_dag", "item", RUN, 2)
    old_script = "sleep 1; echo item-c\n"
    spec = JobSpec(name="old", script=old_script, tag=tag, resources=Resources(time_limit=30))
    spec = spec.replace(digest=submission_digest(spec))

    live = backend.submit(spec)  # a worker submitted item c's job, then died
    same = op(old_script).execute(context(None, FakeTI(map_index=2, try_number=2)))
    assert same["job_id"] == live.job_id and "item-c" in Path(same["stdout_path"]).read_text()

    live = backend.submit(spec)  # again; but now index 2 is item d
    other = op("echo item-d\n").execute(context(None, FakeTI(map_index=2, try_number=3)))
    assert other["job_id"] != live.job_id and other["state"] == "COMPLETED"
    assert "item-d" in Path(other["stdout_path"]).read_text()
    backend.cancel(live)
