"""The fake cluster behaves like Slurm where the tests rely on it; SlurmJobSensor over it."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.sensors.slurm import SlurmJobSensor
from airflow_provider_hpcai.slurm.commands import parse_sacct
from airflow_provider_hpcai.slurm.states import Phase
from airflow_provider_hpcai.spec import JobSpec
from airflow_provider_hpcai.triggers.slurm import SlurmJobTrigger
from tests.fakes.slurm import OUTCOME_KINDS, FakeSlurmTransport, outcome
from tests.unit.slurm.test_slurm_commands import SACCT_REAL


def _submit(cluster: FakeSlurmTransport, **spec) -> str:
    return cluster.submit(JobSpec(**{"name": "j", "script": "echo", **spec}), "/w")


def test_ids_increase_and_jobs_progress(cluster):
    a, b = _submit(cluster), _submit(cluster)
    assert int(b) == int(a) + 1
    assert cluster.statuses([a])[a].state == "PENDING"
    cluster.advance(a)
    assert cluster.statuses([a, b]) == {a: cluster.statuses([a])[a], b: cluster.statuses([b])[b]}
    assert cluster.statuses([a])[a].state == "RUNNING" and cluster.statuses([b])[b].state == "PENDING"
    cluster.advance(a)
    assert cluster.statuses([a])[a].phase is Phase.SUCCEEDED
    assert cluster.statuses(["4242"]) == {}  # unknown jobs are absent, not errors
    assert cluster.status_queries == 8  # one per call, whatever the number of ids


def test_accounting_has_the_real_parse_sacct_shape(cluster):
    job_id = _submit(cluster)
    cluster.run_to_end()
    fake = cluster.accounting([job_id])[job_id]
    real = parse_sacct(SACCT_REAL)["35"]
    assert set(fake) == set(real) and set(fake["steps"][0]) == set(real["steps"][0])
    assert [s["step"] for s in fake["steps"]] == ["batch", "extern"]


@pytest.mark.parametrize("kind", OUTCOME_KINDS)
def test_every_scripted_outcome_ends_in_its_state(kind):
    cluster = FakeSlurmTransport()
    cluster.script_outcomes(kind)
    job_id = _submit(cluster)
    cluster.run_to_end()
    record = cluster.accounting([job_id])[job_id]
    assert record["state"] == outcome(kind).state.split(" ")[0]
    if kind.startswith("oom"):
        assert record["signal"] == 9 and record["steps"][0]["state"] == "CANCELLED"
        assert record["max_rss_bytes"] > 1024**3  # above the default request


def test_fail_next_targets_operations_and_counts_them(cluster):
    cluster.fail_next(1, ops=["accounting"], retryable=False)
    job_id = _submit(cluster)
    with pytest.raises(exc.TransportError) as info:
        cluster.accounting([job_id])
    assert not info.value.retryable and cluster.accounting([job_id])[job_id]["state"] == "PENDING"
    cluster.fail_next(2)
    for _ in range(2):
        with pytest.raises(exc.TransportError):
            cluster.my_jobs()
    assert job_id in cluster.my_jobs() and cluster.calls["my_jobs"] == 3


def test_read_file_serves_job_output_by_offset(cluster):
    job_id = _submit(cluster)
    cluster.emit(job_id, "abc")
    path = cluster.job(job_id).stdout_path
    assert path == f"/w/hpcai-{job_id}.out"
    assert cluster.read_file(path, 1) == b"bc" and cluster.read_file(path, 1, 1) == b"b"
    assert cluster.read_file("/w/other") == b""


def test_script_outcome_by_name(cluster):
    cluster.script_outcome_for("flaky", "node_fail")
    job_id = _submit(cluster, name="flaky")
    cluster.run_to_end()
    assert cluster.job(job_id).base_state == "NODE_FAIL"


# ------------------------------------------------------------------------------------ sensor
@pytest.fixture
def sensor_for(monkeypatch, cluster):
    hook = SlurmHook(transport=cluster)
    monkeypatch.setattr(SlurmJobSensor, "_hook", lambda self: hook)

    def make(job_id: str, **kwargs) -> SlurmJobSensor:
        with DAG("sensor_dag", schedule=None):
            return SlurmJobSensor(task_id="wait", job_id=job_id, **kwargs)

    return make


def test_sensor_pokes_until_the_job_completes(cluster, sensor_for):
    job_id = _submit(cluster)
    sensor = sensor_for(job_id, deferrable=False)
    assert sensor.poke({}) is False
    cluster.run_to_end()
    assert sensor.poke({}) is True


def test_sensor_raises_the_classified_failure(cluster, sensor_for):
    cluster.script_outcomes("oom")
    job_id = cluster.submit(JobSpec(name="j", script="echo", resources={"memory": "1G"}), "/w")
    cluster.run_to_end()
    with pytest.raises(exc.SlurmOutOfMemory) as info:
        sensor_for(job_id, deferrable=False).poke({})
    assert info.value.job_id == job_id


def test_deferrable_sensor_defers_and_resumes(cluster, sensor_for):
    job_id = _submit(cluster)
    sensor = sensor_for(job_id, deferrable=True, poke_interval=7)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    trigger = info.value.trigger
    assert isinstance(trigger, SlurmJobTrigger) and trigger.job_id == job_id and trigger.poll_interval == 7
    cluster.run_to_end()
    assert sensor.execute_complete({}, {"status": "success", "state": "COMPLETED", "exit_code": 0})["failure"] is None
    with pytest.raises(exc.ControllerUnavailableError):
        sensor.execute_complete({}, {"status": "error", "error_type": "controller_unavailable", "message": "x"})
