"""A mapped SlurmJobOperator with ``array_batch`` runs as job arrays on the real cluster (`airflow dags test`).

12 mapped items, 5 per chunk: three array jobs (5, 5, 2 elements). Item 7 exits 3: only its task
instance fails; every other one succeeds with its own result (its own element id, exit code and
output file holding its own line).
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.support import run_dags_test

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow]

DAG = '''
import pendulum
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

with DAG("hpcai_array_batch_it", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    SlurmJobOperator.partial(
        task_id="item",
        script=('echo "item=$ITEM element=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; [ "$ITEM" != 7 ] || exit 3; '
                'sleep 3'),  # long enough for accounting to sample its memory (2 s)
        job_resources={"memory": "50M", "time_limit": "00:05:00"},
        workdir=WORKDIR,
        array_batch=5,
        poll_interval=1,
        retries=0,
    ).expand(environment=[{"ITEM": str(i)} for i in range(12)])
'''


@pytest.mark.parametrize("conn", ["AIRFLOW_CONN_SLURM_LOCAL", "AIRFLOW_CONN_SLURM_REST"], ids=["local", "rest"])
def test_mapped_items_run_as_three_arrays(airflow_home: str, slurm_env: dict[str, str], shared_workdir: str,
                                           tmp_path: Path, conn: str) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "array_batch_it.py").write_text(textwrap.dedent(DAG).replace("WORKDIR", repr(shared_workdir)))
    rc, log = run_dags_test(airflow_home, "hpcai_array_batch_it", AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                            AIRFLOW_CONN_SLURM_DEFAULT=slurm_env[conn])
    assert rc != 0 or "state=failed" in log, log[-3000:]  # item 7 fails the run

    db = sqlite3.connect(Path(airflow_home) / "airflow.db")
    run_id = db.execute("select run_id from dag_run where dag_id='hpcai_array_batch_it' order by id desc").fetchone()[0]
    states = dict(db.execute("select map_index, state from task_instance where dag_id='hpcai_array_batch_it' "
                             "and run_id=?", (run_id,)).fetchall())
    assert states == {i: ("failed" if i == 7 else "success") for i in range(12)}, states
    results = {i: json.loads(v) for i, v in db.execute(
        "select map_index, value from xcom where dag_id='hpcai_array_batch_it' and run_id=? and key='return_value'",
        (run_id,)).fetchall()}
    assert sorted(results) == [i for i in range(12) if i != 7]
    arrays: dict[int, set[str]] = {}
    sampled = 0
    for index, result in results.items():
        if isinstance(result, str):
            result = json.loads(result)
        array_id, _, element = result["job_id"].partition("_")
        assert int(element) == index % 5, result["job_id"]  # its own element of its chunk
        arrays.setdefault(index // 5, set()).add(array_id)
        assert result["state"] == "COMPLETED" and result["exit_code"] == 0
        assert result["transport"] == ("rest" if conn.endswith("REST") else "local")
        efficiency = result["efficiency"]  # the element's own accounting (a peak RSS is not always sampled)
        assert efficiency["gpus"] == 0 and efficiency["consumed_energy_joules"] is None, efficiency
        assert efficiency["memory_percent"] is None or 0 < efficiency["memory_percent"] < 100, efficiency
        sampled += efficiency["memory_percent"] is not None
        output = Path(result["stdout_path"]).read_text()
        assert f"item={index} element={result['job_id']}" in output, output
    assert sampled > 0  # some elements' memory efficiency came back
    assert all(len(ids) == 1 for ids in arrays.values()), arrays  # one array job per chunk
    assert len(set().union(*arrays.values())) == 3
    assert "Submitted array job" in log and log.count("Submitted array job") == 3
    # Item 7 failed on its own element (exit 3), not as a separate job.
    assert "exit code 3" in log or "exit_code=3" in log or "'exit_code': 3" in log, log[-3000:]
