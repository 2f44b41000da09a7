"""Adaptive climate case study: storms found by a climate run drive per-storm rainfall analyses.

Flow (``dags/climate_adaptive.py``): :func:`plan_run` -> the ``climate`` kernel on MPI ranks ->
:func:`storm_requests` (one request per detected storm, none when it is dry) -> one
high-resolution rainfall job per storm (:class:`~.operators.StormRainfallOperator`) ->
:func:`aggregate_rainfall` on Dask: rainfall totals per storm and for the domain, and maps.

numpy, dask and matplotlib are imported inside functions only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_hpcai.casestudies.common import clean, write_json
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "aggregate_rainfall",
    "block_volumes",
    "label_volumes",
    "plan_run",
    "rainfall_budget",
    "storm_requests",
]

#: DAG params that are climate-kernel parameters, passed through as they are.
KERNEL_KEYS = ("nx", "ny", "steps", "seed", "storm_threshold_mm_h", "storm_min_cells")


def plan_run(params: Mapping[str, Any], backend: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The climate run's operator arguments (one row for ``expand_kwargs``), checked before submission.

    :param params: DAG params: ``nx``, ``ny``, ``steps``, ``seed``, ``storm_threshold_mm_h``,
        ``storm_min_cells``, ``ranks``, ``max_storms``, ``climate_overrides`` (other kernel
        parameters, e.g. ``{"initial_rh": 0.5}``) and ``container`` (optional: the image the run
        and its storm analyses run in, :class:`~airflow_provider_hpcai.containers.Container` fields).
    :param backend: ``backend``/``conn_id``/``workdir`` (:func:`~.common.backend_kwargs`).
    :raises InvalidJobSpecError: the kernel's validator refused the parameters (its message says why).
    """
    from airflow_provider_hpcai.kernel_params import validate

    overrides = params.get("climate_overrides") or {}
    if not isinstance(overrides, Mapping):
        raise InvalidJobSpecError("climate_overrides must be a mapping of climate-kernel parameters")
    kernel = {**dict(overrides), **{k: params[k] for k in KERNEL_KEYS if params.get(k) is not None}}
    kernel["max_storms"] = int(params.get("max_storms") or 50)
    kernel.setdefault("progress_lines", 5)
    ranks = int(params.get("ranks") or 1)
    try:
        validate("climate", kernel, ranks)
    except ValueError as err:
        raise InvalidJobSpecError(f"climate run: {err}") from err
    row = {"kernel_params": kernel, "ranks": ranks, **backend}
    if params.get("container"):  # the run (and, through its result, each storm's analysis) in this image
        from airflow_provider_hpcai.containers import Container

        try:
            row["container"] = Container.from_dict(params["container"]).to_dict()
        except InvalidJobSpecError as err:
            raise InvalidJobSpecError(f"climate run: {err}") from None
    return [row]


def storm_requests(run: Mapping[str, Any], backend: Mapping[str, Any], *, refine: int = 4,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """One rainfall-analysis request per storm the run detected (an empty list when none).

    :param run: the climate task's result (``output_dir``, ``summary``; its ``container``, when it
        ran in one, is where the analyses run too).
    :param backend: ``backend``/``conn_id``/``workdir`` for the analysis jobs.
    :param refine: refinement factor of the high-resolution analysis.
    :param limit: analyse at most this many storms (the wettest first, as the kernel sorts them).
    """
    storms = list((run.get("summary") or {}).get("storms") or [])
    if limit is not None:
        storms = storms[: max(0, int(limit))]
    run_dir = str(run["output_dir"])
    same_image = {"container": run["container"]} if run.get("container") else {}
    return [{"run_dir": run_dir, "storm_id": int(s["id"]), "refine": int(refine),
             "output_dir": f"{run_dir.rstrip('/')}/storms/storm_{int(s['id'])}", **backend, **same_image}
            for s in storms]


def label_volumes(rain_mm: Any, labels: Any, n_labels: int) -> Any:
    """Rain (mm summed over cells) per label ``0..n_labels-1`` of one block (label 0: no storm)."""
    import numpy as np

    return np.bincount(np.asarray(labels, dtype=np.int64).ravel(), weights=np.asarray(rain_mm, float).ravel(),
                       minlength=n_labels)[:n_labels]


def rainfall_budget(rain_mm: Any, labels: Any, cell_km2: float) -> dict[str, Any]:
    """Rain volumes (m3) per storm, outside storms and for the whole domain; they add up.

    :param rain_mm: accumulated rain per cell (mm).
    :param labels: storm id per cell (0: no storm).
    :param cell_km2: area of one cell (km2).
    """
    import numpy as np

    labels = np.asarray(labels)
    n = int(labels.max()) + 1 if labels.size else 1
    per = label_volumes(rain_mm, labels, n) * cell_km2 * 1e3  # mm * km2 = 1e3 m3
    return {"total_m3": float(np.sum(np.asarray(rain_mm, float)) * cell_km2 * 1e3),
            "background_m3": float(per[0]),
            "storms_m3": {int(i): float(v) for i, v in enumerate(per) if i > 0}}


def block_volumes(run_dir: str, row0: int, row1: int, n_labels: int) -> list[float]:
    """Rain per label in rows ``row0:row1`` of a run's fields (runs on a Dask worker; reads memory-mapped)."""
    import numpy as np

    rain = np.load(os.path.join(run_dir, "rain_accum.npy"), mmap_mode="r")[row0:row1]
    labels = np.load(os.path.join(run_dir, "storm_labels.npy"), mmap_mode="r")[row0:row1]
    return label_volumes(rain, labels, n_labels).tolist()


def aggregate_rainfall(client: Client, run: Mapping[str, Any], storms: Sequence[Mapping[str, Any]] | None,
                       results_dir: str, *, blocks: int = 4) -> dict[str, Any]:
    """Rainfall totals and maps from a climate run and its per-storm analyses, computed on Dask.

    Volumes per label are summed over row blocks on the workers (each reads its rows of the
    memory-mapped fields), so the domain total equals storms plus background exactly as the
    fields do. Writes ``rainfall.json``, ``rainfall_map.png`` and ``storm_panels.png`` into
    ``results_dir``.

    :param client: the Dask client.
    :param run: the climate task's result.
    :param storms: the per-storm analysis results (:class:`~.operators.StormRainfallOperator`;
        ``[]`` or ``None`` when no storm was found).
    :param results_dir: where to write the totals and plots.
    :param blocks: row blocks (Dask tasks) over the grid.
    """
    import numpy as np

    from airflow_provider_hpcai.casestudies import plots

    run_dir = str(run["output_dir"])
    summary = run.get("summary") or {}
    shape = np.load(os.path.join(run_dir, "rain_accum.npy"), mmap_mode="r").shape
    found = list(summary.get("storms") or [])
    n_labels = 1 + max([int(s["id"]) for s in found], default=0)
    edges = np.linspace(0, shape[0], min(blocks, shape[0]) + 1).astype(int)
    futures = client.map(block_volumes, [run_dir] * (len(edges) - 1), edges[:-1].tolist(), edges[1:].tolist(),
                         [n_labels] * (len(edges) - 1), pure=False)
    per_label = np.sum(np.asarray(client.gather(futures), dtype=float), axis=0)
    cell_km2 = float(summary.get("dx_km") or 1.0) ** 2
    volumes = per_label * cell_km2 * 1e3
    analyses = [s["analysis"] for s in (storms or []) if s.get("analysis")]
    by_id = {int(a["storm"]["id"]): a for a in analyses}
    rows = []
    for s in found:
        sid = int(s["id"])
        a = by_id.get(sid, {})
        rows.append({"id": sid, "area_km2": s["area_km2"], "max_accum_mm": s["max_accum_mm"],
                     "volume_m3": float(volumes[sid]), "kernel_volume_m3": s["rain_volume_m3"],
                     "refined_volume_m3": a.get("rain_volume_m3_refined"),
                     "refined_max_mm": a.get("max_accum_mm_refined"),
                     "gumbel_100_mm": (a.get("gumbel") or {}).get("levels_mm", {}).get("100"),
                     "analysed": sid in by_id})
    total = float(volumes.sum())
    storms_total = float(volumes[1:].sum())
    result = {
        "run_dir": run_dir, "grid": list(shape), "dx_km": summary.get("dx_km"),
        "simulated_hours": summary.get("simulated_hours"), "n_storms": len(found), "n_analysed": len(by_id),
        "total_m3": total, "storms_m3": storms_total, "background_m3": float(volumes[0]),
        "storm_share": storms_total / total if total > 0 else 0.0, "storms": rows,
        "max_accum_mm": summary.get("rain_max_accum_mm"), "dask_tasks": len(futures),
    }
    rain = np.load(os.path.join(run_dir, "rain_accum.npy"))
    labels = np.load(os.path.join(run_dir, "storm_labels.npy"))
    result["plots"] = {"rainfall_map": plots.rainfall_map(rain, labels, found, summary.get("dx_km") or 1.0,
                                                          os.path.join(results_dir, "rainfall_map.png"))}
    refined = [(sid, os.path.join(s["output_dir"], f"storm_{s['storm_id']}_refined.npy"))
               for s in (storms or []) if (sid := int(s["storm_id"])) in by_id]
    if refined:
        result["plots"]["storm_panels"] = plots.storm_panels(refined, by_id,
                                                             os.path.join(results_dir, "storm_panels.png"))
    write_json(os.path.join(results_dir, "rainfall.json"), result)
    return clean(result)
