"""checkpoint_signal on the real cluster: USR1 before the time limit, a checkpoint, TIMEOUT, and a
retry that resumes from the checkpoint instead of starting again."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from tests.support import FakeStore, make_context

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow]

SCRIPT = """\
if [ -f "$HPCAI_CHECKPOINT" ]; then echo "resumed from $(cat "$HPCAI_CHECKPOINT")"; exit 0; fi
trap 'echo step-42 > "$HPCAI_CHECKPOINT"; echo "checkpoint written"' USR1
echo "starting from scratch"
sleep 600 &
wait   # returns when USR1 arrives; the trap writes the checkpoint
wait   # then sleep on until the time limit ends the job
"""


@pytest.mark.parametrize("conn_id", ["slurm_local", "slurm_rest"])
def test_a_timed_out_job_checkpoints_and_its_retry_resumes(conn_id: str, slurm_env: dict[str, str],
                                                           shared_workdir: str) -> None:
    op = SlurmJobOperator(task_id="ckpt", slurm_conn_id=conn_id, workdir=shared_workdir, script=SCRIPT,
                          job_resources=Resources(memory="64M", time_limit=60), checkpoint_signal=50,
                          poll_interval=2, deferrable=False, escalate_on_retry=True)
    store = FakeStore()
    first = make_context(store=store)
    if conn_id == "slurm_rest" and slurm_env.get("HPCAI_SLURM_VERSION", "22.05") == "22.05":
        with pytest.raises(exc.ConfigurationError, match="CLI transport"):  # said before anything is submitted
            op.execute(first)
        return
    with pytest.raises(exc.JobFailed) as failed:
        op.execute(first)
    assert isinstance(failed.value, exc.JobTimeout), failed.value
    record = store.data["hpcai_job"]
    assert record["failure"] == "timeout"
    ckpt_out = Path(record["ref"]["stdout_path"]).read_text()
    assert "starting from scratch" in ckpt_out and "checkpoint written" in ckpt_out, ckpt_out

    retry = make_context(run_id=first["run_id"], store=store, try_number=2)
    result = op.execute(retry)
    assert result["state"] == "COMPLETED" and result["job_id"] != record["ref"]["job_id"]
    out = Path(result["stdout_path"]).read_text()
    assert "resumed from step-42" in out and "starting from scratch" not in out, out
