"""Kernels under ``mpiexec``: 1, 2 and 4 ranks give the same fields (to 1e-12; in fact bit-identical).

Four ranks on a square grid make a 2 x 2 process grid, so every rank has column neighbours and
the column halos really go through the contiguous buffers. mpich's ``mpiexec`` oversubscribes
the 2 cores without flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).parent / "mpiexec"

if not MPIEXEC.exists():  # pragma: no cover - depends on the environment
    pytest.skip(f"no mpiexec next to {sys.executable} (pip install mpich mpi4py)", allow_module_level=True)
pytest.importorskip("mpi4py")


def run_mpi(
    module: str, params: dict[str, Any], ranks: int, tmp: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    cfg = tmp / f"{module.rsplit('.', 1)[-1]}_{ranks}.json"
    cfg.write_text(json.dumps(params))
    out = tmp / f"out_{module.rsplit('.', 1)[-1]}_{ranks}"
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_NUM_THREADS="1")
    cmd = [
        str(MPIEXEC),
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "mpi4py",
        "-m",
        module,
        "--config",
        str(cfg),
        "--output",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    return proc, out


def _same(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        x, y = np.load(a / name), np.load(b / name)
        assert x.shape == y.shape, name
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-12, err_msg=name)


CLIMATE = {"nx": 32, "ny": 32, "dx_km": 30.0, "steps": 40, "feature_radius_km": 150.0, "progress_lines": 4}
SEISMIC = {
    "nx": 64,
    "nz": 48,
    "steps": 120,
    "sponge_cells": 10,
    "f0_hz": 25.0,
    "receiver_depth_m": 30.0,
    "source_x_m": 200.0,
    "source_z_m": 250.0,
    "velocity_model": "basin",
    "basin_width_m": 300.0,
    "basin_depth_m": 100.0,
    "progress_lines": 4,
}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mpi")


def test_climate_1_2_4_ranks_identical(tmp: Path) -> None:
    outs = {}
    for ranks in (1, 2, 4):
        proc, outs[ranks] = run_mpi("simulation_kernels.climate", CLIMATE, ranks, tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count("progress: step 40/40 (100%)") == 1  # rank 0 prints alone
    summaries = {r: json.loads((o / "summary.json").read_text()) for r, o in outs.items()}
    assert summaries[4]["decomposition"] == [2, 2] and summaries[2]["decomposition"] == [2, 1]
    assert summaries[4]["ranks"] == 4
    for ranks in (2, 4):
        _same(
            outs[1],
            outs[ranks],
            ["rain_accum.npy", "rain_peak_rate.npy", "temperature.npy", "moisture.npy", "storm_labels.npy"],
        )
        assert summaries[ranks]["storms"] == summaries[1]["storms"]
        assert summaries[ranks]["budget"]["water_relative_error"] < 1e-12
    assert summaries[1]["n_storms"] >= 1


@pytest.mark.parametrize("boundary", ["absorbing", "periodic"])
def test_seismic_1_2_4_ranks_identical(tmp: Path, boundary: str) -> None:
    params = {**SEISMIC, "boundary": boundary}
    sub = tmp / boundary
    sub.mkdir(exist_ok=True)
    outs = {}
    for ranks in (1, 2, 4):
        proc, outs[ranks] = run_mpi("simulation_kernels.seismic", params, ranks, sub)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((outs[4] / "summary.json").read_text())["decomposition"] == [2, 2]
    for ranks in (2, 4):
        _same(outs[1], outs[ranks], ["seismograms.npy", "pgv_map.npy", "wavefield.npy", "pgv_surface.npy"])
    assert np.abs(np.load(outs[1] / "seismograms.npy")).max() > 0


def test_assembly_line_replications_split_over_ranks(tmp: Path) -> None:
    params = {"replications": 5, "horizon": 3000.0, "warmup": 100.0}
    one, out1 = run_mpi("simulation_kernels.assembly_line", params, 1, tmp)
    two, out2 = run_mpi("simulation_kernels.assembly_line", params, 2, tmp)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    r1 = json.loads((out1 / "replications.json").read_text())
    r2 = json.loads((out2 / "replications.json").read_text())
    assert r1 == r2 and len(r2["replications"]) == 5


def test_rank_count_that_does_not_divide_the_grid(tmp: Path) -> None:
    proc, out = run_mpi("simulation_kernels.climate", CLIMATE, 3, tmp)
    assert proc.returncode != 0
    assert proc.stderr.count("3 ranks do not divide the 32x32 grid") == 1
    assert "rank counts that do (up to 16): 1, 2, 4, 8, 16" in proc.stderr
    assert not (out / "summary.json").exists()
