"""The backend contract, the same cases on every registered backend (see ``conftest.py``).

Submit, reattach, batched status, output (partial lines, a restarted trigger), every failure
class, cancel: what a DAG author relies on whichever backend runs the job.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.jobs.output import ResumeState
from airflow_provider_hpcai.jobs.states import Phase
from airflow_provider_hpcai.jobs.watch import BlockingAccess, copy_output, run_sync
from airflow_provider_hpcai.spec import make_tag
from airflow_provider_hpcai.triggers.job import JobTrigger
from tests.contract.conftest import Harness
from tests.unit.kubernetes.helpers import ListLog

#: What each ending raises; ``completed`` raises nothing.
RAISES: dict[str, type[exc.JobFailed]] = {
    "failed": exc.JobFailed,
    "oom": exc.JobOutOfMemory,
    "timeout": exc.JobTimeout,
    "node_fail": exc.JobNodeFailure,
    "preempted": exc.JobPreempted,
}


class Log(ListLog):
    """A task log: the lines a user reads."""

    def shown(self, *texts: str) -> list[str]:
        """The output lines among the log's, in order (the text after ``] ``)."""
        return [line.split("] ", 1)[1] for line in self.lines if "] " in line and line.split("] ", 1)[1] in texts]


def _wait_and_outcome(h: Harness, ref: Any, log: Log) -> Any:
    status = h.backend.wait(ref, poll_interval=0.01, log=log)
    return status, h.backend.outcome(ref, state=status.state, exit_code=status.exit_code,
                                     requested={"memory": 2**30}, resume=None, log=log)


def test_a_completed_job_returns_its_result_and_each_output_line_once(harness: Harness) -> None:
    log = Log()
    ref = harness.submit("completed", "first line\nsecond line\nno newline at the end")
    status, outcome = _wait_and_outcome(harness, ref, log)
    assert status.phase is Phase.SUCCEEDED and outcome.failure is None
    result = outcome.result
    assert result["job_id"] == ref.job_id and result["state"] == "COMPLETED" and result["backend"] == harness.name
    assert log.shown("first line", "second line", "no newline at the end") == [
        "first line", "second line", "no newline at the end"]


@pytest.mark.parametrize("ending", sorted(RAISES))
def test_every_failure_class_raises_its_neutral_exception(harness: Harness, ending: str) -> None:
    if ending not in harness.endings:
        pytest.skip(f"the {harness.name} backend cannot end a job {ending}")
    log = Log()
    _, outcome = _wait_and_outcome(harness, harness.submit(ending, "working\n"), log)
    assert type(outcome.failure) is RAISES[ending], (outcome.result, log.lines)
    assert outcome.result["failure"] == {"failed": "failed", "oom": "oom", "timeout": "timeout",
                                         "node_fail": "node_failure", "preempted": "preempted"}[ending]
    assert isinstance(outcome.failure, exc.SlurmJobFailed)  # the earlier name still catches it
    assert "working" in log.shown("working")


def test_the_partial_last_line_waits_for_its_newline_while_the_job_runs(harness: Harness) -> None:
    ref = harness.start("alpha\nbeta\npart")
    resume, log = ResumeState(), Log()
    access = BlockingAccess(harness.backend)
    run_sync(copy_output(access, ref, resume, log, final=False))
    assert log.shown("alpha", "beta", "part", "partial") == ["alpha", "beta"]
    harness.write(ref, "ial\n")
    run_sync(copy_output(access, ref, resume, log, final=False))
    assert log.shown("alpha", "beta", "part", "partial") == ["alpha", "beta", "partial"]
    harness.write(ref, "tail without newline")
    harness.finish(ref)
    status = harness.backend.wait(ref, poll_interval=0.01, log=Log())  # a wait that shows nothing new twice
    outcome = harness.backend.outcome(ref, state=status.state, exit_code=status.exit_code, requested={},
                                      resume=resume, log=log)
    assert outcome.failure is None
    assert log.shown("alpha", "beta", "partial", "tail without newline") == [
        "alpha", "beta", "partial", "tail without newline"]


def test_reattach_finds_the_live_job_by_its_tag_and_not_an_ended_one(harness: Harness) -> None:
    tag = make_tag("contract", "reattach", f"run-{harness.name}")
    ref = harness.start("x\n", tag=tag)
    found = harness.backend.find_live(tag)
    assert found is not None and found.job_id == ref.job_id
    assert harness.backend.find_live(make_tag("contract", "reattach", "another-run")) is None
    harness.finish(ref)
    harness.backend.wait(ref, poll_interval=0.01, log=Log())
    assert harness.backend.find_live(tag) is None


def test_statuses_answer_for_many_jobs_at_once(harness: Harness) -> None:
    refs = [harness.start(f"job {i}\n") for i in range(2)]
    found = harness.backend.statuses(refs)
    assert sorted(found) == sorted(r.job_id for r in refs)
    assert all(s is not None and s.phase is Phase.ACTIVE for s in found.values())
    for ref in refs:
        harness.finish(ref)
        harness.backend.wait(ref, poll_interval=0.01, log=Log())


def test_cancel_stops_the_job_and_it_ends_cancelled(harness: Harness) -> None:
    ref = harness.start("started\n")
    harness.backend.cancel(ref)
    _, outcome = _wait_and_outcome(harness, ref, Log())
    assert type(outcome.failure) is exc.JobCancelled, outcome.result
    harness.backend.cancel(ref)  # already over: no error


def test_resume_after_a_triggerer_restart_shows_each_line_once(harness: Harness) -> None:
    ref = harness.start("one\ntwo\n")
    if not harness.backend.can_defer:
        with pytest.raises(NotImplementedError, match="cannot defer"):
            JobTrigger.for_job(harness.backend, ref, poll_interval=0.01)
        harness.finish(ref)
        harness.backend.wait(ref, poll_interval=0.01, log=Log())
        return
    first = JobTrigger.for_job(harness.backend, ref, poll_interval=0.01, echo={"ref": ref.to_dict()})
    first.stream_logs = True
    first._log = Log()

    async def until_some_shown() -> None:
        task = asyncio.ensure_future(first.run().__anext__())
        while not any(first.resume.offsets.values()) and not task.done():
            await asyncio.sleep(0.005)
        assert not task.done(), "the job ended before any of its output was streamed"
        task.cancel()  # the triggerer dies here

    asyncio.run(asyncio.wait_for(until_some_shown(), timeout=20))
    _, kwargs = first.serialize()  # the triggerer restarts: the trigger is rebuilt from this
    harness.write(ref, "three\n")
    harness.finish(ref)
    second = JobTrigger(**kwargs)
    second._log = Log()

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in second.run()]

    (event,) = asyncio.run(asyncio.wait_for(collect(), timeout=20))
    assert event["status"] == "success" and event["echo"] == {"ref": ref.to_dict()}
    task_log = Log()
    outcome = harness.backend.outcome(ref, state=event["state"], exit_code=event["exit_code"], requested={},
                                      resume=ResumeState.from_dict(event["resume"]), log=task_log)
    assert outcome.failure is None
    lines = first._log.shown("one", "two", "three") + second._log.shown("one", "two", "three")
    assert lines + task_log.shown("one", "two", "three") == ["one", "two", "three"]
