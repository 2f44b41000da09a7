"""Hostile values through the real local Slurm cluster (local CLI and slurmrestd transports).

Accepted hostile values (environment values full of shell syntax, a job name using every
allowed punctuation mark, the partition) reach the job verbatim and the sentinel never
appears; refused ones never reach sbatch (the controller and accounting know no such job).
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path

import pytest

from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.hostile.payloads import INJECTIONS, SENTINEL
from tests.support import make_context

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
log = logging.getLogger(__name__)

#: Values that must reach the job byte for byte (NUL-free: the environment cannot carry NUL).
#: ("\r\n" is left out here: see test_a_crlf_environment_value_is_refused_or_submitted.)
VALUES = [p.format(s=SENTINEL) for p in INJECTIONS if "\r\n" not in p] + ["caf\u00e9 \u202e \u4e2d", "x" * 300]


def _names_known(marker: str) -> list[str]:
    """Job names containing ``marker`` that squeue or sacct know (any user, last hour)."""
    found = []
    for argv in (["squeue", "-h", "-a", "-o", "%j"],
                 ["sacct", "-n", "-X", "-a", "-P", "--starttime=now-1hour", "--format=JobName%300"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout
        found += [line for line in out.splitlines() if marker in line]
    return found


@pytest.mark.parametrize("conn_id", ["slurm_local", "slurm_rest"])
def test_hostile_environment_and_name_reach_the_job_verbatim(conn_id: str, slurm_env: dict[str, str],
                                                            shared_workdir: str) -> None:
    env = {f"HOSTILE_{i}": v for i, v in enumerate(VALUES)}
    names = " ".join(sorted(env))
    script = f'for n in {names}; do printf "%s\\0" "${{!n}}"; done; printf "name=%s\\0" "$SLURM_JOB_NAME"\n'
    job_name = "h+x=y@z.-_" + uuid.uuid4().hex[:8]
    partition = slurm_env.get("HPCAI_SLURM_PARTITION", "debug")
    spec = JobSpec(name=job_name, script=script, environment=env, tag=make_tag("hostile", conn_id, job_name),
                   resources=Resources(memory="64M", time_limit=60, partition=partition))
    backend = SlurmBackend(conn_id)
    ref = backend.submit(spec, workdir=shared_workdir)
    status = backend.wait(ref, poll_interval=1, log=log)
    assert status.state == "COMPLETED", status
    data = backend.hook.read_output(ref.stdout_path)
    banner, _, data = data.partition(b"\n")  # the provider's "[hpcai] job N on host started" line
    assert banner.startswith(b"[hpcai] job ")
    out = data.split(b"\x00")[:-1]
    decoded = [o.decode("utf-8") for o in out]
    assert decoded[:-1] == [env[k] for k in sorted(env)]
    assert decoded[-1] == f"name={job_name}"
    assert not SENTINEL.exists()


@pytest.mark.parametrize("conn_id", ["slurm_local", "slurm_rest"])
def test_refused_values_never_reach_sbatch(conn_id: str, slurm_env: dict[str, str], shared_workdir: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DAG

    marker = "hostilemark" + uuid.uuid4().hex[:10]
    cases = [
        {"job_name": f"{marker}$(touch {SENTINEL})"},
        {"job_name": f"{marker}", "environment": {"BAD NAME": "x"}},
        {"job_name": f"{marker}", "array": "0-3;touch"},
        {"job_name": f"{marker}", "workdir": shared_workdir + "/../" + marker},
        {"job_name": f"{marker}", "environment": {"LD_PRELOAD": "/tmp/evil.so"}},
    ]
    with DAG("hostile_cluster_" + marker, schedule=None):
        for i, kwargs in enumerate(cases):
            op = SlurmJobOperator(task_id=f"t{i}", script="echo should-never-run", slurm_conn_id=conn_id,
                                  deferrable=False, poll_interval=1,
                                  job_resources=Resources(memory="64M", time_limit=60),
                                  **{"workdir": shared_workdir, **kwargs})
            with pytest.raises(InvalidJobSpecError):
                op.execute(make_context())
    with pytest.raises(InvalidJobSpecError):
        SlurmJobOperator(task_id="bad_partition", script="true", slurm_conn_id=conn_id,
                         job_resources={"partition": f"{marker};touch {SENTINEL}"})
    assert _names_known(marker) == []
    assert not any(marker in p.name for p in Path(shared_workdir).parent.iterdir())
    assert not SENTINEL.exists()


def test_a_crlf_environment_value_is_refused_or_submitted(slurm_env: dict[str, str], shared_workdir: str) -> None:
    backend = SlurmBackend("slurm_local")
    try:
        spec = JobSpec(name="crlf", script="true", environment={"V": "a\r\nb"},
                       resources=Resources(memory="64M", time_limit=60))
    except InvalidJobSpecError:
        return
    ref = backend.submit(spec, workdir=shared_workdir)
    assert backend.wait(ref, poll_interval=1, log=log).state == "COMPLETED"
