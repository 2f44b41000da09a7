"""State table, failure classification, results, and the retry helper."""

from __future__ import annotations

import pickle

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.slurm.outcome import build_result, failure_for
from airflow_provider_hpcai.slurm.states import (
    STATE_PHASE,
    JobStatus,
    Phase,
    classify_failure,
    normalise_state,
    phase_of,
)
from airflow_provider_hpcai.slurm.transport import is_transient, retry_call

GIB = 1024**3


@pytest.mark.parametrize(
    ("raw", "base"),
    [("CANCELLED by 1001", "CANCELLED"), ("RUNNING+", "RUNNING"), (["FAILED", "REQUEUED"], "FAILED"),
     ([], "UNKNOWN"), (None, "UNKNOWN"), ("completed", "COMPLETED"), ("  ", "UNKNOWN")],
)
def test_normalise_state(raw, base):
    assert normalise_state(raw) == base


def test_every_final_state_fails_or_succeeds_and_unknown_names_are_unknown():
    assert phase_of("COMPLETED") is Phase.SUCCEEDED
    assert {s for s, p in STATE_PHASE.items() if p is Phase.FAILED} >= {
        "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
    assert phase_of(["PENDING"]) is Phase.ACTIVE and phase_of("REQUEUED") is Phase.ACTIVE
    assert phase_of("SOMETHING_NEW") is Phase.UNKNOWN and phase_of(None) is Phase.UNKNOWN


def test_job_status_to_dict():
    assert JobStatus("1", "RUNNING", tag="t").to_dict() == {"job_id": "1", "state": "RUNNING", "reason": "",
                                                            "exit_code": None, "tag": "t"}


OOM_STEP = [{"step": "batch", "state": "CANCELLED", "max_rss_bytes": int(1.2 * GIB), "signal": 9}]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"state": "OUT_OF_MEMORY"}, exc.SlurmOutOfMemory),
        ({"state": "FAILED", "steps": [{"state": "OUT_OF_MEMORY"}]}, exc.SlurmOutOfMemory),
        ({"state": "FAILED", "exit_code": 0, "signal": 9, "steps": OOM_STEP, "requested_memory_bytes": GIB},
         exc.SlurmOutOfMemory),
        ({"state": "CANCELLED", "steps": OOM_STEP, "requested_memory_bytes": GIB}, exc.SlurmOutOfMemory),
        ({"state": "FAILED", "exit_code": 137, "steps": OOM_STEP, "requested_memory_bytes": GIB}, exc.SlurmOutOfMemory),
        ({"state": "FAILED", "output_text": "slurmstepd: error: Exceeded job memory limit"}, exc.SlurmOutOfMemory),
        ({"state": "FAILED", "output_text": "kernel: oom-kill event in StepId=5.batch"}, exc.SlurmOutOfMemory),
        ({"state": "FAILED", "exit_code": 1, "output_text": "Traceback...\nMemoryError"}, exc.SlurmOutOfMemory),
        ({"state": "TIMEOUT"}, exc.SlurmJobTimeout),
        ({"state": "DEADLINE"}, exc.SlurmJobTimeout),
        ({"state": "CANCELLED", "output_text": "*** JOB 5 CANCELLED AT 2027-01-01T00:00:00 DUE TO TIME LIMIT ***"},
         exc.SlurmJobTimeout),
        ({"state": "NODE_FAIL"}, exc.SlurmNodeFailure),
        ({"state": "BOOT_FAIL"}, exc.SlurmNodeFailure),
        ({"state": "CANCELLED", "output_text": "*** JOB 5 CANCELLED AT x DUE TO NODE FAILURE ***"},
         exc.SlurmNodeFailure),
        ({"state": "PREEMPTED"}, exc.SlurmJobPreempted),
        ({"state": "CANCELLED", "output_text": "*** JOB 5 CANCELLED AT x DUE TO PREEMPTION ***"},
         exc.SlurmJobPreempted),
        ({"state": "CANCELLED by 1001"}, exc.SlurmJobCancelled),
        ({"state": "FAILED", "exit_code": 3}, exc.SlurmJobFailed),
        # a signal 9 without memory evidence is not a memory kill
        ({"state": "FAILED", "exit_code": 0, "signal": 9, "requested_memory_bytes": GIB,
          "steps": [{"state": "CANCELLED", "max_rss_bytes": 10 * 1024**2}]}, exc.SlurmJobFailed),
        # high memory use in a job that failed for another reason is not a memory kill either
        ({"state": "FAILED", "exit_code": 3, "signal": 0, "requested_memory_bytes": GIB,
          "steps": [{"state": "FAILED", "max_rss_bytes": GIB}]}, exc.SlurmJobFailed),
        ({"state": "SPECIAL_EXIT"}, exc.SlurmJobFailed),
    ],
)
def test_classify_failure_table(kwargs, expected):
    assert classify_failure(**kwargs) is expected


def test_build_result_success_uses_accounting_figures():
    accounting = {"state": "COMPLETED", "exit_code": 0, "elapsed_seconds": 42, "max_rss_bytes": 100,
                  "total_cpu_seconds": 3.5, "node_list": "n1", "signal": 0}
    result = build_result("7", accounting=accounting, state="COMPLETED", exit_code=0, requested={"memory": GIB},
                          extra={"backend": "slurm"})
    assert result["failure"] is None and result["elapsed_seconds"] == 42 and result["backend"] == "slurm"
    assert failure_for(result) is None


def test_build_result_when_accounting_lags_or_is_missing():
    lagging = build_result("7", accounting={"state": "RUNNING"}, state="FAILED", exit_code=2, requested={})
    assert (lagging["state"], lagging["exit_code"], lagging["failure"]) == ("FAILED", 2, "failed")
    none = build_result("8", accounting={}, state="TIMEOUT", exit_code=None, requested={})
    assert none["failure"] == "timeout" and none["max_rss_bytes"] is None
    vanished = build_result("9", accounting={}, state="UNKNOWN", exit_code=None, requested={})
    assert vanished["failure"] == "failed"


def test_build_result_completed_with_nonzero_exit_is_a_failure():
    result = build_result("7", accounting={"state": "COMPLETED", "exit_code": 1}, state="COMPLETED", exit_code=1,
                          requested={})
    assert result["failure"] == "failed"


def test_build_result_oom_from_steps_and_failure_for_carries_everything():
    accounting = {"state": "FAILED", "exit_code": 0, "signal": 9, "steps": OOM_STEP, "node_list": "n3"}
    result = build_result("15", accounting=accounting, state="FAILED", exit_code=137, requested={"memory": GIB})
    assert result["failure"] == "oom" and result["exit_code"] == 137
    error = failure_for(result, "line 1\nKilled\n")
    assert isinstance(error, exc.SlurmOutOfMemory) and error.job_id == "15" and error.state == "FAILED"
    assert "job 15 ended FAILED (exit code 137)" in str(error) and "raise memory" in str(error)
    assert str(error).rstrip().endswith("Killed") and error.result is result
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is exc.SlurmOutOfMemory and again.result == result and str(again) == str(error)


@pytest.mark.parametrize(("kind", "cls"), [("timeout", exc.SlurmJobTimeout), ("node_failure", exc.SlurmNodeFailure),
                                           ("preempted", exc.SlurmJobPreempted), ("cancelled", exc.SlurmJobCancelled),
                                           ("failed", exc.SlurmJobFailed), ("weird", exc.SlurmJobFailed)])
def test_failure_for_kinds(kind, cls):
    error = failure_for({"job_id": "1", "state": "X", "failure": kind})
    assert type(error) is cls


# ------------------------------------------------------------------------------------ retry_call
class Flaky:
    """Fails ``n`` times with ``error``, then answers ``value``."""

    def __init__(self, n: int, error: exc.TransportError, value: str = "ok") -> None:
        self.n, self.error, self.value, self.calls = n, error, value, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.n:
            raise self.error
        return self.value


def _outage() -> exc.TransportError:
    return exc.TransportError("squeue failed", command="squeue --jobs=1", returncode=1,
                              stderr="Unable to contact slurm controller", retryable=True)


def test_retry_call_rides_out_transient_failures_with_bounded_backoff():
    slept: list[float] = []
    retried: list[int] = []
    func = Flaky(3, _outage())
    assert retry_call(func, attempts=5, base_delay=1, max_delay=3, sleep=slept.append,
                      on_retry=lambda n, err: retried.append(n)) == "ok"
    assert func.calls == 4 and retried == [1, 2, 3] and len(slept) == 3
    assert all(0 <= s <= cap for s, cap in zip(slept, [1, 2, 3], strict=True))


def test_retry_call_does_not_retry_permanent_errors():
    slept: list[float] = []
    func = Flaky(1, exc.TransportError("sbatch failed", stderr="Invalid partition name specified"))
    with pytest.raises(exc.TransportError, match="Invalid partition") as info:
        retry_call(func, sleep=slept.append)
    assert func.calls == 1 and slept == [] and not isinstance(info.value, exc.ControllerUnavailableError)


def test_retry_call_gives_up_after_the_budget_with_a_clear_error():
    slept: list[float] = []
    func = Flaky(100, _outage())
    with pytest.raises(exc.ControllerUnavailableError) as info:
        retry_call(func, attempts=4, what="status query", sleep=slept.append)
    assert func.calls == 4 and len(slept) == 3
    message = str(info.value)
    assert "status query failed 4 times" in message and "clear the task to reattach" in message
    assert info.value.command == "squeue --jobs=1" and "Unable to contact" in info.value.stderr
    assert isinstance(info.value.__cause__, exc.TransportError)


def test_retry_call_ignores_other_exceptions():
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        retry_call(boom, sleep=lambda s: None)


@pytest.mark.parametrize(("text", "transient"), [
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", True),
    ("squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation", True),
    ("sacct: error: slurmdbd: Connection refused", True),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination", False),
    ("sbatch: error: invalid partition specified: nope", False),
])
def test_is_transient(text, transient):
    assert is_transient(text) is transient
