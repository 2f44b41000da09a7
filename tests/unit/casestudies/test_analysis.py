"""Analysis functions of the case studies on tiny inputs with known answers."""

from __future__ import annotations

import math
import shlex

import numpy as np
import pytest

from airflow_provider_hpcai.casestudies import climate, manufacturing, seismic
from airflow_provider_hpcai.casestudies.common import backend_kwargs
from airflow_provider_hpcai.casestudies.operators import rainfall_script
from airflow_provider_hpcai.exceptions import InvalidJobSpecError


# ------------------------------------------------------------------ climate
def test_rainfall_totals_are_conserved_and_match_a_hand_sum() -> None:
    rain = np.array([[1.0, 2.0, 0.0], [0.5, 4.0, 3.0]])
    labels = np.array([[1, 1, 0], [0, 2, 2]])
    out = climate.rainfall_budget(rain, labels, cell_km2=100.0)  # 1 mm over 100 km2 = 1e5 m3
    assert out["storms_m3"] == {1: pytest.approx(3e5), 2: pytest.approx(7e5)}
    assert out["background_m3"] == pytest.approx(0.5e5)
    assert out["total_m3"] == pytest.approx(out["background_m3"] + sum(out["storms_m3"].values()))


def test_block_sums_equal_the_whole_field(tmp_path) -> None:
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.5, 4.0, size=(17, 11))
    labels = rng.integers(0, 4, size=(17, 11))
    np.save(tmp_path / "rain_accum.npy", rain)
    np.save(tmp_path / "storm_labels.npy", labels)
    blocks = [climate.block_volumes(str(tmp_path), a, b, 4) for a, b in ((0, 5), (5, 12), (12, 17))]
    assert np.allclose(np.sum(blocks, axis=0), climate.label_volumes(rain, labels, 4))
    assert np.sum(blocks) == pytest.approx(rain.sum())


def test_one_request_per_storm_and_none_when_dry() -> None:
    run = {"output_dir": "/data/run", "summary": {"storms": [{"id": 3}, {"id": 1}, {"id": 7}]}}
    backend = backend_kwargs({"backend": "local"})
    reqs = climate.storm_requests(run, backend, refine=2, limit=2)
    assert [r["storm_id"] for r in reqs] == [3, 1]
    assert reqs[0]["output_dir"] == "/data/run/storms/storm_3" and reqs[0]["backend"] == "local"
    assert climate.storm_requests({"output_dir": "/d", "summary": {"storms": []}}, backend) == []


def test_climate_plan_refuses_a_rank_count_that_does_not_divide_the_grid() -> None:
    rows = climate.plan_run({"nx": 32, "ny": 32, "steps": 5, "ranks": 2}, {"backend": "local"})
    assert rows[0]["ranks"] == 2 and rows[0]["kernel_params"]["nx"] == 32
    with pytest.raises(InvalidJobSpecError, match="climate run"):
        climate.plan_run({"nx": 17, "ny": 17, "ranks": 64}, {"backend": "local"})


def test_backend_params_are_checked() -> None:
    assert backend_kwargs({"backend": "slurm", "conn_id": " slurm_local ", "workdir": ""}) == {
        "backend": "slurm", "conn_id": "slurm_local", "workdir": None}
    with pytest.raises(InvalidJobSpecError, match="one of local, slurm, kubernetes"):
        backend_kwargs({"backend": "cloud"})
    with pytest.raises(InvalidJobSpecError, match="absolute"):
        backend_kwargs({"backend": "local", "workdir": "relative/dir"})


def test_rainfall_script_quotes_every_value() -> None:
    script = rainfall_script(python="/opt/py thon", run_dir="/runs/$(rm -rf ~)", storm_id=4,
                             output_dir="/out/a b", refine=3)
    command = script.splitlines()[-1]
    assert shlex.split(command) == ["/opt/py thon", "-m", "simulation_kernels.climate.rainfall", "--input",
                                    "/runs/$(rm -rf ~)", "--storm", "4", "--output", "/out/a b", "--refine", "3",
                                    "--margin", "2"]
    with pytest.raises(InvalidJobSpecError, match="storm_id"):
        rainfall_script(python="p", run_dir="/r", storm_id=0, output_dir="/o")
    with pytest.raises(InvalidJobSpecError, match="one line"):
        rainfall_script(python="p", run_dir="/r\nrm -rf /", storm_id=1, output_dir="/o")


# ------------------------------------------------------------------ seismic
def test_hazard_curve_is_a_weighted_count_and_monotone() -> None:
    peaks = np.array([[1.0, 5.0], [3.0, 0.5], [6.0, 2.0], [2.0, 2.0]])  # 4 scenarios x 2 sites
    levels = [0.0, 1.5, 2.5, 5.5, 10.0]
    p = seismic.exceedance_probability(peaks, np.ones(4), levels)
    # site 0 peaks 1, 3, 6, 2 -> above 0: 4, above 1.5: 3, above 2.5: 2, above 5.5: 1, above 10: 0
    assert p[0].tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert p[1].tolist() == [1.0, 0.75, 0.25, 0.0, 0.0]
    weighted = seismic.exceedance_probability(peaks, [1, 1, 2, 0], levels)
    assert weighted[0].tolist() == pytest.approx([1.0, 0.75, 0.75, 0.5, 0.0])  # weights 1,1,2,0 of 4


def test_scatter_keeps_curves_monotone_and_centred() -> None:
    rng = np.random.default_rng(0)
    peaks = rng.lognormal(1.0, 1.0, size=(9, 5))
    levels = seismic.default_levels(0.01, 1000.0)
    p = seismic.exceedance_probability(peaks, rng.random(9), levels, sigma_ln=0.6)
    assert np.all(np.diff(p, axis=1) <= 1e-12) and np.all((p >= 0) & (p <= 1))
    one = seismic.exceedance_probability([[4.0]], [1.0], [4.0], sigma_ln=0.6)
    assert one[0, 0] == pytest.approx(0.5)  # at the scenario's own peak: half the scatter is above
    assert seismic.annual_probability(1.0, 0.05) == pytest.approx(1 - math.exp(-0.05))


def test_ensemble_weights_follow_gutenberg_richter() -> None:
    params = {"sources": [0.25, 0.75], "magnitudes": [5.0, 6.0], "soils": ["rock", "basin"], "b_value": 1.0,
              "nx": 64, "nz": 32}
    ens = seismic.scenarios(params)
    assert len(ens) == 8 and sum(s["weight"] for s in ens) == pytest.approx(1.0)
    m5 = sum(s["weight"] for s in ens if s["magnitude"] == 5.0)
    assert m5 / (1 - m5) == pytest.approx(10.0)  # one magnitude unit = 10x fewer events at b = 1
    basin = next(s for s in ens if s["soil"] == "basin")["kernel_params"]
    assert basin["velocity_model"] == "basin" and basin["basin_width_m"] == pytest.approx(0.45 * 640)
    with pytest.raises(InvalidJobSpecError, match="strictly between 0 and 1"):
        seismic.scenarios({**params, "sources": [1.5]})
    with pytest.raises(InvalidJobSpecError, match="unknown soil"):
        seismic.scenarios({**params, "soils": ["clay"]})


# ------------------------------------------------------------------ manufacturing
def _synthetic_rows(true_buffer: float) -> list[dict]:
    """Throughput rising as log1p(b) with a known peak; energy flat: the margin's optimum is known."""
    rows = []
    u0 = math.log1p(true_buffer)
    for scenario in ("no_shortage", "severe_shortage"):
        for staff in (1, 2, 3):
            for b in (0, 2, 4, 8, 16, 32):
                u = math.log1p(b)
                th = 0.2 + 0.15 * (staff / 3) + 0.08 * (2 * u0 * u - u * u) / (u0 * u0)
                rows.append({"scenario": scenario, "staff": staff, "buffer": b, "throughput": th,
                             "energy_per_unit_kwh": 0.7, "throughput_ci95": 0.0, "energy_per_unit_kwh_ci95": 0.0})
    return rows


def test_surrogate_recovers_a_known_optimum() -> None:
    rows = _synthetic_rows(true_buffer=9.0)
    sur = manufacturing.fit_surrogate(rows)
    assert sur["models"]["no_shortage"]["throughput"]["r2"] == pytest.approx(1.0)
    # no cost of slots or staff beyond wages: throughput peaks at buffer 9 with a full crew
    rec = manufacturing.recommend(sur, {"no_shortage": 1.0}, buffers=[0, 32], staffing=[1, 2, 3],
                                  economics={"slot_cost": 0.0, "wage": 0.0})
    assert (rec["buffer"], rec["staff"]) == (9, 3)
    u = math.log1p(9.0)
    assert rec["predicted"]["no_shortage"]["throughput"] == pytest.approx(0.35 + 0.08 * u * u / (u * u))
    costly = manufacturing.recommend(sur, {"no_shortage": 1.0}, buffers=[0, 32], staffing=[1, 2, 3],
                                     economics={"slot_cost": 0.5, "wage": 0.0})
    assert costly["buffer"] < 9  # paying for slots moves the optimum to smaller buffers


def test_recommend_refuses_scenarios_without_a_surrogate() -> None:
    sur = manufacturing.fit_surrogate(_synthetic_rows(4.0))
    with pytest.raises(InvalidJobSpecError, match="mild_shortage"):
        manufacturing.recommend(sur, {"mild_shortage": 1.0}, buffers=[0, 8], staffing=[1, 3])


def test_sweep_points_and_line_parameters() -> None:
    pts = manufacturing.sweep_points({"buffers": [0, 2, 4], "staffing": [2, 3], "scenarios": ["no_shortage"]})
    assert len(pts) == 6 and {p["buffer"] for p in pts} == {0, 2, 4}
    line = manufacturing.line_params(5, 2, "severe_shortage", horizon=100.0, warmup=10.0)
    assert [s["buffer"] for s in line["stations"]] == [0, 5, 5] and {s["staff"] for s in line["stations"]} == {2}
    assert line["material_lot"] == 15
    with pytest.raises(InvalidJobSpecError, match="at least 3 buffer sizes"):
        manufacturing.sweep_points({"buffers": [0, 2], "staffing": [1, 2], "scenarios": ["no_shortage"]})
    with pytest.raises(InvalidJobSpecError, match="unknown shortage scenario"):
        manufacturing.line_params(1, 1, "strike", horizon=1.0, warmup=0.0)


def test_real_replications_rise_with_the_buffer() -> None:
    """A tiny real batch: a larger buffer never lowers throughput under common random numbers."""
    rows = manufacturing.run_batch([{"buffer": 0, "staff": 3, "scenario": "no_shortage"},
                                    {"buffer": 8, "staff": 3, "scenario": "no_shortage"}], [0, 1], 800.0, 100.0)
    assert rows[1]["throughput"] > rows[0]["throughput"] > 0


def test_confirmation_check_flags_a_bad_prediction() -> None:
    rec = {"predicted": {"no_shortage": {"throughput": 0.8, "energy_per_unit_kwh": 0.6}}}
    good = [{"summary": {"aggregate": {"throughput": {"mean": 0.78, "ci95": 0.01},
                                       "energy_per_unit_kwh": {"mean": 0.61, "ci95": 0.01}}}}]
    assert manufacturing.check_confirmation(rec, good)["confirmed"] is True
    bad = [{"summary": {"aggregate": {"throughput": {"mean": 0.5, "ci95": 0.01},
                                      "energy_per_unit_kwh": {"mean": 0.61, "ci95": 0.01}}}}]
    out = manufacturing.check_confirmation(rec, bad)
    assert out["confirmed"] is False and out["scenarios"][0]["throughput"]["rel_error"] == pytest.approx(0.6)
