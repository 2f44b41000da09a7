"""The provider's copy of the kernels' parameter tables matches the kernels' own."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["specs.py", "params.py"])
def test_copy_matches_the_kernels(name: str) -> None:
    original = (ROOT / "simulation_kernels" / name).read_text()
    copy = (ROOT / "airflow_provider_hpcai" / "kernel_params" / name).read_text()
    assert copy == original, f"airflow_provider_hpcai/kernel_params/{name} is stale: run scripts/sync-kernel-params"


def test_the_copy_validates_like_the_kernels() -> None:
    from airflow_provider_hpcai.kernel_params import KERNELS, validate
    from simulation_kernels.params import validate as kernels_validate

    for kernel in KERNELS:
        assert validate(kernel, {}, 1) == kernels_validate(kernel, {}, 1)
