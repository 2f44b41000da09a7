"""Example DAGs run end to end with `airflow dags test` (deferrals included) on the real cluster."""

from __future__ import annotations

import re

import pytest

from tests.support import run_dags_test

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow]


def test_slurm_example_dag_runs_on_the_cluster(airflow_home: str, slurm_env: dict[str, str]) -> None:
    rc, log = run_dags_test(airflow_home, "hpcai_slurm_example",
                            AIRFLOW_CONN_SLURM_DEFAULT=slurm_env["AIRFLOW_CONN_SLURM_LOCAL"])
    assert rc == 0, log[-5000:]
    assert "new_state=deferred" in log  # the waits went through the triggerer path
    assert "rank 0 of 2" in log and "rank 1 of 2" in log  # MPI output streamed into the task log
    assert "GREETING=it's $(not) `executed`" in log  # hostile value passed through, quoted
    assert re.search(r"DagRun Finished: dag_id=hpcai_slurm_example.*state=success", log)
