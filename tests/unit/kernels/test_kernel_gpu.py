"""The CUDA path, run on the CPU by numba's CUDA simulator, against the CPU kernels."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO, kernel_env

# Runs in a subprocess: NUMBA_ENABLE_CUDASIM must be set before numba is imported.
SCRIPT = r"""
import json, numpy as np
from simulation_kernels.common.decomp import Decomposition
from simulation_kernels.engine import make_ops
from simulation_kernels.gpu import resolve_device
from simulation_kernels.params import validate
from simulation_kernels.climate.model import simulate as climate
from simulation_kernels.seismic.model import simulate as seismic

res = {"device": resolve_device("cuda", 1), "auto": resolve_device("auto", 1)}
def diff(a, b):
    return float(np.abs(a - b).max()), float(np.abs(a).max())

p = validate("climate", {"nx": 16, "ny": 12, "steps": 4, "dx_km": 40.0, "feature_radius_km": 150.0,
                         "initial_rh": 1.05})
runs = {}
for dev in ("cpu", "cuda"):
    dec = Decomposition(12, 16, (1, 1), 1, True)
    runs[dev] = climate(p, dec, make_ops(dev, dec))
res["climate"] = {k: diff(runs["cpu"][k], runs["cuda"][k]) for k in ("T", "W", "rain", "peak")}
res["climate_budget"] = runs["cuda"]["budget"]["water_relative_error"]

for bnd in ("absorbing", "periodic"):
    p = validate("seismic", {"nx": 24, "nz": 16, "steps": 8, "sponge_cells": 4, "boundary": bnd,
                             "source_z_m": 60.0, "source_x_m": 30.0, "f0_hz": 80.0, "receiver_depth_m": 20.0,
                             "receiver_spacing": 3})
    for dev in ("cpu", "cuda"):
        dec = Decomposition(16, 24, (1, 1), 4, bnd == "periodic")
        runs[dev] = seismic(p, dec, make_ops(dev, dec))
    res["seismic_" + bnd] = {k: diff(runs["cpu"][k], runs["cuda"][k]) for k in ("u", "u_prev", "peak")}
    res["seismic_" + bnd]["seis"] = diff(runs["cpu"]["receivers"][1], runs["cuda"]["receivers"][1])

dec = Decomposition(6, 7, (1, 1), 2, True)
a = np.arange(10 * 11, dtype=np.float64).reshape(10, 11)
ops = make_ops("cuda", dec)
d = ops.asarray(a.copy())
ops.exchange(d)
dec.exchange(a)
res["exchange"] = float(np.abs(ops.to_host(d) - a).max())
u = np.random.default_rng(0).random((9, 10))
o_cpu, o_gpu = np.zeros_like(u), ops.asarray(np.zeros_like(u))
make_ops("cpu", dec).heat_step(u, o_cpu, 0.2, 0.1)
ops.heat_step(ops.asarray(u), o_gpu, 0.2, 0.1)
res["heat"] = diff(o_cpu, ops.to_host(o_gpu))
print("RESULT " + json.dumps(res))
"""


@pytest.fixture(scope="module")
def simulated() -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=kernel_env(NUMBA_ENABLE_CUDASIM="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def test_cuda_is_selected_explicitly_but_never_auto_on_the_simulator(simulated: dict) -> None:
    assert simulated["device"] == "cuda"
    assert simulated["auto"] == "cpu"


def test_climate_on_cuda_matches_cpu(simulated: dict) -> None:
    for name, (err, scale) in simulated["climate"].items():
        assert scale > 0, name
        assert err <= 1e-12 * max(scale, 1.0), (name, err)
    assert simulated["climate"]["rain"][1] > 0  # it rained: the condensation branch ran
    assert simulated["climate_budget"] < 1e-12


@pytest.mark.parametrize("boundary", ["absorbing", "periodic"])
def test_seismic_on_cuda_matches_cpu(simulated: dict, boundary: str) -> None:
    for name, (err, scale) in simulated["seismic_" + boundary].items():
        assert scale > 0, name
        assert err <= 1e-5 * scale, (name, err, scale)  # float32


def test_periodic_ghosts_and_heat_step_on_cuda(simulated: dict) -> None:
    assert simulated["exchange"] == 0.0
    err, scale = simulated["heat"]
    assert err <= 1e-14 * scale


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    code = (
        "from simulation_kernels.gpu import resolve_device\n"
        "try:\n    resolve_device('cuda', 1)\nexcept ValueError as e:\n    print('ERR', e)\n"
        "else:\n    print('GPU')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=kernel_env(NUMBA_ENABLE_CUDASIM="0"),
    )
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.startswith("GPU"):
        pytest.skip("a real GPU is present")
    assert "device='cuda' but no CUDA GPU is available" in proc.stdout


def test_cli_with_cuda_but_no_gpu_exits_2(run_kernel) -> None:
    proc, _ = run_kernel("simulation_kernels.climate", {"nx": 16, "ny": 16, "steps": 2, "device": "cuda"})
    if proc.returncode == 0:
        pytest.skip("a real GPU is present")
    assert proc.returncode == 2 and "error: device='cuda' but no CUDA GPU is available" in proc.stderr
    assert "Traceback" not in proc.stderr
