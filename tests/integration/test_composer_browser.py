"""Compose a workflow by drag and drop and watch it run: a real Airflow, headless Chromium, Playwright.

Starts ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` on SQLite in a
temporary AIRFLOW_HOME, then runs ``ui/e2e/compose.e2e.mjs`` (npm ``playwright-core`` driving
Debian's chromium). The script drags three stages onto the canvas, connects them, sets
parameters, provokes and fixes a validation error, saves, creates the DAG, triggers it on the
local backend and sees it succeed in the run's "HPC Jobs" tab; then saves a case study unchanged
and uses the editor by keyboard only. Screenshots go to ``out/screenshots/composer-*.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import need_service
from tests.support import airflow_components, api_server_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"
SHOTS = ROOT / "out" / "screenshots"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = shutil.which("chromium")
CASE_STUDY = ROOT / "airflow_provider_hpcai/templates/builtin/climate-adaptive/template.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_wait = wait_until


def _playwright() -> bool:
    """``ui/node_modules`` with playwright-core, installed from the lockfile when missing (``npm ci``)."""
    if (UI / "node_modules" / "playwright-core").is_dir():
        return True
    if not shutil.which("npm"):
        return False
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI, capture_output=True, text=True, timeout=300)
    return done.returncode == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_service(bool(CHROMIUM and shutil.which("node")), "Debian chromium and Node.js")
    need_service(_playwright(), "npm playwright-core (cd ui && npm ci)")
    home = tmp_path_factory.mktemp("airflow-home")
    dags, plugins, repo_root = home / "dags", home / "plugins", home / "templates-repo"
    dags.mkdir()
    plugins.mkdir()
    shutil.copy(ROOT / "dags" / "hpcai_template_instances.py", dags)
    shutil.copy(ROOT / "plugins" / "hpcai_plugin.py", plugins)
    password = secrets.token_urlsafe(12)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = api_server_env(
        home, port, dags=dags, plugins=plugins, password=password,
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
        AIRFLOW__HPCAI__LOCAL_WORK_DIR=str(home / "jobs"),
        AIRFLOW__HPCAI__ADVISOR_HOME=str(home / "advisor"),
        AIRFLOW__HPCAI__POLL_INTERVAL="1",
        HPCAI_TEMPLATES_DIR=str(repo_root),
        MLFLOW_DISABLE_TELEMETRY="true",
        # The analysis' Dask cluster: threads in the task's process (worker processes spawned from
        # an Airflow task re-run the `airflow` entry point and fail to start there).
        AIRFLOW_CONN_DASK_DEFAULT=json.dumps({"conn_type": "dask", "extra": {"cluster": "local", "n_workers": 1,
                                                                            "processes": False}}),
    )
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    names = ("api-server", "scheduler", "dag-processor", "triggerer")
    with airflow_components(AIRFLOW, names, env, home, base, log_tail=3000):
        yield {"base": base, "password": password, "home": home, "repo_root": repo_root}


def _token(stack: dict[str, Any]) -> str:
    response = httpx.post(f"{stack['base']}/auth/token", json={"username": "admin", "password": stack["password"]},
                          timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def test_compose_save_run_and_watch(stack):
    env = {**os.environ, "BASE": stack["base"], "PASSWORD": stack["password"], "TOKEN": _token(stack),
           "SHOTS": str(SHOTS), "CHROMIUM": CHROMIUM or "", "CASE_STUDY_FILE": str(CASE_STUDY)}
    started = time.monotonic()
    done = subprocess.run(["node", str(UI / "e2e" / "compose.e2e.mjs")], env=env, capture_output=True, text=True,
                          timeout=480)
    print(done.stderr[-6000:])
    seen = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if done.returncode != 0:
        for name in ("scheduler", "triggerer", "dag-processor"):
            print(f"--- {name} log ---\n" + (stack["home"] / f"{name}.log").read_text(errors="replace")[-3000:])
    assert done.returncode == 0, f"the browser script failed after {time.monotonic() - started:.0f} s: {seen}"

    # Live validation showed each problem on its node, and saving waited for a valid workflow.
    assert "not connected" in seen["unconnected"]
    assert "sponge_cells" in seen["provoked"] and seen["save_disabled_while_invalid"] is True
    # Saved as a new immutable version, with who composed it.
    assert seen["save"]["name"] == "composed-e2e" and seen["save"]["version"] == "1.0.0"
    assert seen["save"]["provenance"]["composed_by"] == "admin"
    published = stack["repo_root"] / "templates" / "composed-e2e" / "1.0.0" / "template.yaml"
    assert published.read_text() == seen["save"]["manifest"]
    assert "kind: dask_analysis" in seen["save"]["manifest"] and "sponge_cells: 8" in seen["save"]["manifest"]
    # The DAG ran on the local backend and the monitor showed every job succeed, with the analysis' CSV.
    rows = {row[0]: row for row in seen["monitor_rows"]}
    assert set(rows) == {"assembly_line_1", "seismic_1", "dask_analysis_1"}
    assert all(row[1] == "success" for row in rows.values())
    assert rows["seismic_1"][2] == "local" and "COMPLETED" in rows["seismic_1"][3]
    assert "kernel" in seen["csv_header"] and seen["chart_width"] > 100  # the CSV as a table, the chart as an image
    # A case study opened in the editor and saved unchanged gives its manifest back byte for byte.
    assert seen["case_study_unchanged"] is True
    # Keyboard only: added, connected, configured and saved.
    assert seen["keyboard_save"]["name"] == "keyboard-e2e" and seen["keyboard_save"]["unchanged"] is False
    assert "depends_on:\n  - assembly_line_1" in seen["keyboard_save"]["manifest"]
    assert "horizon: 300" in seen["keyboard_save"]["manifest"]
    for name in ("composer-01-three-stages", "composer-02-validation-error", "composer-06-monitor-success"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
