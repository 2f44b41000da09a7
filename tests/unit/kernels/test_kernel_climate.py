"""Climate kernel: closed budgets, exact diffusion, storm detection, CLI and storm analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulation_kernels.climate.model import simulate
from simulation_kernels.climate.rainfall import gumbel_levels, upsample
from simulation_kernels.climate.storms import detect_storms
from simulation_kernels.common.decomp import Decomposition
from simulation_kernels.engine import CpuOps
from simulation_kernels.params import validate
from simulation_kernels.stencils import heat_decay_factor

SMALL = {"nx": 48, "ny": 40, "dx_km": 25.0, "steps": 60, "feature_radius_km": 150.0}


def _sim(params: dict, **kw: object) -> tuple[dict, Decomposition]:
    p = validate("climate", params)
    dec = Decomposition(p["ny"], p["nx"], (1, 1), 1, True)
    return simulate(p, dec, CpuOps(dec), **kw), dec  # type: ignore[arg-type]


def test_water_and_moist_energy_budgets_close() -> None:
    out, dec = _sim(SMALL)
    b = out["budget"]
    assert b["rain_total_mm"] > 1.0 and b["evaporation_total_mm"] > 1.0  # the physics really ran
    assert b["water_relative_error"] < 1e-12
    assert b["energy_relative_error"] < 1e-12
    rain = dec.interior(out["rain"])
    assert rain.min() >= 0.0 and np.isfinite(rain).all()


def test_budget_check_detects_a_leak() -> None:
    out, dec = _sim(SMALL)
    w = dec.interior(out["W"]).sum() + dec.interior(out["rain"]).sum() - dec.interior(out["evap"]).sum()
    assert w == pytest.approx(out["budget"]["water_initial_mm"], rel=1e-12)
    assert dec.interior(out["W"]).sum() != pytest.approx(out["budget"]["water_initial_mm"], rel=1e-6)


def test_transport_without_wind_is_exact_discrete_diffusion() -> None:
    params = {
        **SMALL,
        "wind_u_m_s": 0.0,
        "wind_v_m_s": 0.0,
        "shear_u_m_s": 0.0,
        "shear_v_m_s": 0.0,
        "evaporation_mm_h": 0.0,
        "steps": 40,
    }
    p = validate("climate", params)
    dec = Decomposition(p["ny"], p["nx"], (1, 1), 1, True)
    j, i = np.arange(p["ny"])[:, None], np.arange(p["nx"])[None, :]
    mode = np.sin(2 * np.pi * 2 * i / p["nx"]) * np.sin(2 * np.pi * 1 * j / p["ny"])
    state = {"T": dec.allocate(), "W": dec.allocate(), "tsurf": dec.allocate()}
    dec.interior(state["T"])[...] = p["t0_k"]
    dec.interior(state["tsurf"])[...] = p["t0_k"]
    dec.interior(state["W"])[...] = 10.0 + mode  # far below saturation (40 mm): no rain
    out = simulate(p, dec, CpuOps(dec), state=state)
    k = p["diffusivity_m2_s"] * p["dt_s"] / (p["dx_km"] * 1000.0) ** 2
    g = heat_decay_factor(k, k, 2, 1, p["nx"], p["ny"])
    np.testing.assert_allclose(dec.interior(out["W"]), 10.0 + g ** p["steps"] * mode, atol=1e-12)
    assert g ** p["steps"] < 0.99
    assert dec.interior(out["rain"]).max() == 0.0


def test_uniform_wind_moves_a_blob_downstream() -> None:
    params = {
        **SMALL,
        "wind_u_m_s": 20.0,
        "wind_v_m_s": 0.0,
        "shear_u_m_s": 0.0,
        "shear_v_m_s": 0.0,
        "evaporation_mm_h": 0.0,
        "diffusivity_m2_s": 0.0,
        "steps": 20,
    }
    p = validate("climate", params)
    dec = Decomposition(p["ny"], p["nx"], (1, 1), 1, True)
    state = {"T": dec.allocate(), "W": dec.allocate(), "tsurf": dec.allocate()}
    dec.interior(state["T"])[...] = p["t0_k"]
    dec.interior(state["tsurf"])[...] = p["t0_k"]
    dec.interior(state["W"])[...] = 5.0
    dec.interior(state["W"])[20, 10] = 15.0
    out = simulate(p, dec, CpuOps(dec), state=state)
    w = dec.interior(out["W"])
    moved = p["steps"] * p["dt_s"] * 20.0 / (p["dx_km"] * 1000.0)
    col = (np.arange(p["nx"]) * (w[20] - 5.0)).sum() / (w[20] - 5.0).sum()
    assert 10 < (10 + moved) < p["nx"]  # no wrap-around: the centre of mass is meaningful
    assert col == pytest.approx(10 + moved, abs=0.5)


def test_runs_are_deterministic_and_seed_dependent() -> None:
    a, _ = _sim(SMALL)
    b, _ = _sim(SMALL)
    c, _ = _sim({**SMALL, "seed": 7})
    np.testing.assert_array_equal(a["rain"], b["rain"])
    assert not np.array_equal(a["rain"], c["rain"])


def test_storm_detection_labels_cells_and_joins_across_the_periodic_edge() -> None:
    rate = np.zeros((20, 30))
    rate[5:8, 10:14] = 3.0  # 12 cells
    rate[6, 12] = 9.0
    rate[15:18, 28:30] = 2.0  # crosses the east edge ...
    rate[15:18, 0:2] = 2.0  # ... 12 cells in all
    rate[1, 1] = 5.0  # a single cell: below min_cells
    accum = rate * 2.0
    storms, labels = detect_storms(rate, accum, threshold=1.0, min_cells=2, max_storms=10, dx_km=2.0)
    assert [s["n_cells"] for s in storms] == [12, 12]
    first = storms[0]  # the bigger rain volume comes first
    assert first["max_rate_mm_h"] == 9.0 and first["area_km2"] == 48.0
    assert first["bbox"] == {"row0": 5, "row1": 8, "col0": 10, "col1": 14}
    assert first["centroid_row"] == pytest.approx(6.0) and first["centroid_col"] == pytest.approx(11.5)
    edge = storms[1]
    assert edge["bbox"]["col1"] - edge["bbox"]["col0"] == 4  # unwrapped, not split
    assert edge["centroid_col"] == pytest.approx(29.5) or edge["centroid_col"] == pytest.approx(-0.5 % 30)
    assert labels[1, 1] == 0 and labels[16, 0] == labels[16, 29] == 2
    capped, _ = detect_storms(rate, accum, threshold=1.0, min_cells=2, max_storms=1, dx_km=2.0)
    assert len(capped) == 1


def test_cli_writes_fields_storms_and_bounded_progress(run_kernel) -> None:
    proc, out = run_kernel("simulation_kernels.climate", {**SMALL, "steps": 80, "progress_lines": 5})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("progress:")]
    assert lines[-1] == "progress: step 80/80 (100%)" and 4 <= len(lines) <= 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_storms"] == len(summary["storms"]) >= 1
    assert summary["budget"]["water_relative_error"] < 1e-12
    for name in ("rain_accum", "rain_peak_rate", "storm_labels", "temperature", "moisture"):
        assert np.load(out / f"{name}.npy").shape == (40, 48)
    labels = np.load(out / "storm_labels.npy")
    assert sorted(set(np.unique(labels)) - {0}) == [s["id"] for s in summary["storms"]]


def test_cli_bad_input_exits_2_with_a_message(run_kernel, tmp_path) -> None:
    proc, _ = run_kernel("simulation_kernels.climate", {"nx": -3})
    assert proc.returncode == 2 and "error: climate: nx must be >= 8, got -3" in proc.stderr
    proc, _ = run_kernel(
        "simulation_kernels.climate",
        None,
        "--config",
        str(tmp_path / "nope.json"),
        "--output",
        str(tmp_path / "o"),
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("nx: [unclosed\n")
    proc, _ = run_kernel(
        "simulation_kernels.climate", None, "--config", str(bad), "--output", str(tmp_path / "o")
    )
    assert proc.returncode == 2 and "is not valid yaml" in proc.stderr


def test_rainfall_analysis_of_one_storm(run_kernel, tmp_path) -> None:
    proc, out = run_kernel("simulation_kernels.climate", {**SMALL, "steps": 80})
    assert proc.returncode == 0, proc.stderr
    storm = json.loads((out / "summary.json").read_text())["storms"][0]
    proc, _ = run_kernel(
        "simulation_kernels.climate.rainfall",
        None,
        "--input",
        str(out),
        "--storm",
        str(storm["id"]),
        "--output",
        str(tmp_path / "a"),
        "--refine",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "a" / f"storm_{storm['id']}.json").read_text())
    assert res["rain_volume_m3_coarse"] == pytest.approx(storm["rain_volume_m3"], rel=1e-9)
    assert res["rain_volume_m3_refined"] == pytest.approx(res["rain_volume_m3_coarse"], rel=0.1)
    assert res["max_accum_mm_refined"] <= storm["max_accum_mm"] + 1e-9
    levels = list(res["gumbel"]["levels_mm"].values())
    assert levels == sorted(levels)
    fine = np.load(tmp_path / "a" / f"storm_{storm['id']}_refined.npy")
    assert fine.shape == tuple(res["window"]["shape_refined"])
    proc, _ = run_kernel(
        "simulation_kernels.climate.rainfall",
        None,
        "--input",
        str(out),
        "--storm",
        "999",
        "--output",
        str(tmp_path / "b"),
    )
    assert (
        proc.returncode == 2 and "storm 999 is not in" in proc.stderr and "storm ids there: 1" in proc.stderr
    )


def test_upsample_keeps_linear_fields_and_gumbel_fits_its_own_law() -> None:
    f = np.add.outer(np.arange(5.0), 2 * np.arange(4.0))
    fine = upsample(f, 4)
    assert fine.shape == (20, 16)
    assert fine.mean() == pytest.approx(f.mean(), rel=0.02)
    rng = np.random.default_rng(0)
    sample = rng.gumbel(10.0, 3.0, size=20000)
    g = gumbel_levels(sample)
    assert g["loc"] == pytest.approx(10.0, abs=0.15) and g["scale"] == pytest.approx(3.0, abs=0.1)
    assert g["levels_mm"]["100"] == pytest.approx(10.0 - 3.0 * np.log(-np.log(0.99)), rel=0.02)
