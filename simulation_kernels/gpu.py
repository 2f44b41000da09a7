"""GPU path of the stencil kernels (``numba.cuda``).

The kernels mirror the CPU ones point for point (same halo layout, same arithmetic order), so
results agree with the CPU to round-off (exactly on the CUDA simulator, a few ulps on a GPU
where ``exp`` differs). ``numba.cuda`` is imported only when a CUDA path is used; tests run it
on the CPU with ``NUMBA_ENABLE_CUDASIM=1``.

The GPU path runs on one rank: ghost cells of a periodic grid are filled by a kernel that
copies from the opposite edge; on a bounded grid they stay zero.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["CudaOps", "cuda_available", "resolve_device"]

_TPB = (32, 8)


def cuda_available(allow_simulator: bool = False) -> bool:
    """Whether a CUDA device can be used (the simulator counts only if ``allow_simulator``)."""
    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    if simulated and not allow_simulator:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # a broken driver means "no GPU"
        return False


def resolve_device(requested: str, ranks: int) -> str:
    """Turn ``auto``/``cpu``/``cuda`` into the device used.

    ``auto`` picks CUDA when a real GPU is present and the run has one rank.

    :raises KernelInputError: if ``cuda`` is requested but unavailable.
    """
    from simulation_kernels.common.cli import KernelInputError

    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not cuda_available(allow_simulator=True):
            raise KernelInputError(
                "device='cuda' but no CUDA GPU is available (numba.cuda.is_available() is "
                "False); use device='cpu' or 'auto', or set NUMBA_ENABLE_CUDASIM=1 to simulate"
            )
        return "cuda"
    return "cuda" if ranks == 1 and cuda_available() else "cpu"


def _kernels() -> dict[str, Any]:
    from simulation_kernels._cuda_kernels import KERNELS

    return KERNELS


def _blocks(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Launch grid for a (rows, cols) iteration space with x along columns."""
    return ((cols + _TPB[0] - 1) // _TPB[0], (rows + _TPB[1] - 1) // _TPB[1]), _TPB


class CudaOps:
    """Device-side operations used by the models when ``device='cuda'`` (one rank).

    :param halo: ghost width of the arrays this object handles.
    :param periodic: whether ghosts wrap around.
    """

    device = "cuda"

    def __init__(self, halo: int, periodic: bool) -> None:
        from numba import cuda

        self.cuda = cuda
        self.k = _kernels()
        self.halo = halo
        self.periodic = periodic

    def asarray(self, a: np.ndarray) -> Any:
        """Copy a host array to the device."""
        return self.cuda.to_device(np.ascontiguousarray(a))

    def to_host(self, a: Any) -> np.ndarray:
        """Copy a device array back to the host."""
        return a.copy_to_host()

    def sync(self) -> None:
        """Wait for the queued kernels (for timing)."""
        self.cuda.synchronize()

    def exchange(self, a: Any) -> None:
        """Fill ghost cells (periodic copy; nothing on a bounded grid)."""
        if not self.periodic:
            return
        h = self.halo
        g, b = _blocks(a.shape[0], 2 * h)
        self.k["fill_cols"][g, b](a, h)
        g, b = _blocks(2 * h, a.shape[1])
        self.k["fill_rows"][g, b](a, h)

    def heat_step(self, u: Any, out: Any, rx: Any, ry: Any) -> None:
        """Device version of :func:`simulation_kernels.stencils.heat_step`."""
        g, b = _blocks(u.shape[0] - 2, u.shape[1] - 2)
        self.k["heat"][g, b](u, out, rx, ry)

    def wave_step(
        self, up: Any, u: Any, m: Any, un: Any, peak: Any | None, inv2dt: Any, coeffs: tuple[Any, ...]
    ) -> None:
        """Device version of :func:`~simulation_kernels.stencils.wave_step` (and ``_peak``)."""
        g, b = _blocks(u.shape[0] - 8, u.shape[1] - 8)
        self.k["wave"][g, b](up, u, m, un, un if peak is None else peak, inv2dt, peak is not None, *coeffs)

    def damping(self, un: Any, up: Any, damp: Any, rects: list[tuple[int, int, int, int]]) -> None:
        """Apply the sponge (the whole array; cells with zero damping are left alone)."""
        if rects:
            g, b = _blocks(un.shape[0], un.shape[1])
            self.k["damping"][g, b](un, up, damp)

    def add_point(self, a: Any, j: int, i: int, val: float) -> None:
        """``a[j, i] += val`` on the device."""
        self.k["add_point"][1, 1](a, j, i, val)

    def record(self, u: Any, rj: Any, ri: Any, seis: Any, n: int) -> None:
        """``seis[:, n] = u[rj, ri]`` on the device."""
        if rj.shape[0]:
            self.k["record"][(rj.shape[0] + 127) // 128, 128](u, rj, ri, seis, n)

    def climate_step(self, *args: Any) -> None:
        """Device version of :func:`simulation_kernels.climate.kernels.climate_step`."""
        T = args[0]
        g, b = _blocks(T.shape[0] - 2, T.shape[1] - 2)
        self.k["climate"][g, b](*args)
