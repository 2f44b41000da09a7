"""Airflow imports the policy entry point with itself in every process: it must stay light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "numpy",
    "pandas",
    "statsmodels",
    "mlflow",
    "sklearn",
    "dask",
    "distributed",
    "kubernetes",
    "airflow_provider_hpcai.advisor",
    "airflow_provider_hpcai.advisor.cache",
    "airflow_provider_hpcai.advisor.models",
    "airflow_provider_hpcai.policy.decision",
    "airflow_provider_hpcai.policy.settings",
    "airflow_provider_hpcai.resources",
)

#: What every Airflow process does first; Airflow loads the ``airflow.policy`` entry points in it.
_PROBE = """
import json, sys
import airflow
from airflow.settings import get_policy_plugin_manager
names = [getattr(p, "__name__", "") for p in get_policy_plugin_manager().get_plugins()]
print(json.dumps({"loaded": sorted(sys.modules), "registered": "airflow_provider_hpcai.policy.airflow_policy" in names}))
"""


def _probe(tmp_path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_airflow_with_the_policy_pulls_in_nothing_heavy(tmp_path):
    probe = _probe(tmp_path)
    assert probe["registered"], "Airflow did not load the hpcai policy through its entry point"
    loaded = set(probe["loaded"])
    assert not [name for name in HEAVY if name in loaded]


def test_the_first_judged_task_loads_the_advisor_lazily(tmp_path, monkeypatch):
    from airflow_provider_hpcai.policy import airflow_policy
    from airflow_provider_hpcai.policy.settings import reset_settings
    from airflow_provider_hpcai.resources import Resources

    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_MODE", "advise")
    reset_settings()

    class Task:
        task_id = "t"
        job_resources = Resources(ntasks=2, time_limit=600)

    task = Task()
    airflow_policy.task_policy(task)
    assert task.hpcai_decision["mode"] == "advise"
    assert "no model" in task.hpcai_decision["reason"]
    assert "airflow_provider_hpcai.advisor.cache" in sys.modules
    reset_settings()
