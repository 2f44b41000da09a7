"""A hetjob's result waits until slurmdbd holds every group's record.

Found by `make test` under load (22.05.8): slurmdbd answered for a hetjob that had just ended
before it held both groups, so the result had no ``het_components`` (each group's own CPUs,
memory, node). The backend now counts the groups it submitted and takes the record as final
only once every group is in it (bounded by ``[hpcai] accounting_wait``).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.backends.slurm import SlurmBackend, _final
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec
from tests.fakes.slurm import FakeSlurmTransport

WHOLE = {"state": "COMPLETED", "exit_code": 0, "alloc_cpus": 3,
         "het_components": [{"het_group": 0, "alloc_cpus": 1}, {"het_group": 1, "alloc_cpus": 2}]}
EARLY = {"state": "COMPLETED", "exit_code": 0, "alloc_cpus": 1}  # group 0's record alone, no fold yet


class CatchingUpDbd(FakeSlurmTransport):
    """slurmdbd that answers with what it holds so far: one snapshot per query, the last one repeated."""

    def __init__(self, snapshots: list[dict[str, Any]]) -> None:
        super().__init__(auto_advance=True)
        self.snapshots, self.queries = list(snapshots), 0

    def accounting(self, job_ids):
        self.queries += 1
        record = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        return {str(job_ids[0]): dict(record)}


def test_a_hetjob_record_is_final_once_it_holds_every_group() -> None:
    assert not _final(EARLY, 2) and _final(WHOLE, 2)
    assert _final(EARLY, None)  # a plain job: the end state is enough
    assert not _final({**WHOLE, "state": "RUNNING"}, 2)
    assert _final({"state": "CANCELLED by 0"}, 2)  # cancelled before it started: no group figures ever


def test_the_result_of_a_hetjob_waits_for_the_groups_records(monkeypatch, sleeps) -> None:
    monkeypatch.setenv("AIRFLOW__HPCAI__ACCOUNTING_WAIT", "60")
    monkeypatch.setattr("airflow_provider_hpcai.jobs.watch._sleep", lambda seconds: None)
    dbd = CatchingUpDbd([EARLY, EARLY, WHOLE])
    backend = SlurmBackend("slurm_fake", hook=SlurmHook(transport=dbd))
    spec = JobSpec(name="het", script="srun --het-group=0 true\n", resources=Resources(cpus_per_task=1),
                   components=(Resources(cpus_per_task=2),))
    ref = backend.submit(spec, workdir="/scratch/w")
    assert ref.extra["het_groups"] == 2
    record = backend.accounting(ref, backend.status(ref))
    assert [c["het_group"] for c in record["het_components"]] == [0, 1] and dbd.queries == 3
