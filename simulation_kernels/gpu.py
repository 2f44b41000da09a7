"""GPU path of the stencil kernels (``numba.cuda``).

The kernels mirror the CPU ones point for point (same halo layout, same arithmetic order), so
results agree with the CPU to round-off (exactly on the CUDA simulator, a few ulps on a GPU
where ``exp`` differs). ``numba.cuda`` is imported only when a CUDA path is used; tests run it
on the CPU with ``NUMBA_ENABLE_CUDASIM=1``.

The GPU path runs on one rank: ghost cells of a periodic grid are filled by a kernel that
copies from the opposite edge; on a bounded grid they stay zero.
"""

from __future__ import annotations

import functools
import math  # noqa: F401 - used by the CUDA climate kernel
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
    except Exception:  # noqa: BLE001 - a broken driver means "no GPU"
        return False


def resolve_device(requested: str, ranks: int) -> str:
    """Turn ``auto``/``cpu``/``cuda`` into the device used.

    ``auto`` picks CUDA when a real GPU is present and the run has one rank.

    :raises ValueError: if ``cuda`` is requested but unavailable.
    """
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not cuda_available(allow_simulator=True):
            raise ValueError("device='cuda' but no CUDA GPU is available (numba.cuda.is_available() is "
                             "False); use device='cpu' or 'auto', or set NUMBA_ENABLE_CUDASIM=1 to simulate")
        return "cuda"
    return "cuda" if ranks == 1 and cuda_available() else "cpu"


@functools.lru_cache(maxsize=1)
def _kernels() -> dict[str, Any]:  # pragma: no cover - compiled by numba.cuda
    from numba import cuda

    @cuda.jit
    def heat(u, out, rx, ry):
        i, j = cuda.grid(2)
        nr = u.shape[0] - 2
        nc = u.shape[1] - 2
        if j < nr and i < nc:
            c = 1 - 2 * rx - 2 * ry
            out[j + 1, i + 1] = (c * u[j + 1, i + 1] + rx * (u[j + 1, i] + u[j + 1, i + 2])
                                 + ry * (u[j, i + 1] + u[j + 2, i + 1]))

    @cuda.jit
    def wave(up, u, m, un, peak, inv2dt, with_peak, c0, c1, c2, c3, c4):
        i, j = cuda.grid(2)
        nr = u.shape[0] - 8
        nc = u.shape[1] - 8
        if j < nr and i < nc:
            jj = j + 4
            ii = i + 4
            lap = (c0 * u[jj, ii]
                   + c1 * ((u[jj, i + 3] + u[jj, i + 5]) + (u[j + 3, ii] + u[j + 5, ii]))
                   + c2 * ((u[jj, i + 2] + u[jj, i + 6]) + (u[j + 2, ii] + u[j + 6, ii]))
                   + c3 * ((u[jj, i + 1] + u[jj, i + 7]) + (u[j + 1, ii] + u[j + 7, ii]))
                   + c4 * ((u[jj, i] + u[jj, i + 8]) + (u[j, ii] + u[j + 8, ii])))
            v = 2 * u[jj, ii] - up[jj, ii] + m[jj, ii] * lap
            un[jj, ii] = v
            if with_peak:
                vel = abs(v - up[jj, ii]) * inv2dt
                if vel > peak[jj, ii]:
                    peak[jj, ii] = vel

    @cuda.jit
    def damping(un, up, damp):
        i, j = cuda.grid(2)
        if j < un.shape[0] and i < un.shape[1]:
            d = damp[j, i]
            if d != 0:
                un[j, i] = (un[j, i] + d * up[j, i]) / (1 + d)

    @cuda.jit
    def fill_cols(a, h):
        k, j = cuda.grid(2)
        nr = a.shape[0] - 2 * h
        nc = a.shape[1] - 2 * h
        if j < a.shape[0] and k < 2 * h:
            i = k if k < h else nc + k
            a[j, i] = a[(j - h + nr) % nr + h, (i - h + nc) % nc + h]

    @cuda.jit
    def fill_rows(a, h):
        i, k = cuda.grid(2)
        nr = a.shape[0] - 2 * h
        if i < a.shape[1] and k < 2 * h:
            j = k if k < h else nr + k
            a[j, i] = a[(j - h + nr) % nr + h, i]

    @cuda.jit
    def add_point(a, j, i, val):
        if cuda.grid(1) == 0:
            a[j, i] += val

    @cuda.jit
    def record(u, rj, ri, seis, n):
        k = cuda.grid(1)
        if k < rj.shape[0]:
            seis[k, n] = u[rj[k], ri[k]]

    @cuda.jit
    def climate(T, W, Tn, Wn, cxp, cxm, cyp, cym, tsurf, rain, evap, heat_acc, rate, peak, coef):
        i, j = cuda.grid(2)
        nr = T.shape[0] - 2
        nc = T.shape[1] - 2
        if j < nr and i < nc:
            jj = j + 1
            ii = i + 1
            kx, ky, t0, w0, cc = coef[0], coef[1], coef[2], coef[3], coef[4]
            latent, evap_step, cond_frac, relax, to_rate = coef[5], coef[6], coef[7], coef[8], coef[9]
            ap = cxp[j]
            am = cxm[j]
            bp = cyp[i]
            bm = cym[i]
            tc = T[jj, ii]
            t = (tc - ap * (tc - T[jj, i]) - am * (T[jj, i + 2] - tc) - bp * (tc - T[j, ii])
                 - bm * (T[j + 2, ii] - tc)
                 + kx * ((T[jj, i] + T[jj, i + 2]) - 2.0 * tc) + ky * ((T[j, ii] + T[j + 2, ii]) - 2.0 * tc))
            wc = W[jj, ii]
            w = (wc - ap * (wc - W[jj, i]) - am * (W[jj, i + 2] - wc) - bp * (wc - W[j, ii])
                 - bm * (W[j + 2, ii] - wc)
                 + kx * ((W[jj, i] + W[jj, i + 2]) - 2.0 * wc) + ky * ((W[j, ii] + W[j + 2, ii]) - 2.0 * wc))
            dts = (tsurf[jj, ii] - t) * relax
            t = t + dts
            heat_acc[jj, ii] += dts
            sat = w0 * math.exp(cc * (t - t0))
            e = evap_step * max(0.0, 1.0 - w / sat)
            w = w + e
            t = t - latent * e
            evap[jj, ii] += e
            sat = w0 * math.exp(cc * (t - t0))
            c = max(0.0, w - sat) * cond_frac
            w = w - c
            t = t + latent * c
            rain[jj, ii] += c
            r = c * to_rate
            rate[jj, ii] = r
            if r > peak[jj, ii]:
                peak[jj, ii] = r
            Tn[jj, ii] = t
            Wn[jj, ii] = w

    return {"heat": heat, "wave": wave, "damping": damping, "fill_cols": fill_cols, "fill_rows": fill_rows,
            "add_point": add_point, "record": record, "climate": climate}


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

    def wave_step(self, up: Any, u: Any, m: Any, un: Any, peak: Any | None, inv2dt: Any,
                  coeffs: tuple[Any, ...]) -> None:
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
