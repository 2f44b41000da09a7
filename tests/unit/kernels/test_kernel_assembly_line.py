"""Production-line model against queueing-theory answers, determinism, replications, CLI."""

from __future__ import annotations

import json
import statistics

import pytest

from simulation_kernels.assembly_line import run_replications
from simulation_kernels.assembly_line.model import simulate
from simulation_kernels.params import validate


def _mean(params: dict, key: str, seeds: range) -> float:
    p = validate("assembly_line", params)
    return statistics.fmean(simulate(p, s)[key] for s in seeds)


def test_mm1_mean_time_in_system_is_one_over_mu_minus_lambda() -> None:
    lam, mu = 0.5, 1.0
    params = {
        "arrival": "poisson",
        "arrival_rate": lam,
        "stations": [{"service_mean": 1 / mu}],
        "horizon": 60000.0,
        "warmup": 2000.0,
    }
    assert _mean(params, "mean_lead_time", range(4)) == pytest.approx(1 / (mu - lam), rel=0.04)


def test_tandem_mm1_queues_add_up() -> None:
    lam = 0.5
    stations = [{"service_mean": 1 / 1.0}, {"service_mean": 1 / 1.25, "buffer": 10**6}]
    params = {
        "arrival": "poisson",
        "arrival_rate": lam,
        "stations": stations,
        "horizon": 60000.0,
        "warmup": 2000.0,
    }
    expected = 1 / (1.0 - lam) + 1 / (1.25 - lam)
    assert _mean(params, "mean_lead_time", range(4)) == pytest.approx(expected, rel=0.04)


@pytest.mark.parametrize("buffer", [0, 1, 4])
def test_two_machine_line_throughput_is_mu_b_plus_2_over_b_plus_3(buffer: int) -> None:
    params = {
        "stations": [{"service_mean": 1.0}, {"service_mean": 1.0, "buffer": buffer}],
        "horizon": 60000.0,
        "warmup": 1000.0,
    }
    assert _mean(params, "throughput", range(3)) == pytest.approx((buffer + 2) / (buffer + 3), rel=0.01)


def test_breakdowns_cut_throughput_to_the_availability() -> None:
    # deterministic service of 1, failures every 20 time units of work, repairs of 5 on average
    params = {"stations": [{"service_dist": "deterministic", "mtbf": 20.0, "mttr": 5.0}], "horizon": 50000.0}
    p = validate("assembly_line", params)
    r = simulate(p, 1)
    assert r["throughput"] == pytest.approx(1 / (1 + 5.0 / 20.0), rel=0.02)
    assert r["stations"][0]["down_fraction"] == pytest.approx(0.2, rel=0.05)
    assert r["stations"][0]["failures"] > 1000


def test_understaffing_stretches_service_and_energy_follows_states() -> None:
    base = {"service_dist": "deterministic", "power_busy_kw": 12.0, "power_idle_kw": 3.0}
    full = simulate(validate("assembly_line", {"stations": [base], "horizon": 6000.0}), 0)
    half = simulate(
        validate(
            "assembly_line", {"stations": [{**base, "staff": 1, "required_staff": 2}], "horizon": 6000.0}
        ),
        0,
    )
    assert full["throughput"] == pytest.approx(1.0, rel=1e-3)
    assert half["throughput"] == pytest.approx(0.5, rel=1e-3)
    # always busy: 12 kW for one minute per part (time unit = minute)
    assert full["energy_per_unit_kwh"] == pytest.approx(12.0 / 60.0, rel=1e-3)
    assert half["energy_per_unit_kwh"] == pytest.approx(2 * 12.0 / 60.0, rel=1e-3)


def test_material_shortages_cap_the_line() -> None:
    params = {
        "stations": [{"service_dist": "deterministic", "service_mean": 0.5}],
        "material_lot": 10,
        "material_interval": 20.0,
        "material_initial": 0,
        "horizon": 40000.0,
    }
    r = simulate(validate("assembly_line", params), 3)
    assert r["throughput"] == pytest.approx(10 / 20.0, rel=0.05)
    assert r["material_stockouts"] > 100
    assert r["stations"][0]["starved_fraction"] == pytest.approx(0.75, abs=0.03)


def test_results_are_deterministic_per_seed() -> None:
    params = {
        "stations": [{"mtbf": 50.0}, {"service_dist": "lognormal"}, {"service_dist": "erlang"}],
        "horizon": 5000.0,
        "material_lot": 30,
        "material_interval": 40.0,
    }
    p = validate("assembly_line", params)
    assert simulate(p, 11) == simulate(p, 11)
    assert simulate(p, 11)["throughput"] != simulate(p, 12)["throughput"]


def test_run_replications_aggregates_and_accepts_raw_params() -> None:
    out = run_replications({"horizon": 3000.0, "warmup": 100.0}, seeds=[1, 2, 3])
    assert [r["seed"] for r in out["replications"]] == [1, 2, 3]
    agg = out["aggregate"]["throughput"]
    assert agg["n"] == 3 and agg["mean"] == pytest.approx(
        statistics.fmean(r["throughput"] for r in out["replications"])
    )
    assert agg["ci95"] > 0
    assert (
        run_replications({"horizon": 3000.0, "warmup": 100.0, "replications": 2, "seed": 5})["replications"][
            1
        ]["seed"]
        == 6
    )
    with pytest.raises(ValueError, match="seeds must be a non-empty list"):
        run_replications({}, seeds=[])
    with pytest.raises(ValueError, match="unknown parameter"):
        run_replications({"horizn": 5.0})


def test_cli(run_kernel) -> None:
    proc, out = run_kernel(
        "simulation_kernels.assembly_line", {"replications": 3, "horizon": 2000.0, "warmup": 100.0}
    )
    assert proc.returncode == 0, proc.stderr
    assert "progress: replication 3/3 (100%)" in proc.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["replications"] == 3 and 0.5 < s["throughput"] < 1.0 and s["events_per_s"] > 0
    reps = json.loads((out / "replications.json").read_text())["replications"]
    assert [r["seed"] for r in reps] == [0, 1, 2]
    proc, _ = run_kernel("simulation_kernels.assembly_line", {"stations": [{"buffer": -1}]})
    assert proc.returncode == 2 and "stations[0]: buffer must be >= 0, got -1" in proc.stderr
