"""checkpoint_signal: --signal=B:USR1@<s> on every transport and a stable HPCAI_CHECKPOINT per task instance."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.exceptions import ConfigurationError, InvalidJobSpecError
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.script import build_sbatch_script
from airflow_provider_hpcai.spec import JobSpec
from tests.support import make_context


def test_the_signal_reaches_sbatch():
    script = build_sbatch_script(JobSpec(name="x", script="true", signal="B:USR1@120"), "/w")
    assert "#SBATCH --signal=B:USR1@120\n" in script


@pytest.mark.parametrize("bad", ["USR1", "B:USR1@", "B:KILL@10", "B:USR1@10;id", "B:USR1@1234567", "$(id)@1", 5])
def test_bad_signals_are_refused(bad):
    with pytest.raises(InvalidJobSpecError, match="signal"):
        JobSpec(name="x", script="true", signal=bad)


def test_rest_bodies_carry_the_signal_in_each_versions_shape():
    spec = JobSpec(name="x", script="true", signal="B:USR1@120")
    with pytest.raises(ConfigurationError, match="CLI transport"):  # 22.05's slurmrestd refuses it (HTTP 400)
        rest_api.submit_body(spec, "/w", "v0.0.38")
    job = rest_api.submit_body(spec, "/w", "v0.0.42")["job"]
    assert job["kill_warning_signal"] == "USR1" and job["kill_warning_flags"] == ["BATCH_JOB"]
    assert job["kill_warning_delay"] == {"set": True, "infinite": False, "number": 120}


@pytest.mark.parametrize("bad", [0, -5, 70000, 2.5, True, "60"])
def test_checkpoint_signal_is_validated(bad):
    with pytest.raises(InvalidJobSpecError, match="checkpoint_signal"):
        SlurmJobOperator(task_id="t", script="true", checkpoint_signal=bad)


def test_every_try_of_a_task_instance_gets_the_same_checkpoint_path():
    op = SlurmJobOperator(task_id="t", script="run.sh", checkpoint_signal=90)
    assert op.signal == "B:USR1@90"
    first = op.build_script(make_context(run_id="r1"))
    again = op.build_script(make_context(run_id="r1", try_number=2))
    other = op.build_script(make_context(run_id="r1", map_index=3))
    assert first == again and first != other
    assert first.startswith('export HPCAI_CHECKPOINT="$PWD/hpcai-checkpoint-hpcai-') and first.endswith("\nrun.sh")
    assert SlurmJobOperator(task_id="t", script="run.sh").build_script(make_context()) == "run.sh"
