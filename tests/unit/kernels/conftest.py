"""Fixtures for the kernel tests: run ``python -m simulation_kernels.<name>`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def kernel_env(**extra: str) -> dict[str, str]:
    """Environment for a kernel subprocess: the repository importable, one numba thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.update(extra)
    return env


@pytest.fixture
def run_kernel(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess[str], Path]]:
    """``run_kernel(module, params, *extra_args)`` -> ``(completed process, output folder)``."""

    def _run(
        module: str, params: dict[str, Any] | None, *extra: str, timeout: float = 120
    ) -> tuple[subprocess.CompletedProcess[str], Path]:
        out = tmp_path / f"out_{module.rsplit('.', 1)[-1]}"
        args = [sys.executable, "-m", module]
        if params is not None:
            cfg = tmp_path / "cfg.json"
            cfg.write_text(json.dumps(params))
            args += ["--config", str(cfg), "--output", str(out)]
        args += list(extra)
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=kernel_env()
        )
        return proc, out

    return _run
