"""History refresh from Slurm accounting, against the stateful fake cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from airflow_provider_hpcai.advisor.history import HistoryStore, record_from_accounting
from airflow_provider_hpcai.advisor.refresh import (
    STATE_FILE,
    fetch_accounting,
    records_from_sacct,
    refresh_history,
)
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, CommandResult, CommandRunner
from tests.fakes.slurm import EPOCH, GIB, FakeSlurmTransport


class SacctSince(CommandRunner):
    """``sacct --starttime=...`` over the fake cluster (every job it holds), counting the calls."""

    def __init__(self, cluster: FakeSlurmTransport) -> None:
        self.cluster = cluster
        self.argvs: list[list[str]] = []

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult:
        if list(argv) == ["squeue", "--version"]:  # the transport asks once which Slurm it reads (text: 22.05)
            return CommandResult(tuple(argv), 0, "slurm-wlm 22.05.8\n", "")
        self.argvs.append(list(argv))
        assert argv[0] == "sacct" and any(a.startswith("--starttime=") for a in argv), argv
        return CommandResult(tuple(argv), 0, self.cluster.sacct_text(list(self.cluster.jobs)), "")

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        return b""

    def home(self) -> str:
        return "/home/hpcai"


def _cluster() -> FakeSlurmTransport:
    cluster = FakeSlurmTransport()
    jobs = [
        ("sim.heat", "hpcai-0123456789abcdef0123", "completed"),
        ("sim.heat", "hpcai-0123456789abcdef0124", "oom"),
        ("manual-job", None, "completed"),  # submitted by hand: no provider tag
        ("sim.wave", "hpcai-0123456789abcdef0125", "timeout"),
    ]
    for name, tag, kind in jobs:
        job = cluster.add_job(name=name, script="#!/bin/bash\n", workdir="/w", tag=tag,
                              requested_memory_bytes=GIB, time_limit_seconds=600, alloc_cpus=4)
        cluster.finish(job.job_id, kind)
    cluster.add_job(name="sim.heat", script="#!/bin/bash\n", workdir="/w", tag="hpcai-0123456789abcdef0126",
                    requested_memory_bytes=GIB, time_limit_seconds=600)  # still pending
    return cluster


def test_records_from_sacct_classify_kills_and_keep_finished_tagged_jobs():
    cluster = _cluster()
    jobs = cluster.accounting(list(cluster.jobs))
    records = records_from_sacct(jobs, known_tasks=[("sim", "heat")])
    by_id = {r.job_id: r for r in records}
    assert sorted(by_id) == ["1000", "1001", "1003"]  # untagged and pending jobs left out
    assert by_id["1001"].state == "OUT_OF_MEMORY"  # FAILED 0:9 + batch step over its request
    assert by_id["1003"].state == "TIMEOUT"
    heat = by_id["1000"]
    assert (heat.dag_id, heat.task_id) == ("sim", "heat")  # matched by the operator's job name
    assert heat.requested_memory_bytes == GIB and heat.requested_seconds == 600 and heat.cpus == 4
    assert abs(heat.submit_time - EPOCH) <= 86400 and heat.elapsed_seconds == 0
    wave = by_id["1003"]
    assert wave.dag_id is None and wave.kernel == "sim.wave"  # unknown task: its name is the kernel

    everything = records_from_sacct(jobs, scope="user", skip_ids=["1000"])
    assert sorted(r.job_id for r in everything) == ["1001", "1002", "1003"]
    with pytest.raises(InvalidJobSpecError, match="scope"):
        records_from_sacct(jobs, scope="all")  # type: ignore[arg-type]


def test_refresh_adds_new_jobs_once_and_remembers_when(tmp_path):
    cluster = _cluster()
    runner = SacctSince(cluster)
    hook = SlurmHook(transport=CliTransport(runner))
    home = str(tmp_path)
    store = HistoryStore(home)
    # The operator already recorded job 1000 with its full key: the refresh must not replace it.
    store.add(record_from_accounting({"job_id": "1000", "state": "COMPLETED", "elapsed_seconds": 30,
                                      "requested": {"time_limit": 600}, "submit_time": EPOCH},
                                     {"dag_id": "sim", "task_id": "heat", "owner": "alice", "nx": 64}))

    first = refresh_history(home, hook, now=EPOCH + 100, user="alice")
    assert first["added"] == 2 and first["total"] == 3
    assert runner.argvs[0][-1].startswith("--starttime=")
    kept = {r.job_id: r for r in store.records()}
    assert kept["1000"].size_params == {"nx": 64.0}  # the operator's record won
    assert kept["1001"].state == "OUT_OF_MEMORY" and kept["1001"].task_id == "heat" and kept["1001"].user == "alice"
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved["last_refresh"] == EPOCH + 100

    second = refresh_history(home, hook, now=EPOCH + 200)
    assert second["added"] == 0 and second["total"] == 3
    assert second["since"] == EPOCH + 100 - 3600  # from the last refresh, with an hour's overlap


def test_every_transport_answers_in_one_accounting_query():
    cluster = _cluster()
    hook = SlurmHook(transport=cluster)  # any transport: one "accounting since" query, no controller call
    jobs = fetch_accounting(hook, since=EPOCH - 10, job_ids=["1002"])
    assert set(jobs) == {"1000", "1001", "1002", "1003", "1004"}
    assert cluster.calls["accounting"] == 1 and cluster.calls.get("my_jobs", 0) == 0
