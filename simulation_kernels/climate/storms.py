"""Storm-cell detection: connected regions of rain rate above a threshold on a periodic grid."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["detect_storms", "label_periodic"]


@njit(cache=True)
def label_periodic(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:  # pragma: no cover
    """Label 8-connected regions of ``mask`` on a doubly periodic grid.

    :return: ``(labels, urow, ucol, n)``: labels 1..n (0 outside), and for each labelled cell
        its row/column "unwrapped" along the region (a region crossing an edge gets coordinates
        beyond the grid instead of being split), and the number of regions.
    """
    ny, nx = mask.shape
    labels = np.zeros((ny, nx), np.int32)
    urow = np.zeros((ny, nx), np.int64)
    ucol = np.zeros((ny, nx), np.int64)
    sj = np.empty(ny * nx, np.int64)
    si = np.empty(ny * nx, np.int64)
    n = 0
    for j0 in range(ny):
        for i0 in range(nx):
            if not mask[j0, i0] or labels[j0, i0] != 0:
                continue
            n += 1
            labels[j0, i0] = n
            urow[j0, i0] = j0
            ucol[j0, i0] = i0
            top = 0
            sj[top] = j0
            si[top] = i0
            top += 1
            while top > 0:
                top -= 1
                j = sj[top]
                i = si[top]
                y = urow[j, i]
                x = ucol[j, i]
                for dj in range(-1, 2):
                    for di in range(-1, 2):
                        if dj == 0 and di == 0:
                            continue
                        yy = y + dj
                        xx = x + di
                        jw = yy % ny
                        iw = xx % nx
                        if mask[jw, iw] and labels[jw, iw] == 0:
                            labels[jw, iw] = n
                            urow[jw, iw] = yy
                            ucol[jw, iw] = xx
                            sj[top] = jw
                            si[top] = iw
                            top += 1
    return labels, urow, ucol, n


def detect_storms(
    rate: np.ndarray, accum: np.ndarray, *, threshold: float, min_cells: int, max_storms: int, dx_km: float
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Find storm cells in a rain-rate map and describe each one.

    Storms are sorted by rain volume (largest first) and numbered from 1; at most
    ``max_storms`` are kept, each with at least ``min_cells`` cells.

    :param rate: rain-rate map (mm/h) that defines the cells.
    :param accum: accumulated rain (mm) used for totals.
    :return: ``(storms, labels)`` where ``labels`` holds the storm id of each cell (0: none).
    """
    labels, urow, ucol, n = label_periodic(rate > threshold)
    ny, nx = rate.shape
    flat = labels.ravel()
    cells = np.bincount(flat, minlength=n + 1)
    sum_rate = np.bincount(flat, weights=rate.ravel(), minlength=n + 1)
    sum_acc = np.bincount(flat, weights=accum.ravel(), minlength=n + 1)
    sum_r = np.bincount(flat, weights=urow.ravel().astype(np.float64), minlength=n + 1)
    sum_c = np.bincount(flat, weights=ucol.ravel().astype(np.float64), minlength=n + 1)
    big = np.iinfo(np.int64).max
    rmin = np.full(n + 1, big)
    cmin = np.full(n + 1, big)
    rmax = np.full(n + 1, -big)
    cmax = np.full(n + 1, -big)
    vmax = np.zeros(n + 1)
    amax = np.zeros(n + 1)
    np.minimum.at(rmin, flat, urow.ravel())
    np.minimum.at(cmin, flat, ucol.ravel())
    np.maximum.at(rmax, flat, urow.ravel())
    np.maximum.at(cmax, flat, ucol.ravel())
    np.maximum.at(vmax, flat, rate.ravel())
    np.maximum.at(amax, flat, accum.ravel())
    cell_km2 = dx_km * dx_km
    keep = [k for k in range(1, n + 1) if cells[k] >= min_cells]
    keep.sort(key=lambda k: (-sum_acc[k], k))
    keep = keep[:max_storms]
    out_labels = np.zeros((ny, nx), np.int32)
    lookup = np.zeros(n + 1, np.int32)
    storms = []
    for sid, k in enumerate(keep, start=1):
        lookup[k] = sid
        cr, cc = sum_r[k] / cells[k], sum_c[k] / cells[k]
        storms.append(
            {
                "id": sid,
                "n_cells": int(cells[k]),
                "area_km2": float(cells[k] * cell_km2),
                "centroid_row": float(cr % ny),
                "centroid_col": float(cc % nx),
                "centroid_x_km": float((cc % nx) * dx_km),
                "centroid_y_km": float((cr % ny) * dx_km),
                "max_rate_mm_h": float(vmax[k]),
                "mean_rate_mm_h": float(sum_rate[k] / cells[k]),
                "max_accum_mm": float(amax[k]),
                "mean_accum_mm": float(sum_acc[k] / cells[k]),
                "rain_volume_m3": float(sum_acc[k] * 1e-3 * cell_km2 * 1e6),
                "bbox": {
                    "row0": int(rmin[k]),
                    "row1": int(rmax[k]) + 1,
                    "col0": int(cmin[k]),
                    "col1": int(cmax[k]) + 1,
                },
            }
        )
    if n:
        out_labels = lookup[labels]
    return storms, out_labels
