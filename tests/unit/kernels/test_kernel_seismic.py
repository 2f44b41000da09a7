"""Seismic kernel: exact standing wave through the solver, sponge, scenario scaling, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulation_kernels.common.decomp import Decomposition
from simulation_kernels.engine import CpuOps
from simulation_kernels.params import validate
from simulation_kernels.seismic.model import ricker, simulate, velocity_model
from simulation_kernels.stencils import wave_mode_cos

SMALL = {
    "nx": 64,
    "nz": 48,
    "dx_m": 10.0,
    "steps": 150,
    "sponge_cells": 12,
    "f0_hz": 25.0,
    "receiver_depth_m": 30.0,
    "receiver_spacing": 2,
}


def _sim(params: dict, **kw: object) -> tuple[dict, Decomposition, dict]:
    p = validate("seismic", params)
    dec = Decomposition(p["nz"], p["nx"], (1, 1), 4, p["boundary"] == "periodic")
    return simulate(p, dec, CpuOps(dec), **kw), dec, p  # type: ignore[arg-type]


def test_solver_reproduces_the_exact_discrete_standing_wave() -> None:
    params = {
        "nx": 40,
        "nz": 32,
        "boundary": "periodic",
        "amplitude": 0.0,
        "precision": "float64",
        "steps": 100,
        "dt_s": 0.5 * 10.0 / 2000.0,
    }
    p = validate("seismic", params)
    j, i = np.arange(32)[:, None], np.arange(40)[None, :]
    mode = np.cos(2 * np.pi * 3 * i / 40) * np.sin(2 * np.pi * 2 * j / 32)
    omega = np.arccos(wave_mode_cos(0.25, 3, 2, 40, 32))
    out, dec, _ = _sim(params, initial=(np.cos(omega) * mode, mode))  # u(-dt) = u(dt) by symmetry
    np.testing.assert_allclose(dec.interior(out["u"]), np.cos(omega * p["steps"]) * mode, atol=1e-10)


def test_sponge_absorbs_what_a_periodic_box_keeps() -> None:
    base = {**SMALL, "steps": 400, "precision": "float64", "source_z_m": 240.0}
    absorbing, dec, _ = _sim(base)
    periodic, _, _ = _sim({**base, "boundary": "periodic"})
    e_abs = float((dec.interior(absorbing["u"]) ** 2).sum())
    e_per = float((dec.interior(periodic["u"]) ** 2).sum())
    assert e_per > 0 and e_abs < 0.05 * e_per


def test_amplitude_is_linear_in_the_magnitude_scaling() -> None:
    a, dec, _ = _sim({**SMALL, "magnitude": 4.0})
    b, _, _ = _sim({**SMALL, "magnitude": 5.0})
    pa, pb = dec.interior(a["peak"]), dec.interior(b["peak"])
    assert pa.max() > 0
    np.testing.assert_allclose(pb, pa * 10**1.5, rtol=1e-4, atol=1e-6 * pb.max())


def test_receivers_record_the_field_at_their_positions() -> None:
    out, _, p = _sim(SMALL)
    cols, seis = out["receivers"]
    assert list(cols) == list(range(0, 64, 2))
    assert seis.shape == (32, p["steps"])
    np.testing.assert_array_equal(seis[:, -1], out["u"][3 + 4, cols + 4])
    assert np.abs(seis).max() > 0


def test_velocity_models() -> None:
    p = validate(
        "seismic",
        {"velocity_model": "basin", "nx": 100, "nz": 50, "basin_width_m": 400.0, "basin_depth_m": 100.0},
    )
    vp = velocity_model(p, np.arange(50), np.arange(100))
    assert vp[0, 50] == 600.0 and vp[0, 0] == 2000.0 and vp[20, 50] == 2000.0
    p = validate(
        "seismic", {"velocity_model": "layered", "layers": [[200.0, 3000.0], [100.0, 2500.0]], "nz": 40}
    )
    vp = velocity_model(p, np.arange(40), np.arange(16))
    assert vp[5, 0] == 2000.0 and vp[15, 0] == 2500.0 and vp[25, 0] == 3000.0


def test_soft_basin_changes_the_surface_motion() -> None:
    hom, _, _ = _sim(SMALL)
    basin, _, _ = _sim({**SMALL, "velocity_model": "basin", "basin_width_m": 300.0, "basin_depth_m": 120.0})
    assert not np.allclose(hom["receivers"][1], basin["receivers"][1])


def test_ricker_peaks_at_its_delay() -> None:
    f0 = 10.0
    assert ricker(1.2 / f0, f0) == pytest.approx(1.0)
    assert abs(ricker(0.0, f0)) < 1e-4  # starts from (almost) rest


def test_cli_outputs(run_kernel) -> None:
    proc, out = run_kernel(
        "simulation_kernels.seismic", {**SMALL, "velocity_model": "basin", "progress_lines": 4}
    )
    assert proc.returncode == 0, proc.stderr
    assert len([ln for ln in proc.stdout.splitlines() if ln.startswith("progress:")]) <= 5
    s = json.loads((out / "summary.json").read_text())
    assert s["finite"] and s["n_receivers"] == 32 and s["pgv_surface_max"] > 0
    assert s["courant"] <= 0.5546
    assert s["loop_s"] > 0 and s["gpoint_s"] > 0
    seis = np.load(out / "seismograms.npy")
    assert seis.shape == (32, 150) and seis.dtype == np.float32
    assert np.load(out / "pgv_map.npy").shape == (48, 64)
    pgv = np.load(out / "pgv_surface.npy")
    assert pgv.max() == pytest.approx(s["pgv_surface_max"])


def test_cli_refuses_an_unstable_step(run_kernel) -> None:
    proc, out = run_kernel("simulation_kernels.seismic", {**SMALL, "dt_s": 0.01})
    assert proc.returncode == 2
    assert "dt_s=0.01 is unstable" in proc.stderr and "dt_s <= 0.00277" in proc.stderr
    assert not (out / "summary.json").exists()
