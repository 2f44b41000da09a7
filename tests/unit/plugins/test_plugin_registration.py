"""The AirflowPlugin object and its discovery by Airflow's plugins manager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_pages_appear_in_the_navigation():
    from airflow_provider_hpcai.plugins.plugin import HpcAiPlugin

    views = {v["name"]: v for v in HpcAiPlugin.external_views}
    assert set(views) == {"Workflow Templates", "Compose Workflow", "HPC Resources", "HPC Jobs"}
    assert views["Workflow Templates"]["href"] == "/hpcai/templates"
    assert views["Compose Workflow"]["href"] == "/hpcai/compose"
    assert all(v["url_route"] for v in views.values())
    assert {n for n, v in views.items() if v["destination"] == "nav"} == {"Workflow Templates", "Compose Workflow",
                                                                          "HPC Resources"}
    # A tab on every DAG run; Airflow's UI fills in {DAG_ID} and {RUN_ID}.
    assert views["HPC Jobs"]["destination"] == "dag_run"
    assert views["HPC Jobs"]["href"] == "/hpcai/monitor?dag_id={DAG_ID}&run_id={RUN_ID}"


def test_fastapi_app_is_built_on_demand():
    from fastapi import FastAPI

    from airflow_provider_hpcai.plugins.plugin import HpcAiPlugin

    plugin = HpcAiPlugin()
    apps = plugin.fastapi_apps
    assert apps[0]["url_prefix"] == "/hpcai" and isinstance(apps[0]["app"], FastAPI)
    assert plugin.fastapi_apps is apps


def test_airflow_discovers_the_plugin_from_the_plugins_folder(tmp_path):
    code = (
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "apps, _ = plugins_manager.get_fastapi_plugins()\n"
        "views, _ = plugins_manager._get_ui_plugins()\n"
        "print(json.dumps({'apps': [a['url_prefix'] for a in apps], 'views': [v['name'] for v in views],"
        " 'heavy': 'airflow_provider_hpcai.plugins.app' in sys.modules}))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "/hpcai" in found["apps"]
    assert {"Workflow Templates", "HPC Resources"} <= set(found["views"])


def test_loading_the_plugin_does_not_build_the_app(tmp_path):
    code = (
        "import sys\n"
        "from airflow_provider_hpcai.plugins.plugin import HpcAiPlugin\n"
        "HpcAiPlugin()\n"
        "print('airflow_provider_hpcai.plugins.app' in sys.modules, 'fastapi' in sys.modules)\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-2:] == ["False", "False"], out.stderr[-2000:]
