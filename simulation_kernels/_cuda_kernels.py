"""CUDA kernels of :mod:`simulation_kernels.gpu` (imported only when the CUDA path is used).

Module-level ``cuda`` and ``math`` names so that the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)
can substitute its own ``cuda`` module.
"""

# mypy: ignore-errors
# pragma: no cover - compiled by numba.cuda
from __future__ import annotations

import math

from numba import cuda

__all__ = ["KERNELS"]


@cuda.jit
def heat(u, out, rx, ry):
    i, j = cuda.grid(2)
    nr = u.shape[0] - 2
    nc = u.shape[1] - 2
    if j < nr and i < nc:
        c = 1 - 2 * rx - 2 * ry
        out[j + 1, i + 1] = (
            c * u[j + 1, i + 1] + rx * (u[j + 1, i] + u[j + 1, i + 2]) + ry * (u[j, i + 1] + u[j + 2, i + 1])
        )


@cuda.jit
def wave(up, u, m, un, peak, inv2dt, with_peak, c0, c1, c2, c3, c4):
    i, j = cuda.grid(2)
    nr = u.shape[0] - 8
    nc = u.shape[1] - 8
    if j < nr and i < nc:
        jj = j + 4
        ii = i + 4
        lap = (
            c0 * u[jj, ii]
            + c1 * ((u[jj, i + 3] + u[jj, i + 5]) + (u[j + 3, ii] + u[j + 5, ii]))
            + c2 * ((u[jj, i + 2] + u[jj, i + 6]) + (u[j + 2, ii] + u[j + 6, ii]))
            + c3 * ((u[jj, i + 1] + u[jj, i + 7]) + (u[j + 1, ii] + u[j + 7, ii]))
            + c4 * ((u[jj, i] + u[jj, i + 8]) + (u[j, ii] + u[j + 8, ii]))
        )
        v = 2 * u[jj, ii] - up[jj, ii] + m[jj, ii] * lap
        un[jj, ii] = v
        if with_peak:
            vel = abs(v - up[jj, ii]) * inv2dt
            peak[jj, ii] = max(peak[jj, ii], vel)


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
        t = (
            tc
            - ap * (tc - T[jj, i])
            - am * (T[jj, i + 2] - tc)
            - bp * (tc - T[j, ii])
            - bm * (T[j + 2, ii] - tc)
            + kx * ((T[jj, i] + T[jj, i + 2]) - 2.0 * tc)
            + ky * ((T[j, ii] + T[j + 2, ii]) - 2.0 * tc)
        )
        wc = W[jj, ii]
        w = (
            wc
            - ap * (wc - W[jj, i])
            - am * (W[jj, i + 2] - wc)
            - bp * (wc - W[j, ii])
            - bm * (W[j + 2, ii] - wc)
            + kx * ((W[jj, i] + W[jj, i + 2]) - 2.0 * wc)
            + ky * ((W[j, ii] + W[j + 2, ii]) - 2.0 * wc)
        )
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
        peak[jj, ii] = max(peak[jj, ii], r)
        Tn[jj, ii] = t
        Wn[jj, ii] = w


KERNELS = {
    "heat": heat,
    "wave": wave,
    "damping": damping,
    "fill_cols": fill_cols,
    "fill_rows": fill_rows,
    "add_point": add_point,
    "record": record,
    "climate": climate,
}
