"""Stencil kernels on halo-padded arrays: numba (CPU) versions and plain numpy references.

Every array carries ``h`` ghost cells on each side (``h = 1`` for the 5-point heat stencil,
``h = 4`` for the 8th-order wave stencil) and kernels write only the interior. Hot loops index
from zero (``row[i + k]``, never ``row[i - k]``): negative offsets stop LLVM vectorising the
loop. No ``fastmath`` (no reassociation): every point is computed by the same instruction
sequence whatever the decomposition, so 1, 2 and 4 MPI ranks give bit-identical fields. The
numpy references agree to round-off only, since LLVM may fuse multiply-adds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from simulation_kernels.params import WAVE8_COEFFS

__all__ = [
    "HALO_HEAT",
    "HALO_WAVE",
    "apply_damping",
    "heat_decay_factor",
    "heat_step",
    "heat_step_numpy",
    "wave_coeffs",
    "wave_mode_cos",
    "wave_step",
    "wave_step_numpy",
    "wave_step_peak",
]

HALO_HEAT = 1
HALO_WAVE = 4


@njit(parallel=True, cache=True)
def heat_step(u: np.ndarray, out: np.ndarray, rx: Any, ry: Any) -> None:  # pragma: no cover - numba
    """One explicit step of ``u_t = K (u_xx + u_yy)``: ``rx = K dt / dx^2``, ``ry = K dt / dy^2``."""
    nr = u.shape[0] - 2
    nc = u.shape[1] - 2
    c = 1 - 2 * rx - 2 * ry
    for j in prange(nr):
        up = u[j]
        mid = u[j + 1]
        dn = u[j + 2]
        o = out[j + 1]
        for i in range(nc):
            o[i + 1] = c * mid[i + 1] + rx * (mid[i] + mid[i + 2]) + ry * (up[i + 1] + dn[i + 1])


def heat_step_numpy(u: np.ndarray, out: np.ndarray, rx: float, ry: float) -> None:
    """The same step as :func:`heat_step` with numpy slicing (the reference for tests and the bench)."""
    c = 1 - 2 * rx - 2 * ry
    out[1:-1, 1:-1] = (
        c * u[1:-1, 1:-1] + rx * (u[1:-1, :-2] + u[1:-1, 2:]) + ry * (u[:-2, 1:-1] + u[2:, 1:-1])
    )


def heat_decay_factor(rx: float, ry: float, kx: int, ky: int, nx: int, ny: int) -> float:
    """Exact per-step factor of the mode ``sin(2 pi kx i / nx) sin(2 pi ky j / ny)`` under ``heat_step``."""
    return 1.0 - 4.0 * rx * np.sin(np.pi * kx / nx) ** 2 - 4.0 * ry * np.sin(np.pi * ky / ny) ** 2


def wave_coeffs(dtype: Any = np.float32) -> tuple[Any, ...]:
    """The 8th-order coefficients ``(2 c0, c1, c2, c3, c4)`` in ``dtype`` (2 c0: x and y centre terms)."""
    c = WAVE8_COEFFS
    t = np.dtype(dtype).type
    return (t(2 * c[0]), t(c[1]), t(c[2]), t(c[3]), t(c[4]))


@njit(parallel=True, cache=True)
def wave_step(
    up: np.ndarray, u: np.ndarray, m: np.ndarray, un: np.ndarray, c0: Any, c1: Any, c2: Any, c3: Any, c4: Any
) -> None:  # pragma: no cover - numba
    """Leapfrog step ``un = 2 u - up + m * lap8(u)``, ``m = (c dt / dx)^2`` per point, halo 4."""
    nr = u.shape[0] - 8
    nc = u.shape[1] - 8
    for j in prange(nr):
        r0 = u[j]
        r1 = u[j + 1]
        r2 = u[j + 2]
        r3 = u[j + 3]
        r4 = u[j + 4]
        r5 = u[j + 5]
        r6 = u[j + 6]
        r7 = u[j + 7]
        r8 = u[j + 8]
        p = up[j + 4]
        mm = m[j + 4]
        o = un[j + 4]
        for i in range(nc):
            ii = i + 4
            lap = (
                c0 * r4[ii]
                + c1 * ((r4[i + 3] + r4[i + 5]) + (r3[ii] + r5[ii]))
                + c2 * ((r4[i + 2] + r4[i + 6]) + (r2[ii] + r6[ii]))
                + c3 * ((r4[i + 1] + r4[i + 7]) + (r1[ii] + r7[ii]))
                + c4 * ((r4[i] + r4[i + 8]) + (r0[ii] + r8[ii]))
            )
            o[ii] = 2 * r4[ii] - p[ii] + mm[ii] * lap


@njit(parallel=True, cache=True)
def wave_step_peak(
    up: np.ndarray,
    u: np.ndarray,
    m: np.ndarray,
    un: np.ndarray,
    peak: np.ndarray,
    inv2dt: Any,
    c0: Any,
    c1: Any,
    c2: Any,
    c3: Any,
    c4: Any,
) -> None:  # pragma: no cover
    """:func:`wave_step` that also keeps ``peak = max(peak, |un - up| / (2 dt))`` (PGV-like map)."""
    nr = u.shape[0] - 8
    nc = u.shape[1] - 8
    for j in prange(nr):
        r0 = u[j]
        r1 = u[j + 1]
        r2 = u[j + 2]
        r3 = u[j + 3]
        r4 = u[j + 4]
        r5 = u[j + 5]
        r6 = u[j + 6]
        r7 = u[j + 7]
        r8 = u[j + 8]
        p = up[j + 4]
        mm = m[j + 4]
        o = un[j + 4]
        pk = peak[j + 4]
        for i in range(nc):
            ii = i + 4
            lap = (
                c0 * r4[ii]
                + c1 * ((r4[i + 3] + r4[i + 5]) + (r3[ii] + r5[ii]))
                + c2 * ((r4[i + 2] + r4[i + 6]) + (r2[ii] + r6[ii]))
                + c3 * ((r4[i + 1] + r4[i + 7]) + (r1[ii] + r7[ii]))
                + c4 * ((r4[i] + r4[i + 8]) + (r0[ii] + r8[ii]))
            )
            v = 2 * r4[ii] - p[ii] + mm[ii] * lap
            o[ii] = v
            vel = abs(v - p[ii]) * inv2dt
            pk[ii] = max(pk[ii], vel)


@njit(cache=True)
def apply_damping(
    un: np.ndarray, up: np.ndarray, damp: np.ndarray, r0: int, r1: int, c0: int, c1: int
) -> None:  # pragma: no cover - numba
    """Turn the undamped step into the damped one on rows ``r0:r1``, cols ``c0:c1`` (array indices).

    For ``u_tt + 2 eta u_t = c^2 lap u`` the centred step is ``(un + eta dt up) / (1 + eta dt)``
    where ``un`` is the undamped update; ``damp`` holds ``eta dt``.
    """
    for j in range(r0, r1):
        for i in range(c0, c1):
            d = damp[j, i]
            if d != 0:
                un[j, i] = (un[j, i] + d * up[j, i]) / (1 + d)


def wave_step_numpy(up: np.ndarray, u: np.ndarray, m: np.ndarray, un: np.ndarray) -> None:
    """The same step as :func:`wave_step` with numpy slicing (reference for tests and the bench)."""
    c = [np.asarray(x, dtype=u.dtype) for x in wave_coeffs(u.dtype)]
    h = HALO_WAVE
    ny, nx = u.shape[0] - 2 * h, u.shape[1] - 2 * h
    centre = u[h : h + ny, h : h + nx]
    lap = c[0] * centre
    for k in range(1, 5):
        lap = lap + c[k] * (
            (u[h : h + ny, h - k : h - k + nx] + u[h : h + ny, h + k : h + k + nx])
            + (u[h - k : h - k + ny, h : h + nx] + u[h + k : h + k + ny, h : h + nx])
        )
    un[h : h + ny, h : h + nx] = 2 * centre - up[h : h + ny, h : h + nx] + m[h : h + ny, h : h + nx] * lap


def wave_mode_cos(courant2: float, kx: int, ky: int, nx: int, ny: int) -> float:
    """``cos(omega dt)`` of the periodic mode ``(kx, ky)`` under :func:`wave_step` with ``m = courant2``.

    The 8th-order Laplacian multiplies the mode by ``-(s(kx) + s(ky))`` with
    ``s(k) = -(c0 + 2 sum_m c_m cos(2 pi m k / n))``, so the leapfrog amplitude obeys
    ``a[n+1] = (2 - m s) a[n] - a[n-1]`` and ``cos(omega dt) = 1 - m s / 2``.
    """
    c = WAVE8_COEFFS

    def s(k: int, n: int) -> float:
        th = 2 * np.pi * k / n
        return -(c[0] + 2 * sum(c[m] * np.cos(m * th) for m in range(1, 5)))

    return 1.0 - courant2 * (s(kx, nx) + s(ky, ny)) / 2.0
