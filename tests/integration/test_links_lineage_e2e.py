"""A Slurm task run by Airflow itself stores its job link and emits OpenLineage with the job."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.support import run_dags_test

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow]

TEMPLATE = "https://ood.example/pun/sys/dashboard/activejobs?jobid={job_id}&cluster={cluster}"

DAG_FILE = '''
from datetime import datetime

from airflow.sdk import DAG, Asset

from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources

with DAG("hpcai_links_e2e", schedule=None, start_date=datetime(2026, 1, 1)):
    SlurmJobOperator(task_id="job", slurm_conn_id="slurm_linked", script="echo linked", workdir=WORKDIR,
                     job_resources=Resources(memory="64M", time_limit=120), poll_interval=1,
                     inlets=[Asset("s3://bucket/in/mesh.h5")], outlets=[Asset("s3://bucket/out/run")])
'''


def test_slurm_task_stores_its_job_link_and_lineage(airflow_home: str, slurm_env: dict[str, str],
                                                    shared_workdir: str, tmp_path: Path) -> None:
    pytest.importorskip("airflow.providers.openlineage")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "links_e2e.py").write_text(textwrap.dedent(DAG_FILE).replace("WORKDIR", repr(shared_workdir)))
    events = tmp_path / "lineage.jsonl"
    conn = {"conn_type": "slurm", "host": "local cluster",
            "extra": {"transport": "local", "job_url_template": TEMPLATE}}
    rc, log = run_dags_test(
        airflow_home, "hpcai_links_e2e",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW_CONN_SLURM_LINKED=json.dumps(conn),
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        AIRFLOW__OPENLINEAGE__NAMESPACE="hpcai-e2e",
    )
    assert rc == 0, log[-5000:]
    with sqlite3.connect(Path(airflow_home) / "airflow.db") as db:
        rows = dict(db.execute("SELECT key, value FROM xcom WHERE dag_id = 'hpcai_links_e2e' AND task_id = 'job'"))
    job_id = json.loads(rows["job_id"])
    assert json.loads(rows["_link_SlurmJobLink"]) == (
        f"https://ood.example/pun/sys/dashboard/activejobs?jobid={job_id}&cluster=local%20cluster")
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    complete = [e for e in lines if e.get("eventType") == "COMPLETE" and e["job"]["name"].endswith(".job")]
    assert complete, [e.get("eventType") for e in lines]
    facet = complete[-1]["run"]["facets"]["hpcai_job"]
    assert facet["jobId"] == str(job_id) and facet["cluster"] == "local cluster" and facet["state"] == "COMPLETED"
    assert facet["requested"]["time_limit"] == 120 and "elapsedSeconds" in facet["used"]
    assert [o["name"] for o in complete[-1]["outputs"]] == ["out/run"]
    assert [i["name"] for i in complete[-1]["inputs"]] == ["in/mesh.h5"]
