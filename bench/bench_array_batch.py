"""Controller submissions of a mapped task with and without ``array_batch`` (a real ``airflow dags test``).

Runs a DAG whose one task is ``SlurmJobOperator.partial(..., array_batch=B).expand(...)`` over
``--items`` items on the local cluster (local transport, deferrable) and reports:

* the controller's ``REQUEST_SUBMIT_BATCH_JOB`` and ``REQUEST_UPDATE_JOB`` (the elements' releases)
  counts before and after (``sdiag``; the cluster is shared, so other users' RPCs in the window
  count too, and a reset in the window spoils the difference);
* the jobs the run itself submitted, from accounting (distinct job ids named ``<dag>.item``);
* how the task instances ended and the wall time of the run.

``--batch 0`` runs the same DAG without ``array_batch`` (one job per item). Run as root with the
cluster's environment::

    eval "$(scripts/local-slurm env)"
    .venv/bin/python bench/bench_array_batch.py --items 300 --batch 50 --json out/bench_array_batch.json

Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAG = '''
import pendulum
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

with DAG(DAG_ID, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    SlurmJobOperator.partial(
        task_id="item", script='echo "item=$ITEM"', job_resources={"memory": "20M", "time_limit": "00:05:00"},
        workdir=WORKDIR, array_batch=BATCH, poll_interval=2, retries=0,
    ).expand(environment=[{"ITEM": str(i)} for i in range(ITEMS)])
'''


def rpc_counts() -> dict[str, int]:
    """Counts of the RPC types a submission costs, from ``sdiag`` (reset by ``sdiag -r`` or at midnight)."""
    text = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    counts = {}
    for name in ("REQUEST_SUBMIT_BATCH_JOB", "REQUEST_UPDATE_JOB"):
        found = re.search(name + r"\s+\(\s*\d+\)\s+count:(\d+)", text)
        counts[name] = int(found.group(1)) if found else 0
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--batch", type=int, default=50, help="array_batch (0: one job per item)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    from tests.support import airflow_env

    dag_id = f"hpcai_bench_array_{args.items}_{args.batch}_{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="hpcai-bench-array-") as tmp:
        home, dags, work = Path(tmp, "home"), Path(tmp, "dags"), Path("/tmp", Path(tmp).name + "-jobs")
        for path in (home, dags, work):
            path.mkdir(mode=0o1777)
        (dags / "bench_array.py").write_text(
            DAG.replace("DAG_ID", repr(dag_id)).replace("WORKDIR", repr(str(work)))
            .replace("BATCH", repr(args.batch or None)).replace("ITEMS", str(args.items)))
        env = airflow_env(str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                          AIRFLOW_CONN_SLURM_DEFAULT='{"conn_type":"slurm","extra":{"transport":"local"}}')
        airflow = str(Path(sys.executable).parent / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
        before, started = rpc_counts(), time.monotonic()
        since = time.strftime("%Y-%m-%dT%H:%M:%S")
        proc = subprocess.run([airflow, "dags", "test", dag_id], env=env, capture_output=True, text=True,
                              timeout=7200)
        wall, after = time.monotonic() - started, rpc_counts()
        (Path(tmp) / "run.log").write_text(proc.stdout + proc.stderr)
        db = sqlite3.connect(home / "airflow.db")
        states: dict[str, int] = {}
        for (state,) in db.execute("select state from task_instance where dag_id=?", (dag_id,)):
            states[str(state)] = states.get(str(state), 0) + 1
        rows = subprocess.run(["sacct", "-X", "--noheader", "--parsable2", "--format=JobID,JobName",
                               f"--starttime={since}", "--name", f"{dag_id}.item"],
                              capture_output=True, text=True, check=True).stdout.split()
        jobs = {row.split("|")[0].split("_")[0] for row in rows if row}
        figures = {"items": args.items, "array_batch": args.batch or None, "jobs_submitted": len(jobs),
                   "sdiag_submit_rpcs": after["REQUEST_SUBMIT_BATCH_JOB"] - before["REQUEST_SUBMIT_BATCH_JOB"],
                   "sdiag_update_rpcs": after["REQUEST_UPDATE_JOB"] - before["REQUEST_UPDATE_JOB"], "task_instances": states, "wall_seconds": round(wall, 1),
                   "dags_test_rc": proc.returncode}
        subprocess.run(["rm", "-rf", "--", str(work)], check=False)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
