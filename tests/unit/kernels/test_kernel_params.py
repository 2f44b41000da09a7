"""Parameter validation: the messages a user sees before anything is submitted."""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import pytest

from simulation_kernels import params
from simulation_kernels.params import KERNELS, schema, validate

from .conftest import REPO, kernel_env


def test_unknown_kernel_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown kernel 'weather'; known kernels: assembly_line, climate, seismic"
    ):
        validate("weather", {})


def test_defaults_validate_for_every_kernel() -> None:
    for kernel in KERNELS:
        out = validate(kernel, {})
        assert set(params.SPECS[kernel]) <= set(out)


@pytest.mark.parametrize(
    ("kernel", "bad", "message"),
    [
        ("climate", {"nx": -4}, "nx must be >= 8, got -4"),
        ("climate", {"dx_km": 0}, "dx_km must be > 0"),
        ("seismic", {"nz": 0}, "nz must be >= 16"),
        ("seismic", {"steps": 2.5}, "steps must be an integer"),
        ("climate", {"device": "tpu"}, "choose one of auto, cpu, cuda"),
        ("assembly_line", {"horizon": -1.0}, "horizon must be > 0"),
        ("assembly_line", {"stations": [{"service_mean": 0}]}, r"stations\[0\]: service_mean must be > 0"),
        ("assembly_line", {"stations": []}, "at least one station"),
        ("assembly_line", {"warmup": 500, "horizon": 100}, "warmup=500 must be below horizon=100"),
    ],
)
def test_bad_values_say_what_is_allowed(kernel: str, bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(kernel, bad)


def test_unknown_keys_are_refused_with_a_suggestion() -> None:
    with pytest.raises(
        ValueError, match=r"unknown parameter\(s\) 'stpes' \(did you mean 'steps'\?\); allowed: "
    ):
        validate("climate", {"stpes": 10})
    with pytest.raises(ValueError, match=r"stations\[1\]: unknown parameter\(s\) 'mtfb'"):
        validate("assembly_line", {"stations": [{}, {"mtfb": 3.0}]})


def test_unstable_time_step_states_the_limit() -> None:
    p = validate("climate", {})
    limit = params.climate_dt_limit(p)
    with pytest.raises(ValueError, match=rf"CFL limit is dt_s <= {limit:.6g}"):
        validate("climate", {"dt_s": limit * 1.01})
    assert validate("climate", {"dt_s": limit * 0.99})["dt_s"] == pytest.approx(limit * 0.99)
    s = validate("seismic", {"vp_m_s": 3000.0, "dx_m": 5.0})
    assert s["dt_s"] == pytest.approx(0.9 * 0.5546 * 5.0 / 3000.0, rel=1e-3)
    with pytest.raises(ValueError, match=r"vmax dt/dx <= 0.5546.*dt_s <= 0.000924"):
        validate("seismic", {"vp_m_s": 3000.0, "dx_m": 5.0, "dt_s": 0.001})


def test_layered_and_basin_models_use_their_fastest_velocity_for_the_limit() -> None:
    s = validate("seismic", {"velocity_model": "layered", "layers": [[500, 4000.0]], "vp_m_s": 1000.0})
    assert s["dt_s"] == pytest.approx(0.9 * 0.5546 * s["dx_m"] / 4000.0, rel=1e-3)
    with pytest.raises(ValueError, match="each layer must be"):
        validate("seismic", {"velocity_model": "layered", "layers": [[100.0]]})


def test_rank_counts_that_do_not_divide_the_grid_list_those_that_do() -> None:
    with pytest.raises(ValueError, match=r"3 ranks do not divide the 32x32 grid .*: 1, 2, 4, 8, 16"):
        validate("climate", {"nx": 32, "ny": 32}, ranks=3)
    assert validate("climate", {"nx": 32, "ny": 32}, ranks=4)["decomposition"] == [2, 2]
    assert validate("climate", {"nx": 32, "ny": 32}, ranks=2)["decomposition"] == [2, 1]
    with pytest.raises(ValueError, match="decomposition 1x3 needs 3 ranks, got 4"):
        validate("seismic", {"decomposition": [1, 3]}, ranks=4)
    with pytest.raises(ValueError, match="ranks must be a positive integer"):
        validate("seismic", {}, ranks=0)


def test_seismic_blocks_keep_room_for_the_8th_order_halo() -> None:
    # 16 rows over 8 ranks would leave 2 rows per block: fewer than the 4 ghost rows needed
    assert params.choose_decomposition(8, 16, 16, halo=4) == (4, 2)
    assert params.choose_decomposition(16, 16, 16, halo=4) == (4, 4)
    assert params.choose_decomposition(32, 16, 16, halo=4) is None


def test_cuda_runs_on_one_rank_only() -> None:
    with pytest.raises(ValueError, match="device='cuda' runs on 1 rank"):
        validate("seismic", {"device": "cuda"}, ranks=2)


def test_source_outside_the_domain_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"source_x_m=5000 lies outside the domain; allowed 0 <= source_x_m < 4000"
    ):
        validate("seismic", {"source_x_m": 5000.0})


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_schema_accepts_defaults_and_rejects_what_validate_rejects(kernel: str) -> None:
    sch = schema(kernel)
    jsonschema.Draft202012Validator.check_schema(sch)
    jsonschema.validate({}, sch)
    jsonschema.validate({k: v for k, v in params.defaults(kernel).items() if v is not None}, sch)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"no_such_key": 1}, sch)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"progress_lines": 0}, sch)


def test_assembly_schema_describes_stations() -> None:
    sch = schema("assembly_line")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"stations": [{"service_dist": "gaussian"}]}, sch)
    jsonschema.validate({"stations": [{"service_dist": "erlang", "buffer": 0}]}, sch)


def test_params_module_imports_no_numerical_library() -> None:
    code = (
        "import sys, simulation_kernels.params as p; p.validate('seismic', {}); "
        "bad = [m for m in ('numpy', 'numba', 'mpi4py', 'simpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=kernel_env()
    )
    assert proc.returncode == 0, proc.stderr
