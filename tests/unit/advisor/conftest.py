"""Synthetic workloads for the advisor tests (small, deterministic)."""

from __future__ import annotations

import numpy as np
import pytest

SWF_HEADER = "; Version: 2.2\n; Computer: synthetic\n; MaxProcs: 64\n; MaxNodes: 64\n; Note: made up for tests\n;\n"


def synthetic_swf(n_jobs: int = 1200, n_users: int = 12, seed: int = 3, gap: float = 400.0) -> str:
    """An SWF trace where each user runs similar jobs and over-requests by a user-specific factor.

    Jobs arrive ``gap`` seconds apart on average (400 s keeps the machine busy; hours leave it idle).
    """
    rng = np.random.default_rng(seed)
    typical = rng.lognormal(np.log(1800), 1.0, n_users)
    over = rng.uniform(1.5, 6.0, n_users)
    lines = [SWF_HEADER.rstrip("\n")]
    submit = 0.0
    for job in range(1, n_jobs + 1):
        user = int(rng.integers(0, n_users))
        submit += float(rng.exponential(gap))
        run = max(1, int(typical[user] * rng.lognormal(0.0, 0.25)))
        request = int(np.ceil(typical[user] * over[user] / 60.0) * 60)
        run = min(run, request)
        procs = int(rng.integers(1, 9))
        fields = [job, int(submit), 0, run, procs, -1, -1, procs, request, -1, 1, user + 1, 1, 1, -1, -1, -1, -1]
        lines.append(" ".join(str(f) for f in fields))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def swf_text() -> str:
    return synthetic_swf()


@pytest.fixture()
def swf_file(tmp_path, swf_text):
    path = tmp_path / "synthetic.swf"
    path.write_text(swf_text)
    return path


def synthetic_records(n_jobs: int = 120, seed: int = 5):
    """Job records of two DAG tasks whose run time and memory scale with a size parameter."""
    from airflow_provider_hpcai.advisor.history import record_from_accounting

    rng = np.random.default_rng(seed)
    records = []
    t = 1_700_000_000.0
    for i in range(n_jobs):
        task = "heat" if i % 2 else "wave"
        nx = int(rng.choice([256, 512, 1024]))
        base = 2.0 if task == "heat" else 5.0
        elapsed = base * nx / 256 * 60 * float(rng.lognormal(0, 0.1))
        rss = 1e9 * nx / 256 * float(rng.lognormal(0, 0.05))
        t += 900
        records.append(
            record_from_accounting(
                {
                    "job_id": str(1000 + i),
                    "state": "COMPLETED",
                    "exit_code": 0,
                    "elapsed_seconds": elapsed,
                    "max_rss_bytes": rss,
                    "total_cpu_seconds": elapsed * 3.5,
                    "node_list": "node1",
                    "requested": {"ntasks": 4, "cpus_per_task": 1, "memory": 16 * 1024**3, "time_limit": 7200},
                    "submit_time": t,
                },
                {"dag_id": "sim", "task_id": task, "owner": "alice", "kernel": task, "nx": nx},
            )
        )
    return records
