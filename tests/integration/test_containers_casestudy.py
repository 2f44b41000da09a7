"""The climate case study with ``container=`` (DAG param ``container``), on the local backend and on
the Slurm cluster, with `airflow dags test`: its rainfall figures and report equal the bare-metal
run's. The stage image holds the kernels' dependencies; the kernels' source is mounted read-only
and put on ``PYTHONPATH`` inside.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_service
from tests.integration.test_casestudies import CLIMATE, dags_test

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _container(image: Path) -> dict[str, Any]:
    return {"image": str(image / "bundle"),
            "mounts": [f"{ROOT / 'simulation_kernels'}:/opt/hpcai-src/simulation_kernels"],
            "env": {"PYTHONPATH": "/opt/hpcai-src", "NUMBA_NUM_THREADS": "1"}}


def _figures(folder: str) -> dict[str, Any]:
    """rainfall.json without the paths that name the run's own folders (plots by file name)."""
    data = json.loads(Path(folder, "rainfall.json").read_text())
    data["plots"] = {k: Path(v).name for k, v in (data.get("plots") or {}).items()}  # the same maps, own folders
    return {k: v for k, v in data.items() if not (isinstance(v, str) and v.startswith("/"))}


def _report_text(folder: str) -> str:
    """The report's text (figures and tables), with the run's folders and run ids taken out."""
    html = next(Path(folder).glob("*.html")).read_text()
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<png>", html)
    html = html.replace(folder, "<folder>")
    return re.sub(r"(/tmp/[^\s\"'<]*|manual__[^\s\"'<]*|\d{4}-\d\d-\d\dT[\d:.+]+)", "<x>", html)


@pytest.mark.parametrize("where", ["local", "slurm"])
def test_climate_in_the_container_equals_bare_metal(where: str, airflow_home: str, tmp_path: Path,
                                                     stage_image: Path, request: pytest.FixtureRequest) -> None:
    need_service(shutil.which("runc") is not None, "runc")
    conf: dict[str, Any] = dict(CLIMATE)
    if where == "slurm":
        request.getfixturevalue("slurm_env")
        conf.update(backend="slurm", conn_id="slurm_local", workdir=request.getfixturevalue("shared_workdir"))
    log_bare, bare = dags_test(airflow_home, "climate_adaptive", conf, tmp_path / "bare")
    log_ct, contained = dags_test(airflow_home, "climate_adaptive", {**conf, "container": _container(stage_image)},
                                  tmp_path / "ct")
    # It ran in the image: the image's python, its mpiexec forking both ranks in the one container.
    assert "mpiexec -launcher fork -n 2 python -m mpi4py -m simulation_kernels.climate" in log_ct, log_ct[-4000:]
    assert "-launcher fork" not in log_bare
    figures = _figures(contained)
    assert figures == _figures(bare) and figures["n_analysed"] == figures["n_storms"] >= 1
    assert _report_text(contained) == _report_text(bare)
