"""Every DAG file in dags/ parses without import errors, quickly, and without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
#: Libraries a DAG file must never pay for at parse time (kernels and tools import them lazily).
HEAVY = ("numba", "mpi4py", "mlflow", "statsmodels", "dask", "distributed", "simulation_kernels", "matplotlib")


def test_there_are_example_dags() -> None:
    assert len(DAG_FILES) >= 2


def test_dagbag_has_no_import_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("HPCAI_TEMPLATES_DIR", str(tmp_path / "templates"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert {"hpcai_slurm_example"} <= set(bag.dag_ids)
    for dag in bag.dags.values():
        assert dag.tags, f"{dag.dag_id} should carry tags for the UI"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_without_heavy_imports(dag_file: Path, tmp_path: Path) -> None:
    """Parse each file in a fresh interpreter and list the heavy modules it pulled in."""
    code = (
        "import json, runpy, sys, time\n"
        f"t = time.perf_counter(); runpy.run_path({str(dag_file)!r}); dt = time.perf_counter() - t\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'heavy': heavy, 'seconds': dt}))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path),
           "HPCAI_TEMPLATES_DIR": str(tmp_path / "templates"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"{dag_file.name} imports {report['heavy']} at parse time"
