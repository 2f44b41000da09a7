"""The shared status poller and the deferrable trigger, driven by the fake cluster."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.exceptions import ControllerUnavailableError
from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook, SlurmHook
from airflow_provider_hpcai.slurm.states import JobStatus, Phase
from airflow_provider_hpcai.spec import JobSpec
from airflow_provider_hpcai.triggers import poller as poller_module
from airflow_provider_hpcai.triggers.job import JobTrigger
from airflow_provider_hpcai.triggers.poller import MISSING_POLLS_LIMIT, StatusPoller, get_poller
from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger
from tests.fakes.slurm import FakeSlurmTransport

FAST = {"interval": 0.001, "max_interval": 0.01}


def _submit(cluster: FakeSlurmTransport, n: int = 1, **spec: Any) -> list[str]:
    fields = {"name": "job", "script": "echo hi"}
    fields.update(spec)
    return [cluster.submit(JobSpec(**fields), "/w") for _ in range(n)]


def _fetch(cluster: FakeSlurmTransport) -> Callable[[list[str]], Any]:
    """The trigger's fetch: the async hook over the fake (statuses, then accounting for the missing)."""
    return AsyncSlurmHook(hook=SlurmHook(transport=cluster)).get_statuses


def test_two_hundred_waiters_cost_one_query_per_interval():
    cluster = FakeSlurmTransport(auto_advance=True)  # each query moves every job one step
    job_ids = _submit(cluster, 200)
    asked: list[int] = []
    fetch = _fetch(cluster)

    async def counting(ids: list[str]) -> dict[str, JobStatus]:
        asked.append(len(ids))
        return await fetch(ids)

    async def main() -> list[JobStatus]:
        poller = StatusPoller("slurm_default", counting, **FAST)
        return await asyncio.gather(*(poller.wait(j) for j in job_ids))

    results = asyncio.run(main())
    assert [r.state for r in results] == ["COMPLETED"] * 200
    assert cluster.status_queries == 2 == len(asked)  # PENDING->RUNNING, RUNNING->COMPLETED: two polls in all
    assert asked == [200, 200]


def test_backoff_grows_while_nothing_changes_and_resets_on_change():
    cluster = FakeSlurmTransport()
    first, second = _submit(cluster, 2)
    cluster.advance()  # both RUNNING
    seen: list[float] = []
    box: dict[str, StatusPoller] = {}

    async def fetch(ids: list[str]) -> dict[str, JobStatus]:
        seen.append(box["poller"].current_interval)
        if len(seen) == 8:
            cluster.finish(first, "completed")
        if len(seen) == 14:
            cluster.finish(second, "completed")
        return cluster.statuses(ids)

    async def main() -> None:
        box["poller"] = StatusPoller("c", fetch, interval=0.001, max_interval=0.004)
        await asyncio.gather(box["poller"].wait(first), box["poller"].wait(second))

    asyncio.run(main())
    # seen[i] is the interval slept before query i+1 (seen[0]: before anything ran)
    growing = seen[2:8]
    assert all(b > a or b == 0.004 for a, b in itertools.pairwise(growing))
    assert max(seen) == pytest.approx(0.004) and seen[7] == pytest.approx(0.004)
    assert seen[8] == pytest.approx(0.001)  # job 1 finished at query 8: back to the base interval
    assert seen[9] > seen[8]
    assert len(seen) == 14


def test_transient_outage_is_ridden_out():
    cluster = FakeSlurmTransport(auto_advance=True)
    job_ids = _submit(cluster, 3)
    cluster.fail_next(4, ops=["statuses"])

    async def main() -> list[JobStatus]:
        poller = StatusPoller("c", _fetch(cluster), outage_budget=600, **FAST)
        return await asyncio.gather(*(poller.wait(j) for j in job_ids))

    results = asyncio.run(main())
    assert {r.state for r in results} == {"COMPLETED"}
    assert cluster.status_queries == 4 + 2


def test_outage_past_the_budget_fails_every_waiter_clearly():
    cluster = FakeSlurmTransport()
    job_ids = _submit(cluster, 5)
    cluster.fail_next(1000, ops=["statuses"])
    now = [0.0]

    def clock() -> float:
        now[0] += 100.0  # every failed query "takes" 100 s
        return now[0]

    async def main() -> list[Any]:
        poller = StatusPoller("slurm_prod", _fetch(cluster), outage_budget=250, clock=clock, **FAST)
        return await asyncio.gather(*(poller.wait(j) for j in job_ids), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, ControllerUnavailableError) for r in results)
    message = str(results[0])
    assert "'slurm_prod'" in message and "budget 250 s" in message and "clear the task" in message
    assert "Unable to contact slurm controller" in message
    assert cluster.status_queries <= 5  # failed queries until the budget, not a storm


def test_a_non_retryable_error_fails_waiters_at_once():
    cluster = FakeSlurmTransport()
    (job_id,) = _submit(cluster)
    cluster.fail_next(1, retryable=False, stderr="squeue: error: Access/permission denied")

    async def main() -> Any:
        poller = StatusPoller("c", _fetch(cluster), **FAST)
        return await asyncio.gather(poller.wait(job_id), return_exceptions=True)

    (result,) = asyncio.run(main())
    assert isinstance(result, ControllerUnavailableError) and "permission denied" in str(result)


def test_a_vanished_job_resolves_unknown_after_the_limit():
    cluster = FakeSlurmTransport()
    (job_id,) = _submit(cluster)
    cluster.vanish(job_id)  # neither squeue nor sacct know it

    async def main() -> JobStatus:
        return await StatusPoller("c", _fetch(cluster), **FAST).wait(job_id)

    status = asyncio.run(main())
    assert status.state == "UNKNOWN" and status.phase is Phase.UNKNOWN and "not known" in status.reason
    assert cluster.status_queries == MISSING_POLLS_LIMIT


def test_a_job_purged_from_the_controller_is_found_in_accounting():
    cluster = FakeSlurmTransport()
    (job_id,) = _submit(cluster)
    cluster.finish(job_id, "timeout")
    cluster.vanish(job_id, from_accounting=False)

    async def main() -> JobStatus:
        return await StatusPoller("c", _fetch(cluster), **FAST).wait(job_id)

    status = asyncio.run(main())
    assert status.state == "TIMEOUT" and cluster.status_queries == 1 and cluster.calls["accounting"] == 1


def test_get_poller_shares_one_poller_per_connection_and_loop():
    async def main() -> None:
        a = get_poller("x", lambda: None)  # type: ignore[arg-type,return-value]
        assert get_poller("x", lambda: None) is a  # type: ignore[arg-type,return-value]
        assert get_poller("y", lambda: None) is not a  # type: ignore[arg-type,return-value]

    asyncio.run(main())
    poller_module.reset_pollers()
    assert poller_module._POLLERS == {}


# ------------------------------------------------------------------------------------ the trigger
@pytest.fixture
def use_cluster(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeSlurmTransport], None]:
    """Make triggers talk to ``cluster`` (the trigger builds its hook from a conn id)."""

    def install(cluster: FakeSlurmTransport) -> None:
        hook = SlurmHook(transport=cluster)
        monkeypatch.setattr(SlurmJobTrigger, "_hook", lambda self: AsyncSlurmHook(hook=hook))
        monkeypatch.setattr(JobTrigger, "_backend", lambda self: SlurmBackend(self.conn_id, hook=hook))

    return install


def _events(trigger: SlurmJobTrigger) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(main())


def test_trigger_serialize_round_trip():
    trigger = SlurmJobTrigger(job_id=42, slurm_conn_id="slurm_prod", poll_interval=5, max_poll_interval=90,
                              outage_budget=300, stdout_path="/w/hpcai-42.out", stderr_path="/w/hpcai-42.err",
                              stdout_offset=10, stderr_offset=3, echo={"ref": {"job_id": "42"}, "requested": {}})
    classpath, kwargs = trigger.serialize()
    json.dumps(kwargs)  # primitives only
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    # the earlier arguments become the one trigger's: the job, its output paths, what was shown
    assert classpath == "airflow_provider_hpcai.triggers.job.JobTrigger" and kwargs["conn_id"] == "slurm_prod"
    assert kwargs["ref"]["job_id"] == "42" and kwargs["ref"]["stdout_path"] == "/w/hpcai-42.out"
    assert kwargs["resume"] == {"offsets": {"stdout": 10, "stderr": 3}} and kwargs["stream_logs"] is True


@pytest.mark.parametrize(("kind", "status", "state", "exit_code"), [
    ("completed", "success", "COMPLETED", 0), ("failed", "failed", "FAILED", 3), ("timeout", "failed", "TIMEOUT", 0),
    ("oom", "failed", "FAILED", 137)])
def test_trigger_yields_exactly_one_event(use_cluster, kind, status, state, exit_code):
    cluster = FakeSlurmTransport(auto_advance=True)
    use_cluster(cluster)
    cluster.script_outcomes(kind)
    (job_id,) = _submit(cluster)
    events = _events(SlurmJobTrigger(job_id=job_id, poll_interval=0.001, echo={"ref": {"job_id": job_id}}))
    assert len(events) == 1
    event = events[0]
    assert (event["status"], event["state"], event["exit_code"]) == (status, state, exit_code)
    assert event["job_id"] == job_id and event["echo"] == {"ref": {"job_id": job_id}}


def _logged(caplog, capsys) -> str:
    """What the trigger logged: stdlib records, or structlog's console output (Airflow 3)."""
    records = "\n".join(r.getMessage() for r in caplog.records)
    captured = capsys.readouterr()
    return records if "] " in records else captured.out + captured.err


def test_trigger_streams_output_lines_with_offsets(use_cluster, caplog, capsys):
    cluster = FakeSlurmTransport()
    use_cluster(cluster)
    (job_id,) = _submit(cluster)
    cluster.advance()  # RUNNING
    job = cluster.job(job_id)
    polls = {"n": 0}
    real = cluster.statuses

    def statuses(ids):  # the job prints while it runs, then ends
        polls["n"] += 1
        if polls["n"] < 4:
            cluster.emit(job_id, f"step {polls['n']} done\n")
        if polls["n"] == 4:
            cluster.emit(job_id, "warning: ünïcode\n", stream="stderr")
            cluster.finish(job_id, "completed")
        return real(ids)

    cluster.statuses = statuses  # type: ignore[method-assign]
    caplog.set_level(logging.INFO)
    trigger = SlurmJobTrigger(job_id=job_id, poll_interval=0.002, stdout_path=job.stdout_path,
                              stderr_path=job.stderr_path)
    (event,) = _events(trigger)
    assert event["status"] == "success"
    assert event["stdout_offset"] == len(job.stdout.encode()) and event["stderr_offset"] == len(job.stderr.encode())
    logged = _logged(caplog, capsys)
    for line in ["step 1 done", "step 2 done", "step 3 done", "result=42"]:
        assert logged.count(f"[{job_id} stdout] {line}") == 1, (line, logged)
    assert f"[{job_id} stderr] warning: ünïcode" in logged

    # a re-created trigger (after a triggerer restart) continues where the last one stopped
    caplog.clear()
    _, kwargs = trigger.serialize()
    kwargs["resume"] = {"offsets": {"stdout": event["stdout_offset"] - len(b"result=42\n"),
                                    "stderr": event["stderr_offset"]}}
    (again,) = _events(JobTrigger(**kwargs))
    logged = _logged(caplog, capsys)
    assert logged.count("stdout]") == 1 and f"[{job_id} stdout] result=42" in logged
    assert again["stdout_offset"] == event["stdout_offset"]


def test_trigger_never_raises_on_errors(use_cluster):
    cluster = FakeSlurmTransport()
    use_cluster(cluster)
    (job_id,) = _submit(cluster)

    def broken(ids):
        raise RuntimeError("unexpected answer")

    cluster.statuses = broken  # type: ignore[method-assign]
    (event,) = _events(SlurmJobTrigger(job_id=job_id, poll_interval=0.001, stdout_offset=7))
    assert event["status"] == "error" and event["error_type"] == "trigger_error"
    assert "RuntimeError: unexpected answer" in event["message"] and event["stdout_offset"] == 7


def test_trigger_reports_a_controller_outage_as_an_event(use_cluster):
    cluster = FakeSlurmTransport()
    use_cluster(cluster)
    (job_id,) = _submit(cluster)
    cluster.fail_next(1000, ops=["statuses"])
    (event,) = _events(SlurmJobTrigger(job_id=job_id, poll_interval=0.001, max_poll_interval=0.001,
                                       outage_budget=0.02))
    assert event["status"] == "error" and event["error_type"] == "controller_unavailable"
    assert "clear the task" in event["message"]


def test_trigger_on_kill_cancels_the_job(use_cluster):
    cluster = FakeSlurmTransport()
    use_cluster(cluster)
    (job_id,) = _submit(cluster)
    cluster.advance()
    asyncio.run(SlurmJobTrigger(job_id=job_id).on_kill())
    assert cluster.cancelled == [job_id] and cluster.job(job_id).base_state == "CANCELLED"


def test_a_reused_job_id_with_another_tag_counts_as_vanished():
    """slurmctld killed before saving state can hand our job id to someone else's job."""
    import asyncio

    from airflow_provider_hpcai.slurm.states import JobStatus
    from airflow_provider_hpcai.triggers.poller import MISSING_POLLS_LIMIT, StatusPoller

    async def fetch(ids):
        return {i: JobStatus(i, "RUNNING", tag="hpcai-" + "f" * 20) for i in ids}

    async def main():
        poller = StatusPoller("c", fetch, interval=0.001, max_interval=0.001)
        return poller, await asyncio.wait_for(poller.wait("7", tag="hpcai-" + "a" * 20), 5)

    poller, status = asyncio.run(main())
    assert status.state == "UNKNOWN"
    assert poller.queries == MISSING_POLLS_LIMIT


def test_waiters_sharing_a_poller_keep_their_own_outage_budgets():
    """A task with a short budget fails during an outage; its neighbour with a long one keeps waiting."""
    import asyncio

    from airflow_provider_hpcai.exceptions import ControllerUnavailableError, TransportError
    from airflow_provider_hpcai.slurm.states import JobStatus
    from airflow_provider_hpcai.triggers.poller import StatusPoller

    clock = {"now": 0.0}
    state = {"down": True}
    heard: list[str] = []

    async def fetch(ids):
        clock["now"] += 5.0
        if state["down"]:
            raise TransportError("down", stderr="Unable to contact slurm controller", retryable=True)
        return {i: JobStatus(i, "COMPLETED") for i in ids}

    async def main():
        poller = StatusPoller("c", fetch, interval=0.001, max_interval=0.001, outage_budget=600,
                              clock=lambda: clock["now"])
        short = asyncio.ensure_future(poller.wait("1", outage_budget=10, on_outage=heard.append))
        long = asyncio.ensure_future(poller.wait("2"))
        with __import__("pytest").raises(ControllerUnavailableError, match="budget 10 s"):
            await asyncio.wait_for(short, 5)
        assert not long.done()
        state["down"] = False
        return await asyncio.wait_for(long, 5)

    status = asyncio.run(main())
    assert status.state == "COMPLETED"
    assert heard and "retrying" in heard[0]
