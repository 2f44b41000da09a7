"""The advisor inside real Airflow: the training DAG, the task policy at parse time, and
retry escalation on the real cluster (all through `airflow dags test` / a real DagBag)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support import airflow_env, run_dags_test

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GIB = 1024**3


@pytest.fixture(scope="module")
def trained(airflow_home: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One run of the training DAG on a fresh advisor home and a fresh SQLite MLflow store."""
    root = tmp_path_factory.mktemp("advisor")
    home, uri = str(root / "home"), f"sqlite:///{root / 'mlflow.db'}"
    rc, log = run_dags_test(airflow_home, "hpcai_advisor_training", AIRFLOW__HPCAI__ADVISOR_HOME=home,
                            AIRFLOW__HPCAI__MLFLOW_TRACKING_URI=uri, HPCAI_ADVISOR_SLURM_CONN="none")
    return {"home": home, "uri": uri, "rc": str(rc), "log": log}


def test_training_dag_registers_and_promotes_a_champion(airflow_home: str, trained: dict[str, str]) -> None:
    assert trained["rc"] == "0", trained["log"][-5000:]
    assert re.search(r"DagRun Finished: dag_id=hpcai_advisor_training.*state=success", trained["log"])
    assert "promoted to champion" in trained["log"]
    probe = textwrap.dedent(f"""
        import json, mlflow
        from mlflow import MlflowClient
        from airflow_provider_hpcai.advisor.cache import ChampionCache
        client = MlflowClient(tracking_uri={trained['uri']!r})
        version = client.get_model_version_by_alias("hpcai-advisor", "champion")
        model = ChampionCache({trained['home']!r}).get()
        print(json.dumps({{"version": str(version.version), "run": version.run_id,
                          "cached": model.version if model else None,
                          "targets": sorted(model.targets) if model else []}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False,
                         env=airflow_env(airflow_home))
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["version"] == "1" and found["run"]
    assert found["cached"] == "hpcai-advisor/1"  # the champion file names the registered version
    assert found["targets"] == ["memory", "runtime", "runtime_estimate"]  # q0.3 beside the limit model


POLICY_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources

with DAG("hpcai_synthetic", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    SlurmJobOperator(task_id="heat", script="echo heat",
                     job_resources=Resources(ntasks=4, time_limit=1920, memory="4G"))
    SlurmJobOperator(task_id="wave", script="echo wave",
                     job_resources=Resources(ntasks=4, time_limit=3600, memory="8G"))
"""

PARSE = """
import json, logging, sys
warnings = []
class Grab(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING and record.name.startswith("airflow_provider_hpcai"):
            warnings.append(record.getMessage())
from airflow.dag_processing.dagbag import DagBag  # configures Airflow's logging first
logging.getLogger("airflow_provider_hpcai").addHandler(Grab())
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("hpcai_synthetic")
tasks = {t.task_id: {"resources": t.job_resources.to_dict(), "decision": getattr(t, "hpcai_decision", None)}
         for t in (dag.tasks if dag else [])}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "tasks": tasks,
                  "warnings": warnings}))
"""


def _parse(airflow_home: str, dags: Path, home: str, mode: str) -> dict:
    env = airflow_env(airflow_home, AIRFLOW__HPCAI__ADVISOR_MODE=mode, AIRFLOW__HPCAI__ADVISOR_HOME=home,
                      AIRFLOW__CORE__DAGS_FOLDER=str(dags))
    out = subprocess.run([sys.executable, "-c", PARSE, str(dags)], capture_output=True, text=True, timeout=180, check=False,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _one_outcome(home: str, verdict: dict) -> None:
    """What the operator and the history store tell the live guard about one finished job."""
    import math

    from airflow_provider_hpcai.advisor.history import JobRecord
    from airflow_provider_hpcai.advisor.live_guard import LiveGuard

    guard = LiveGuard(home)
    ticket, _, _ = guard.admit(verdict, None)
    guard.bind(ticket, "it-1")
    run = 0.8 * math.exp(verdict["raw"])
    guard.note_finished([JobRecord(job_id="it-1", submit_time=1e9, state="COMPLETED", elapsed_seconds=run,
                                   requested_seconds=verdict["request"])])


def test_policy_applies_in_a_real_dagbag(airflow_home: str, trained: dict[str, str], tmp_path: Path) -> None:
    assert trained["rc"] == "0", trained["log"][-3000:]
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "synthetic_tasks.py").write_text(POLICY_DAG)

    fresh = _parse(airflow_home, dags, trained["home"], "enforce")
    heat = fresh["tasks"]["heat"]  # the guard has seen no outcome of this task yet: its time limit stays
    assert heat["decision"]["guard"]["held"] == "no_history" and heat["resources"]["time_limit"] == 1920
    _one_outcome(trained["home"], heat["decision"]["guard"])
    enforced = _parse(airflow_home, dags, trained["home"], "enforce")
    assert enforced["errors"] == {}
    heat = enforced["tasks"]["heat"]
    assert heat["decision"]["mode"] == "enforce" and heat["decision"]["model_version"] == "hpcai-advisor/1"
    assert heat["resources"]["time_limit"] < 1920 and heat["resources"]["memory"] < 4 * GIB
    assert heat["resources"] == heat["decision"]["applied"]
    assert heat["decision"]["requested"]["time_limit"] == 1920

    advised = _parse(airflow_home, dags, trained["home"], "advise")
    heat = advised["tasks"]["heat"]
    assert heat["resources"]["time_limit"] == 1920 and heat["resources"]["memory"] == 4 * GIB
    assert heat["decision"]["mode"] == "advise" and heat["decision"]["predicted"]["time_limit"] < 1920
    assert heat["decision"]["guard"]["held"] is None

    broken = tmp_path / "broken-home"
    broken.mkdir()
    (broken / "champion.json").write_text('{"format": "hpcai-advisor-compact/1", "vers')
    damaged = _parse(airflow_home, dags, str(broken), "enforce")
    assert damaged["errors"] == {} and set(damaged["tasks"]) == {"heat", "wave"}
    assert damaged["tasks"]["heat"]["resources"]["time_limit"] == 1920
    assert len(damaged["warnings"]) == 1 and "unreadable" in damaged["warnings"][0], damaged["warnings"]


ESCALATION_DAG = """
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources

with DAG("hpcai_it_escalation", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         default_args={"retries": 1, "retry_delay": timedelta(seconds=1)}):
    SlurmJobOperator(
        task_id="hog", job_name="JOB_NAME", poll_interval=2,
        script="/usr/bin/python3 -c 'import time; b = b\\"x\\" * (150 << 20); print(\\"allocated\\", flush=True); "
               "time.sleep(6)'",
        job_resources=Resources(memory="60M", time_limit="00:05:00"),
    )
"""


@pytest.mark.slurm
def test_retry_after_oom_asks_for_more_memory_on_the_cluster(
    airflow_home: str, slurm_env: dict[str, str], tmp_path: Path
) -> None:
    dags, home = tmp_path / "dags", tmp_path / "home"
    dags.mkdir()
    name = f"hpcai-it-esc-{uuid.uuid4().hex[:8]}"
    (dags / "escalation.py").write_text(ESCALATION_DAG.replace("JOB_NAME", name))
    rc, log = run_dags_test(airflow_home, "hpcai_it_escalation", timeout=300,
                            AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__HPCAI__ADVISOR_HOME=str(home),
                            AIRFLOW_CONN_SLURM_DEFAULT=slurm_env["AIRFLOW_CONN_SLURM_LOCAL"])
    assert rc == 0, log[-5000:]
    assert "exceeded memory limit" in log  # the first try really was killed by Slurm
    grown = re.search(r"retrying with more \(.*memory=(\d+) .*-> .*memory=(\d+) ", log)
    assert grown, log[-5000:]
    assert int(grown.group(1)) == 60 * 1024**2 and int(grown.group(2)) >= 2 * 150 * 1024**2
    assert "new_state=up_for_retry" in log and "new_state=success" in log
    assert re.search(r"DagRun Finished: dag_id=hpcai_it_escalation.*state=success", log)

    # The operators fed the history: the kill is recorded as such, then the success.
    from airflow_provider_hpcai.advisor.history import HistoryStore

    states = [r.state for r in HistoryStore(str(home)).records()]
    assert states == ["OUT_OF_MEMORY", "COMPLETED"]

    # Slurm accounting, read back through the hook, classifies the same kill from its steps.
    from airflow_provider_hpcai.advisor.refresh import refresh_history
    from airflow_provider_hpcai.hooks.slurm import SlurmHook

    fresh = tmp_path / "fresh"
    summary = refresh_history(str(fresh), SlurmHook(transport=_local_transport()), scope="tagged",
                              lookback_s=600)
    mine = [r for r in HistoryStore(str(fresh)).records() if r.kernel == name]
    assert summary["added"] >= 2 and [r.state for r in mine] == ["OUT_OF_MEMORY", "COMPLETED"]


def _local_transport():
    from airflow_provider_hpcai.hooks.slurm import build_transport

    return build_transport({"transport": "local"}, login=None, password=None)
