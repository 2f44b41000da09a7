"""High-resolution rainfall analysis of one storm found by the climate kernel.

``python -m simulation_kernels.climate.rainfall --input RUN_DIR --storm ID --output DIR``
reads ``summary.json``, ``rain_accum.npy`` and ``storm_labels.npy`` from a climate run, cuts the
storm's window (with a margin, wrapping around the periodic edges), refines it by bilinear
interpolation and writes ``storm_<ID>.json`` (totals, exceedance areas, areal reduction,
Gumbel exceedance levels) and ``storm_<ID>_refined.npy``. A workflow maps it over
``summary.json["storms"]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulation_kernels.common.config import write_json
from simulation_kernels.common.progress import ProgressReporter

__all__ = ["analyse_storm", "gumbel_levels", "main", "upsample"]

THRESHOLDS_MM = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0)
RETURN_PERIODS = (2, 5, 10, 25, 50, 100)


def _interp_matrix(n: int, r: int) -> np.ndarray:
    """``(n r, n)`` matrix of bilinear weights from cell centres to ``r x`` finer cell centres."""
    x = (np.arange(n * r) + 0.5) / r - 0.5
    x = np.clip(x, 0, n - 1)
    lo = np.minimum(np.floor(x).astype(int), n - 2) if n > 1 else np.zeros(n * r, int)
    w = x - lo
    m = np.zeros((n * r, n))
    if n == 1:
        m[:, 0] = 1.0
        return m
    m[np.arange(n * r), lo] = 1 - w
    m[np.arange(n * r), lo + 1] += w
    return m


def upsample(field: np.ndarray, r: int) -> np.ndarray:
    """Bilinear refinement of ``field`` by an integer factor ``r`` (``r = 1`` returns a copy)."""
    if r == 1:
        return field.astype(np.float64).copy()
    my, mx = _interp_matrix(field.shape[0], r), _interp_matrix(field.shape[1], r)
    return my @ field @ mx.T


def gumbel_levels(values: np.ndarray, periods: Sequence[int] = RETURN_PERIODS) -> dict[str, Any]:
    """Fit a Gumbel law by moments and return the level exceeded with probability ``1/T`` for each ``T``.

    Applied to the cell depths of one storm, a level is the depth exceeded on ``1/T`` of its area.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or float(v.std()) == 0.0:
        return {
            "loc": float(v.mean()) if v.size else 0.0,
            "scale": 0.0,
            "levels_mm": {str(t): float(v.mean()) if v.size else 0.0 for t in periods},
        }
    scale = float(v.std(ddof=1)) * math.sqrt(6) / math.pi
    loc = float(v.mean()) - 0.5772156649 * scale
    return {
        "loc": loc,
        "scale": scale,
        "levels_mm": {str(t): loc - scale * math.log(-math.log(1 - 1 / t)) for t in periods},
        "empirical_mm": {str(t): float(np.quantile(v, 1 - 1 / t)) for t in periods},
    }


def analyse_storm(
    run_dir: Path, storm_id: int, *, refine: int = 4, margin: int = 2
) -> tuple[dict[str, Any], np.ndarray]:
    """Analyse storm ``storm_id`` of the climate run in ``run_dir``.

    :raises ValueError: if the run folder lacks the files or the storm id is unknown.
    """
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise ValueError(f"{str(run_dir)!r} is not a climate run folder: summary.json is missing")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    storms = {s["id"]: s for s in summary.get("storms", [])}
    if storm_id not in storms:
        ids = ", ".join(map(str, sorted(storms))) or "none"
        raise ValueError(f"storm {storm_id} is not in {str(summary_path)!r}; storm ids there: {ids}")
    for name in ("rain_accum.npy", "storm_labels.npy"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{str(run_dir / name)!r} is missing: run the climate kernel first")
    storm = storms[storm_id]
    accum = np.load(run_dir / "rain_accum.npy")
    labels = np.load(run_dir / "storm_labels.npy")
    box = storm["bbox"]
    ny, nx = accum.shape
    rows = np.arange(box["row0"] - margin, box["row1"] + margin)
    cols = np.arange(box["col0"] - margin, box["col1"] + margin)
    if rows.size > ny:  # a storm (plus margin) as wide as the periodic grid: take each row once
        rows = np.arange(box["row0"], box["row0"] + ny)
    if cols.size > nx:
        cols = np.arange(box["col0"], box["col0"] + nx)
    win = accum.take(rows, axis=0, mode="wrap").take(cols, axis=1, mode="wrap")
    mask = labels.take(rows, axis=0, mode="wrap").take(cols, axis=1, mode="wrap") == storm_id
    fine = np.maximum(upsample(win, refine), 0.0)
    fine_mask = np.kron(mask, np.ones((refine, refine), dtype=bool))
    dx = float(summary["dx_km"])
    fine_km2 = (dx / refine) ** 2
    inside = fine[fine_mask]
    ordered = np.sort(inside)[::-1]
    areal = {}
    for frac in (0.01, 0.1, 0.25, 0.5, 1.0):
        k = max(1, round(frac * ordered.size))
        areal[f"{int(frac * 100)}%"] = float(ordered[:k].mean())
    result = {
        "storm": storm,
        "refine": refine,
        "window": {
            "rows": [int(rows[0]), int(rows[-1]) + 1],
            "cols": [int(cols[0]), int(cols[-1]) + 1],
            "shape_refined": list(fine.shape),
        },
        "cell_km2_refined": fine_km2,
        "rain_volume_m3_coarse": float(win[mask].sum() * dx * dx * 1e3),
        "rain_volume_m3_refined": float(inside.sum() * fine_km2 * 1e3),
        "max_accum_mm_refined": float(inside.max()),
        "mean_accum_mm": float(inside.mean()),
        "exceedance_area_km2": {f"{t:g}mm": float((inside > t).sum() * fine_km2) for t in THRESHOLDS_MM},
        "areal_reduction_mm": areal,
        "gumbel": gumbel_levels(inside),
    }
    return result, fine


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; exit code 2 with one ``error:`` line on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m simulation_kernels.climate.rainfall",
        description="high-resolution rainfall analysis of one storm",
    )
    parser.add_argument("--input", required=True, help="output folder of a climate run")
    parser.add_argument("--storm", required=True, type=int, help="storm id from summary.json['storms']")
    parser.add_argument("--output", required=True, help="folder for storm_<ID>.json and the refined field")
    parser.add_argument("--refine", type=int, default=4, help="refinement factor (1-16)")
    parser.add_argument("--margin", type=int, default=2, help="cells around the bounding box")
    args = parser.parse_args(argv)
    progress = ProgressReporter(3, lines=3, unit="stage")
    try:
        if not 1 <= args.refine <= 16:
            raise ValueError(f"--refine must be between 1 and 16, got {args.refine}")
        if args.margin < 0:
            raise ValueError(f"--margin must be >= 0, got {args.margin}")
        progress.update(1)
        result, fine = analyse_storm(Path(args.input), args.storm, refine=args.refine, margin=args.margin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    progress.update(2)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"storm_{args.storm}_refined.npy", fine)
    write_json(out / f"storm_{args.storm}.json", result)
    progress.update(3)
    print(
        f"done: storm {args.storm}: {result['rain_volume_m3_refined']:.4g} m3, "
        f"max {result['max_accum_mm_refined']:.3g} mm",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
