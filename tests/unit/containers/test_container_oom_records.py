"""sacct records of an out-of-memory kill inside a Slurm OCI container, recorded on the local cluster.

``JobAcctGatherParams=OverMemoryKill`` sees the container's RSS (runc's processes are the step's
descendants) and kills the step. Two shapes were recorded from the same job script (runc
exits 137 either before or after slurmstepd records its kill). The job line is FAILED 9:0 in
both, as for a bare-metal ``srun`` step killed the same way (job 141).
"""

from __future__ import annotations

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.jobs.classify import classify_failure

REQUESTED = 200 * 2**20
OUTPUT = ("slurmstepd-vm: error: StepId=140.0 exceeded memory limit (439459840 > 209715200), being killed\n"
          "slurmstepd-vm: error: Exceeded job memory limit\nsrun: error: vm: task 0: Exited with exit code 137\n")
# job 181: the step CANCELLED with signal 9 (as a bare-metal step ends)
CANCELLED_SHAPE = [{"state": "FAILED", "max_rss_bytes": 12476 * 1024},
                   {"state": "CANCELLED by 0", "max_rss_bytes": 326844 * 1024}]
# job 140: the step FAILED with exit code 9 (runc reported the kill first)
FAILED_SHAPE = [{"state": "FAILED", "max_rss_bytes": 12212 * 1024},
                {"state": "FAILED", "max_rss_bytes": 429160 * 1024}]


@pytest.mark.parametrize("steps", [CANCELLED_SHAPE, FAILED_SHAPE], ids=["step-cancelled", "step-failed"])
def test_container_oom_with_its_output_is_out_of_memory(steps: list[dict]) -> None:
    assert classify_failure("FAILED", exit_code=9, signal=0, steps=steps, requested_memory_bytes=REQUESTED,
                            output_text=OUTPUT) is exc.JobOutOfMemory


@pytest.mark.parametrize("steps", [CANCELLED_SHAPE, FAILED_SHAPE], ids=["step-cancelled", "step-failed"])
@pytest.mark.xfail(strict=True, reason="records alone: the job line reads FAILED 9:0 (exit code 9, no signal), and "
                   "jobs/classify.py wants signal 9, CANCELLED or exit 137 on the job line; a bare-metal srun step "
                   "killed the same way (job 141) gives the same job line. The output text classifies both.")
def test_container_oom_from_records_alone(steps: list[dict]) -> None:
    assert classify_failure("FAILED", exit_code=9, signal=0, steps=steps,
                            requested_memory_bytes=REQUESTED) is exc.JobOutOfMemory
