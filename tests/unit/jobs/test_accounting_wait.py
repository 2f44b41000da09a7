"""A job that ended while slurmdbd is down waits (bounded) for its accounting instead of being misclassified."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.jobs import watch
from airflow_provider_hpcai.jobs.states import JobStatus
from airflow_provider_hpcai.slurm import rest_transport
from airflow_provider_hpcai.spec import JobSpec, make_tag
from airflow_provider_hpcai.triggers.poller import reset_pollers
from tests.fakes.slurm import FakeSlurmTransport

GIB = 1024**3
#: What sacct prints on a real 22.05 cluster while slurmdbd is stopped (exit code 1).
SACCT_DBD_DOWN = ("sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection to "
                  "host:localhost:6819: Connection refused\nsacct: error: Problem talking to the database: "
                  "Connection refused")
#: What slurmrestd 22.05 answers (HTTP 200) for GET /slurmdb/v0.0.38/job/<id> while slurmdbd is stopped.
REST_DBD_DOWN = {"errors": [{"description": "Failed connecting to slurmdbd", "error_number": 7000,
                             "error": "Unable to connect to database", "source": "slurmdb_jobs_get"}], "jobs": []}


class Clock:
    """A fake monotonic clock that sleeping advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(watch, "_clock", fake)
    monkeypatch.setattr(watch, "_sleep", fake.sleep)
    monkeypatch.setattr(SlurmHook, "sleep", staticmethod(fake.sleep))
    reset_pollers()
    return fake


def _ended_job(cluster: FakeSlurmTransport, kind: str) -> tuple[SlurmBackend, Any, JobStatus]:
    cluster.script_outcomes(kind)
    hook = SlurmHook(transport=cluster)
    hook._log = logging.getLogger("task.hook")  # what the task log receives (structlog in Airflow), as caplog sees it
    backend = SlurmBackend("slurm_default", hook=hook)
    ref = backend.submit(JobSpec(name="d.t", script="python train.py\n", tag=make_tag("d", "t", "run")), workdir="/scratch/w")
    cluster.run_to_end(ref.job_id)
    status = backend.statuses([ref])[ref.job_id]
    assert status is not None and status.state == "FAILED"  # the controller's word alone: a plain failure
    return backend, ref, status


def _dbd_down(cluster: FakeSlurmTransport, queries: int) -> None:
    cluster.fail_next(queries, ops=["accounting"], stderr=SACCT_DBD_DOWN)


def test_an_oom_that_ended_while_slurmdbd_was_down_is_still_classified_oom(clock, caplog, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "300")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "oom")
    _dbd_down(cluster, 8)  # about a minute of failed sacct calls, then slurmdbd is back
    with caplog.at_level(logging.INFO):
        outcome = backend.outcome(ref, state=status.state, exit_code=status.exit_code, requested={"memory": GIB}, resume=None,
                                  log=logging.getLogger("task"))
    assert outcome.result["failure"] == "oom", outcome.result
    assert outcome.result["max_rss_bytes"] == 2 * GIB and outcome.result["elapsed_seconds"] is not None
    waiting = [r.getMessage() for r in caplog.records if "waiting for its accounting record" in r.getMessage()]
    assert waiting, caplog.text
    assert f"Slurm job {ref.job_id} ended" in waiting[0] and "Problem talking to the database" in waiting[0]
    assert "accounting_wait" in waiting[0]
    assert len(waiting) <= 4, waiting  # a line when it starts and every 30 s, not one per query
    assert f"The accounting record of Slurm job {ref.job_id} arrived after" in caplog.text
    assert cluster.calls["accounting"] == 9


def test_the_wait_is_bounded_by_accounting_wait_and_says_so(clock, caplog, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "45")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "oom")
    _dbd_down(cluster, 10_000)  # slurmdbd never comes back
    started = clock.now
    with caplog.at_level(logging.INFO):
        outcome = backend.outcome(ref, state=status.state, exit_code=status.exit_code, requested={"memory": GIB}, resume=None,
                                  log=logging.getLogger("task"))
    assert 45 <= clock.now - started <= 46
    assert outcome.result["failure"] != "oom" and outcome.result["elapsed_seconds"] is None
    assert ("did not arrive within 45 s ([hpcai] accounting_wait)" in caplog.text
            and "classified from the controller's state alone" in caplog.text), caplog.text


def test_an_answering_slurmdbd_without_the_record_is_waited_for_only_briefly(clock, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "600")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "failed")
    cluster.job(ref.job_id).in_accounting = False  # e.g. a job of a cluster not in this slurmdbd
    started = clock.now
    record = backend.accounting(ref, status)
    assert record == {} and clock.now - started <= watch.ACCOUNTING_LAG_SECONDS + 1


def test_accounting_that_refuses_for_good_is_not_waited_for(clock, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "600")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "failed")
    cluster.fail_next(1, ops=["accounting"], retryable=False,
                      stderr="sacct: error: Slurm accounting storage is disabled")
    started = clock.now
    assert backend.accounting(ref, status) == {} and clock.now == started


def test_the_deferred_wait_does_not_misclassify_a_job_that_left_the_queue(clock):
    """The job left squeue (MinJobAge) while slurmdbd is down: an outage, never UNKNOWN."""
    cluster = FakeSlurmTransport()
    backend, ref, _ = _ended_job(cluster, "oom")
    cluster.job(ref.job_id).in_controller = False
    _dbd_down(cluster, 6)
    messages: list[str] = []

    class Log:
        def info(self, *a: Any) -> None:
            messages.append(a[0] % a[1:] if len(a) > 1 else a[0])

        warning = info

    async def main() -> JobStatus:
        return await watch.watch(watch.DeferredAccess(backend), ref, interval=0.001, max_interval=0.002,
                                 outage_budget=600, resume=watch.ResumeState(), log=Log(), stream=False)

    status = asyncio.run(main())
    assert status.state == "FAILED", status  # from accounting once it answered, not "UNKNOWN"
    assert any("Status query on slurm_default failed" in m for m in messages), messages


def test_slurmrestd_answering_200_without_slurmdbd_is_an_outage_not_no_record():
    with pytest.raises(TransportError) as info:
        rest_transport._raise_if_dbd_down(REST_DBD_DOWN, "GET /slurmdb/v0.0.38/job/7")
    assert info.value.retryable and "Failed connecting to slurmdbd" in str(info.value)
    rest_transport._raise_if_dbd_down({"errors": [], "jobs": []}, "GET /slurmdb/v0.0.38/job/7")  # plain no record


def test_oom_exception_type_survives_the_wait(clock, monkeypatch):
    """What the user sees: the operator's error is the out-of-memory one (it asks for more memory on retry)."""
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "300")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "oom")
    _dbd_down(cluster, 3)
    outcome = backend.outcome(ref, state=status.state, exit_code=status.exit_code, requested={"memory": GIB}, resume=None,
                              log=logging.getLogger("task"))
    assert isinstance(outcome.failure, exc.SlurmOutOfMemory), outcome


def test_a_record_that_still_says_running_is_waited_for_until_its_end_arrives(clock, caplog, monkeypatch):
    """Found by the soak: a REST job ended just before a 40 s controller outage; slurmdbd held it as
    RUNNING for a minute, and after 20 s the result was built from that record (exit code None)."""
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "300")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "oom")
    real, calls = cluster.accounting, []

    def behind(job_ids):  # the first 20 answers (about 4 minutes) still show the job running
        calls.append(job_ids)
        records = real(job_ids)
        if len(calls) <= 20:
            records = {j: {**r, "state": "RUNNING", "exit_code": None} for j, r in records.items()}
        return records

    monkeypatch.setattr(cluster, "accounting", behind)
    with caplog.at_level(logging.INFO):
        outcome = backend.outcome(ref, state=status.state, exit_code=status.exit_code,
                                  requested={"memory": GIB}, resume=None, log=logging.getLogger("task"))
    assert outcome.result["failure"] == "oom" and outcome.result["elapsed_seconds"] is not None, outcome.result
    assert len(calls) == 21
    assert "the accounting record still says RUNNING: the job's end has not reached it yet" in caplog.text


def test_a_record_that_never_ends_is_not_returned_half_done(clock, caplog, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "60")
    cluster = FakeSlurmTransport()
    backend, ref, status = _ended_job(cluster, "failed")
    real = cluster.accounting
    monkeypatch.setattr(cluster, "accounting", lambda ids: {j: {**r, "state": "RUNNING", "exit_code": None}
                                                            for j, r in real(ids).items()})
    started = clock.now
    with caplog.at_level(logging.INFO):
        assert backend.accounting(ref, status) == {}
    assert 60 <= clock.now - started <= 61 and "did not arrive within 60 s" in caplog.text
