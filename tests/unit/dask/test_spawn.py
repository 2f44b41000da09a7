"""Local worker processes start in a process whose Airflow database access is blocked (dask/spawn.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_hpcai.dask.spawn import AS_LIBRARY, SpawnEnviron

ROOT = Path(__file__).resolve().parents[3]

#: What an Airflow 3 task process looks like to multiprocessing: ``__main__`` is the ``airflow``
#: command (it imports airflow at the top), and the task runner blocked the database URL.
TASK_LIKE_MAIN = """
from airflow.__main__ import main  # the first line of the `airflow` console script

if __name__ == "__main__":
    import os
    from airflow.sdk.execution_time.supervisor import block_orm_access

    from airflow_provider_hpcai.hooks.dask import DaskHook

    block_orm_access()  # what the task runner does before running a task
    hook = DaskHook(extras={"cluster": "local", "n_workers": 1, "memory_limit": "512MiB",
                            "dashboard_address": None})
    with hook.get_client() as client:
        print("RESULT", client.submit(sum, [1, 2]).result(), client.run(os.getpid) != {}, flush=True)
        print("DURING", os.environ.get("_AIRFLOW__AS_LIBRARY"), flush=True)
    print("AFTER", os.environ.get("_AIRFLOW__AS_LIBRARY"), flush=True)
"""


@pytest.fixture()
def environ() -> dict[str, str]:
    return {"PATH": "/usr/bin"}


def test_set_while_applied_and_removed_after(environ: dict[str, str]) -> None:
    spawn = SpawnEnviron(environ)
    spawn.apply()
    spawn.apply()  # idempotent
    assert environ[AS_LIBRARY] == "1"
    spawn.restore()
    spawn.restore()
    assert environ == {"PATH": "/usr/bin"}


def test_a_value_someone_else_set_is_left_alone(environ: dict[str, str]) -> None:
    environ[AS_LIBRARY] = "yes"
    spawn = SpawnEnviron(environ)
    spawn.apply()
    spawn.restore()
    assert environ[AS_LIBRARY] == "yes"


def test_the_last_of_two_clusters_removes_it(environ: dict[str, str]) -> None:
    first, second = SpawnEnviron(environ), SpawnEnviron(environ)
    first.apply()
    second.apply()
    first.restore()
    assert environ[AS_LIBRARY] == "1", "the second cluster still spawns workers"
    second.restore()
    assert AS_LIBRARY not in environ


def test_worker_processes_start_under_a_task_runners_blocked_database(tmp_path: Path) -> None:
    """The default local cluster in a process like an Airflow task's: workers start and compute.

    Without the fix every worker process re-ran the ``__main__`` file, imported airflow, tried to
    configure the ORM from ``airflow-db-not-allowed:///`` and died: "Nanny failed to start".
    """
    script = tmp_path / "airflow_like_main.py"
    script.write_text(textwrap.dedent(TASK_LIKE_MAIN))
    env = {k: v for k, v in os.environ.items() if k != AS_LIBRARY}
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "RESULT 3 True" in proc.stdout, out[-4000:]
    assert "Nanny failed" not in out and "Could not parse SQLAlchemy URL" not in out
    assert "DURING 1" in proc.stdout and "AFTER None" in proc.stdout, "set only while the cluster runs"
