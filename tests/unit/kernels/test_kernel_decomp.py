"""Decomposition without MPI: ghosts, blocks, progress lines, config files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from simulation_kernels.common.config import load_config, write_json
from simulation_kernels.common.decomp import Decomposition, get_world
from simulation_kernels.common.progress import ProgressReporter


def test_periodic_ghosts_wrap_around_including_corners() -> None:
    dec = Decomposition(4, 5, (1, 1), 2, True)
    a = dec.allocate()
    dec.interior(a)[...] = np.arange(20.0).reshape(4, 5)
    dec.exchange(a)
    full = np.arange(20.0).reshape(4, 5)
    expected = np.take(
        np.take(full, np.arange(-2, 6), axis=0, mode="wrap"), np.arange(-2, 7), axis=1, mode="wrap"
    )
    np.testing.assert_array_equal(a, expected)


def test_bounded_ghosts_stay_zero() -> None:
    dec = Decomposition(4, 5, (1, 1), 1, False)
    a = dec.allocate()
    dec.interior(a)[...] = 1.0
    dec.exchange(a)
    assert a[0].sum() == 0 and a[:, 0].sum() == 0 and a.sum() == 20


def test_single_rank_view_and_errors() -> None:
    dec = Decomposition(6, 8, (1, 1), 1, True)
    assert dec.is_root and dec.shape == (8, 10) and dec.owns(5, 7) and not dec.owns(6, 0)
    np.testing.assert_array_equal(dec.gather(np.ones(dec.shape)), np.ones((6, 8)))
    assert dec.allreduce(3.0) == 3.0
    with pytest.raises(ValueError, match="needs 2 ranks, running on 1"):
        Decomposition(6, 8, (2, 1), 1, True)


def test_no_mpi_outside_a_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    if "mpi4py.MPI" in sys.modules:
        pytest.skip("mpi4py.MPI already imported in this process")
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(var, raising=False)
    assert get_world() is None


def test_progress_lines_are_bounded_and_end_at_100() -> None:
    buf = io.StringIO()
    rep = ProgressReporter(1000, lines=10, stream=buf)
    for n in range(1, 1001):
        rep.update(n)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10 and lines[3] == "progress: step 400/1000 (40%)" and lines[-1].endswith("(100%)")
    quiet = io.StringIO()
    off = ProgressReporter(10, stream=quiet, enabled=False)
    off.update(10)
    assert quiet.getvalue() == ""


def test_config_json_yaml_and_params_key(tmp_path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"params": {"nx": 4}, "meta": "x"}))
    (tmp_path / "b.yaml").write_text("nx: 5\n")
    (tmp_path / "c.json").write_text("[1, 2]")
    assert load_config(tmp_path / "a.json") == {"nx": 4}
    assert load_config(tmp_path / "b.yaml") == {"nx": 5}
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(tmp_path / "c.json")
    write_json(tmp_path / "o.json", {"x": np.float32(1.5), "y": np.arange(2), "z": float("nan")})
    assert json.loads((tmp_path / "o.json").read_text()) == {"x": 1.5, "y": [0, 1], "z": None}
