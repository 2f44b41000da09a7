"""SlurmJobOperator's lifecycle over the fake cluster: submit once, defer, reattach, resume, classify,
retry with more; plus mapping and DAG serialisation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook, SlurmHook
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import make_tag
from airflow_provider_hpcai.triggers.job import JobTrigger
from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger
from tests.fakes.slurm import FakeSlurmTransport

GIB = 1024**3


class FakeTI:
    """The bits of a task instance the operator touches."""

    def __init__(self, map_index: int = -1, try_number: int = 1) -> None:
        self.map_index = map_index
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class DictStore:
    """A task_state_store: survives across tries of one task instance."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return json.loads(json.dumps(self.data.get(key)))  # stored values must be JSON-safe

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))


def context(store: DictStore | None = None, ti: FakeTI | None = None, run_id: str = "manual__2027-01-01") -> dict:
    return {"ti": ti or FakeTI(), "run_id": run_id, "task_state_store": store}


def wire_fake_cluster(monkeypatch: pytest.MonkeyPatch) -> FakeSlurmTransport:
    """A fake cluster that every backend, hook and trigger of the test talks to."""
    fake = FakeSlurmTransport(auto_advance=True)
    hook = SlurmHook(transport=fake)
    monkeypatch.setattr("airflow_provider_hpcai.operators.base.get_backend",
                        lambda name, conn_id=None, **o: SlurmBackend(conn_id, hook=hook))
    monkeypatch.setattr(SlurmJobTrigger, "_hook", lambda self: AsyncSlurmHook(hook=hook))
    monkeypatch.setattr(JobTrigger, "_backend", lambda self: SlurmBackend(self.conn_id, hook=hook))
    return fake


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, sleeps) -> FakeSlurmTransport:
    """A fake cluster every backend, hook and trigger in the test talks to."""
    return wire_fake_cluster(monkeypatch)


def make_op(**kwargs: Any) -> SlurmJobOperator:
    fields = {"task_id": "train", "script": "python train.py\n", "poll_interval": 0.001, "deferrable": True,
              "job_resources": Resources(memory="1G", time_limit="01:00:00"), "workdir": "/scratch/w"}
    fields.update(kwargs)
    with DAG("hpc_dag", schedule=None):
        return SlurmJobOperator(**fields)


def defer(op: SlurmJobOperator, ctx: dict) -> SlurmJobTrigger:
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx)
    assert info.value.method_name == "execute_complete"
    return info.value.trigger


def fire(trigger: SlurmJobTrigger) -> dict[str, Any]:
    async def main() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(main())
    assert len(events) == 1
    return events[0]


def test_execute_submits_once_defers_and_returns_accounting(cluster):
    op, store, ti = make_op(environment={"SEED": "7"}), DictStore(), FakeTI()
    ctx = context(store, ti)
    trigger = defer(op, ctx)
    job = cluster.only_job()
    assert trigger.job_id == job.job_id and ti.xcom["job_id"] == job.job_id
    assert job.tag == make_tag("hpc_dag", "train", "manual__2027-01-01") and job.name == "hpc_dag.train"
    assert "export SEED=7" in job.script and job.workdir == "/scratch/w"
    assert store.data["hpcai_job"]["ref"]["job_id"] == job.job_id
    result = op.execute_complete(ctx, fire(trigger))
    assert (result["job_id"], result["state"], result["failure"]) == (job.job_id, "COMPLETED", None)
    assert result["max_rss_bytes"] == 100 * 1024**2 and result["requested"]["memory"] == GIB
    assert result["stdout_path"] == job.stdout_path and result["transport"] == "fake"
    assert cluster.submissions == 1 and store.data["hpcai_job"]["succeeded_job"] == job.job_id


def test_a_second_execute_while_the_job_lives_reattaches(cluster):
    cluster.auto_advance = False
    op, store = make_op(), DictStore()
    first = defer(op, context(store, FakeTI(try_number=1)))
    cluster.advance()  # RUNNING
    again = defer(make_op(), context(store, FakeTI(try_number=2)))  # the worker died; the task is re-run
    assert again.job_id == first.job_id and cluster.submissions == 1


def test_a_retry_reattaches_through_a_controller_outage(cluster, monkeypatch):
    """The reattach lookup rides out an outage like every other call (found by the soak: a try failed
    at once when slurmctld was down while it looked up its earlier job)."""
    monkeypatch.setattr(SlurmHook, "sleep", staticmethod(lambda seconds: None))
    cluster.auto_advance = False
    op, store = make_op(), DictStore()
    first = defer(op, context(store, FakeTI(try_number=1)))
    cluster.advance()  # RUNNING
    cluster.fail_next(2, ops=["statuses"])  # slurmctld down for the first two lookups
    again = defer(make_op(), context(store, FakeTI(try_number=2)))
    assert again.job_id == first.job_id and cluster.submissions == 1


def test_reattach_by_tag_when_the_state_store_is_lost(cluster):
    cluster.auto_advance = False
    first = defer(make_op(), context(None))
    again = defer(make_op(), context(DictStore()))
    assert again.job_id == first.job_id and cluster.submissions == 1
    other_index = defer(make_op(), context(None, FakeTI(map_index=3)))  # another mapped task: its own job
    assert other_index.job_id != first.job_id and cluster.submissions == 2


def test_an_earlier_successful_try_is_not_run_again(cluster):
    op, store = make_op(), DictStore()
    ctx = context(store)
    result = op.execute_complete(ctx, fire(defer(op, ctx)))
    assert make_op().execute(context(store)) == result and cluster.submissions == 1


def test_durable_false_submits_a_new_job_on_every_try(cluster):
    """The opt-out for teams that clear a task to run it again: every try is a new job."""
    store = DictStore()
    ctx = context(store)
    op = make_op(durable=False)
    first = op.execute_complete(ctx, fire(defer(op, ctx)))
    again = make_op(durable=False)
    second = again.execute_complete(ctx, fire(defer(again, context(store, FakeTI(try_number=2)))))
    assert cluster.submissions == 2 and second["job_id"] != first["job_id"]
    cluster.auto_advance = False  # a live job carrying the tag is not adopted either
    defer(make_op(durable=False), context(None, FakeTI(try_number=3)))
    defer(make_op(durable=False), context(None, FakeTI(try_number=4)))
    assert cluster.submissions == 4


def test_the_reused_result_says_how_to_run_the_job_again(cluster):
    op, store = make_op(), DictStore()
    ctx = context(store)
    op.execute_complete(ctx, fire(defer(op, ctx)))
    messages = []
    again = make_op()
    again.log.warning = lambda msg, *args: messages.append(msg % args)  # type: ignore[method-assign]
    again.execute(context(store, FakeTI(try_number=2)))
    (message,) = [m for m in messages if "already succeeded" in m]
    assert "DELETE /api/v2/dags/hpc_dag/dagRuns/manual__2027-01-01/taskInstances/train/state-store" in message
    assert "durable=False" in message and cluster.submissions == 1


@pytest.mark.parametrize(("kind", "error", "failure"), [
    ("failed", exc.SlurmJobFailed, "failed"), ("timeout", exc.SlurmJobTimeout, "timeout"),
    ("oom", exc.SlurmOutOfMemory, "oom"), ("oom_text", exc.SlurmOutOfMemory, "oom"),
    ("node_fail", exc.SlurmNodeFailure, "node_failure"), ("preempted", exc.SlurmJobPreempted, "preempted"),
    ("cancelled", exc.SlurmJobCancelled, "cancelled")])
def test_execute_complete_raises_the_classified_failure(cluster, kind, error, failure):
    cluster.script_outcomes(kind)
    op, store = make_op(), DictStore()
    ctx = context(store)
    event = fire(defer(op, ctx))
    with pytest.raises(error) as info:
        op.execute_complete(ctx, event)
    job = cluster.only_job()
    assert type(info.value) is error and info.value.job_id == job.job_id
    assert info.value.state == job.base_state and info.value.result["failure"] == failure
    assert store.data["hpcai_job"]["failure"] == failure


def test_failure_message_has_job_id_state_exit_code_and_stderr_tail(cluster):
    cluster.script_outcomes("failed")
    op = make_op()
    ctx = context(DictStore())
    with pytest.raises(exc.SlurmJobFailed) as info:
        op.execute_complete(ctx, fire(defer(op, ctx)))
    text = str(info.value)
    job_id = cluster.only_job().job_id
    assert f"job {job_id} ended FAILED (exit code 3)" in text and text.rstrip().endswith("ValueError: bad input")
    assert info.value.exit_code == 3 and "ValueError: bad input" in info.value.stderr_tail


def test_retry_after_an_oom_asks_for_more_memory(cluster):
    pytest.importorskip("airflow_provider_hpcai.policy", reason="the escalation policy is not in the tree yet")
    cluster.script_outcomes("oom", "oom", "completed")
    store = DictStore()
    memories = []
    for attempt in (1, 2, 3):
        op = make_op()
        ctx = context(store, FakeTI(try_number=attempt))
        trigger = defer(op, ctx)
        memories.append(cluster.job(trigger.job_id).spec.resources.memory_bytes)
        if attempt < 3:
            with pytest.raises(exc.SlurmOutOfMemory):
                op.execute_complete(ctx, fire(trigger))
        else:
            assert op.execute_complete(ctx, fire(trigger))["requested"]["memory"] == memories[-1]
    assert memories[0] == GIB and memories[0] < memories[1] < memories[2]
    assert memories[1] > cluster.job("1000").outcome.max_rss_bytes  # more than the killed job's peak
    assert f"--mem={memories[1] // 1024**2}M" in cluster.job(str(1001)).script
    assert cluster.submissions == 3


def test_retry_after_a_timeout_asks_for_more_time(cluster):
    pytest.importorskip("airflow_provider_hpcai.policy", reason="the escalation policy is not in the tree yet")
    cluster.script_outcomes("timeout", "completed")
    store = DictStore()
    op = make_op()
    ctx = context(store)
    with pytest.raises(exc.SlurmJobTimeout):
        op.execute_complete(ctx, fire(defer(op, ctx)))
    retry = defer(make_op(), context(store, FakeTI(try_number=2)))
    assert cluster.job(retry.job_id).spec.resources.time_limit_seconds > 3600


def test_no_escalation_when_disabled(cluster):
    cluster.script_outcomes("oom")
    store = DictStore()
    op = make_op(escalate_on_retry=False)
    ctx = context(store)
    with pytest.raises(exc.SlurmOutOfMemory):
        op.execute_complete(ctx, fire(defer(op, ctx)))
    retry = defer(make_op(escalate_on_retry=False), context(store, FakeTI(try_number=2)))
    assert cluster.job(retry.job_id).spec.resources.memory_bytes == GIB


def test_retry_after_a_node_failure_excludes_the_node(cluster):
    cluster.script_outcomes("node_fail", "completed")
    store = DictStore()
    op = make_op()
    ctx = context(store)
    with pytest.raises(exc.SlurmNodeFailure):
        op.execute_complete(ctx, fire(defer(op, ctx)))
    retry = defer(make_op(), context(store, FakeTI(try_number=2)))
    job = cluster.job(retry.job_id)
    assert job.spec.exclude_nodes == "node7" and "#SBATCH --exclude=node7" in job.script


def test_execute_complete_error_events(cluster):
    op = make_op()
    with pytest.raises(exc.ControllerUnavailableError, match="down for maintenance"):
        op.execute_complete(context(), {"status": "error", "error_type": "controller_unavailable", "job_id": "5",
                                        "message": "down for maintenance"})
    with pytest.raises(exc.HpcAiError, match="waiting on job 5 failed: RuntimeError: boom"):
        op.execute_complete(context(), {"status": "error", "error_type": "trigger_error", "job_id": "5",
                                        "message": "RuntimeError: boom"})


def test_on_kill_cancels_the_job(cluster):
    cluster.auto_advance = False
    op = make_op()
    trigger = defer(op, context(DictStore()))
    op.on_kill()
    assert cluster.cancelled == [trigger.job_id] and cluster.job(trigger.job_id).base_state == "CANCELLED"


def test_non_deferrable_mode_waits_in_the_worker(cluster):
    result = make_op(deferrable=False).execute(context(DictStore()))
    assert result["state"] == "COMPLETED" and cluster.submissions == 1
    cluster.script_outcomes("failed")
    with pytest.raises(exc.SlurmJobFailed):
        make_op(deferrable=False, task_id="other").execute(context(DictStore()))


def test_bad_requests_fail_at_parse_time():
    with pytest.raises(exc.InvalidJobSpecError, match="memory 'lots' is not a size"):
        make_op(job_resources={"memory": "lots"})
    with pytest.raises(exc.InvalidJobSpecError, match="unknown resource fields"):
        make_op(job_resources={"mem": "4G"})


def test_script_sbatch_lines_are_ignored(cluster):
    cluster.auto_advance = False
    defer(make_op(script="#SBATCH --mem=999G\npython train.py\n"), context())
    job = cluster.only_job()
    assert "--mem=1024M" in job.script and job.script.index("#SBATCH --mem=999G") > job.script.index(
        ": hpcai-directives-end")


def test_operator_workdir_is_validated(cluster):
    with pytest.raises(exc.InvalidJobSpecError):
        make_op(workdir="/scratch/x\n#SBATCH --uid=0").execute(context())


# ------------------------------------------------------------------------------------ mapping, serialisation
def test_partial_expand_builds_mapped_tasks_and_serialises():
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("sweep_dag", schedule=None) as dag:
        SlurmJobOperator.partial(task_id="sweep", script="python sweep.py", poll_interval=5).expand(
            job_resources=[{"memory": "1G"}, {"memory": "2G", "ntasks": 4}])
        SlurmJobOperator(task_id="plain", script="echo {{ ds }}", job_name="plain-job", array="0-3",
                         job_resources=Resources(memory="4G", gpus="a100:1", time_limit="02:00:00"))
    mapped = dag.get_task("sweep")
    assert mapped.expand_input.value["job_resources"][1] == {"memory": "2G", "ntasks": 4}
    data = DagSerialization.to_dict(dag)
    json.dumps(data)
    again = DagSerialization.from_dict(data)
    assert sorted(again.task_ids) == ["plain", "sweep"]
    sweep = again.get_task("sweep")
    assert sweep.expand_input.value["job_resources"] == [{"memory": "1G"}, {"memory": "2G", "ntasks": 4}]
    plain = again.get_task("plain")
    assert plain.task_type == "SlurmJobOperator" and plain.script == "echo {{ ds }}" and plain.array == "0-3"
    assert set(plain.template_fields) >= {"script", "environment", "job_name", "array", "workdir"}


def test_each_mapped_resource_dict_becomes_valid_resources():
    from airflow_provider_hpcai.operators.base import coerce_resources

    assert coerce_resources({"memory": "2G", "ntasks": 4}).memory_bytes == 2 * GIB
    assert coerce_resources(None) == Resources()
    with pytest.raises(exc.InvalidJobSpecError):
        coerce_resources({"ntasks": 0})


def test_the_result_carries_the_jobs_energy_and_what_the_advisor_saved(cluster):
    plain = make_op(deferrable=False).execute(context(DictStore()))
    assert plain["energy"]["source"] == "model" and plain["energy"]["kwh"] > 0
    assert "kwh_saved" not in plain["energy"]  # no advisor decision: nothing to compare
    op = make_op(deferrable=False, task_id="advised", job_resources=Resources(ntasks=4, time_limit=3600))
    op.hpcai_decision = {"mode": "enforce", "requested": {"ntasks": 4, "time_limit": 3600},
                         "applied": {"ntasks": 4, "time_limit": 600}, "predicted": {"time_limit": 600}}
    result = op.execute(context(DictStore()))
    elapsed = result["elapsed_seconds"]
    assert result["energy"]["core_hours_saved"] == pytest.approx(4 * (3600 - 600) / 3600)  # ran within 600 s
    assert result["energy"]["kwh_saved"] > 0 and elapsed < 600
    op = make_op(deferrable=False, task_id="advise_only", job_resources=Resources(ntasks=4, time_limit=3600))
    op.hpcai_decision = {"mode": "advise", "requested": {"ntasks": 4, "time_limit": 3600},
                         "applied": {"ntasks": 4, "time_limit": 3600}, "predicted": {"time_limit": 600}}
    advised = op.execute(context(DictStore()))["energy"]
    assert "core_hours_saved" not in advised and advised["core_hours_would_save"] == pytest.approx(4 * 3000 / 3600)
