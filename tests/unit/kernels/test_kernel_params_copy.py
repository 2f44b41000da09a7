"""The provider's kernel parameter tables are the kernels' own (one source, no copy to go stale)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["specs.py", "params.py"])
def test_the_provider_links_to_the_kernels_tables(name: str) -> None:
    link = ROOT / "airflow_provider_hpcai" / "kernel_params" / name
    assert link.is_symlink(), f"{link} must stay a symbolic link to simulation_kernels/{name}, not a copy"
    assert link.resolve() == (ROOT / "simulation_kernels" / name).resolve()


def test_the_copy_validates_like_the_kernels() -> None:
    from airflow_provider_hpcai.kernel_params import KERNELS, validate
    from simulation_kernels.params import validate as kernels_validate

    for kernel in KERNELS:
        assert validate(kernel, {}, 1) == kernels_validate(kernel, {}, 1)
