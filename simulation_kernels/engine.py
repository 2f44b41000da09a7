"""Device-agnostic operations used by the stencil models: CPU (numba + MPI halos) or CUDA."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulation_kernels.common.decomp import Decomposition

__all__ = ["CpuOps", "make_ops"]


class CpuOps:
    """Host-side operations: numba kernels, halo exchange through :class:`Decomposition`.

    :param dec: this rank's decomposition (its halo width applies to every array).
    """

    device = "cpu"

    def __init__(self, dec: Decomposition) -> None:
        self.dec = dec

    def asarray(self, a: np.ndarray) -> np.ndarray:
        """Arrays stay on the host."""
        return a

    def to_host(self, a: np.ndarray) -> np.ndarray:
        """Arrays are already on the host."""
        return a

    def sync(self) -> None:
        """Wait for queued work (nothing to wait for on the CPU)."""

    def exchange(self, a: np.ndarray) -> None:
        """Fill ghost cells from the neighbours."""
        self.dec.exchange(a)

    def heat_step(self, u: np.ndarray, out: np.ndarray, rx: Any, ry: Any) -> None:
        """See :func:`simulation_kernels.stencils.heat_step`."""
        from simulation_kernels.stencils import heat_step

        heat_step(u, out, rx, ry)

    def wave_step(
        self,
        up: np.ndarray,
        u: np.ndarray,
        m: np.ndarray,
        un: np.ndarray,
        peak: np.ndarray | None,
        inv2dt: Any,
        coeffs: tuple[Any, ...],
    ) -> None:
        """See :func:`simulation_kernels.stencils.wave_step` and ``wave_step_peak``."""
        from simulation_kernels.stencils import wave_step, wave_step_peak

        if peak is None:
            wave_step(up, u, m, un, *coeffs)
        else:
            wave_step_peak(up, u, m, un, peak, inv2dt, *coeffs)

    def damping(
        self, un: np.ndarray, up: np.ndarray, damp: np.ndarray, rects: list[tuple[int, int, int, int]]
    ) -> None:
        """Apply the sponge on the listed rectangles ``(r0, r1, c0, c1)`` only."""
        from simulation_kernels.stencils import apply_damping

        for r0, r1, c0, c1 in rects:
            apply_damping(un, up, damp, r0, r1, c0, c1)

    def add_point(self, a: np.ndarray, j: int, i: int, val: float) -> None:
        """``a[j, i] += val``."""
        a[j, i] += val

    def record(self, u: np.ndarray, rj: np.ndarray, ri: np.ndarray, seis: np.ndarray, n: int) -> None:
        """``seis[:, n] = u[rj, ri]``."""
        if rj.size:
            seis[:, n] = u[rj, ri]

    def climate_step(self, *args: Any) -> None:
        """See :func:`simulation_kernels.climate.kernels.climate_step`."""
        from simulation_kernels.climate.kernels import climate_step

        climate_step(*args)


def make_ops(device: str, dec: Decomposition) -> Any:
    """Operations for ``device`` (``cpu`` or ``cuda``) on ``dec``'s arrays."""
    if device == "cuda":
        from simulation_kernels.gpu import CudaOps

        return CudaOps(dec.halo, dec.periodic)
    return CpuOps(dec)
