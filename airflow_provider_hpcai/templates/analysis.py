"""Analyses a composed workflow's ``dask_analysis`` stage may run (see :data:`.stage_kinds.ANALYSES`).

Each is ``function(client, results, output_dir, **options)``: ``client`` is a Dask client (the
stage's connection, a local cluster by default), ``results`` the upstream stages' XCom results.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bar_chart", "flatten_numbers", "summary_table"]

_MAX_COLUMNS = 256


def flatten_numbers(value: Any, prefix: str = "") -> dict[str, float | int]:
    """The numbers in ``value`` (nested mappings), keyed by dotted path; lists and text are left out."""
    out: dict[str, float | int] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, bool):
                continue
            if isinstance(item, (int, float)):
                out[path] = item
            elif isinstance(item, Mapping):
                out.update(flatten_numbers(item, path))
    return out


def _row(result: Any) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        return {}
    row: dict[str, Any] = {}
    if isinstance(result.get("summary"), Mapping):
        row.update(flatten_numbers(result["summary"]))
    job = result.get("job") if isinstance(result.get("job"), Mapping) else result
    for key in ("elapsed_seconds", "max_rss_bytes", "total_cpu_seconds"):
        if isinstance(job.get(key), (int, float)) and not isinstance(job.get(key), bool):
            row[f"job.{key}"] = job[key]
    if result.get("kernel"):
        row["kernel"] = str(result["kernel"])
    return row


def _flat(results: Any) -> list[Any]:
    items: list[Any] = []
    for item in results if isinstance(results, Sequence) and not isinstance(results, (str, bytes)) else [results]:
        if isinstance(item, Sequence) and not isinstance(item, (str, bytes, Mapping)):
            items.extend(item)  # a mapped upstream stage gives a list of results
        else:
            items.append(item)
    return items


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, path: str) -> str:
    """A bar chart (matplotlib, Agg) of one number per row, as a PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    try:
        ax.bar(range(len(values)), values, color="#4c78a8")
        ax.set_xticks(range(len(values)), [str(label)[:24] for label in labels], rotation=20, ha="right")
        ax.set_title(title[:80])
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def summary_table(client: Any, results: Any, output_dir: str, columns: Sequence[str] | None = None,
                  chart: str = "job.elapsed_seconds") -> dict[str, Any]:
    """One row per upstream result (its summary's numbers and the job's usage), as ``table.csv``,
    and a bar chart of the ``chart`` column (``chart.png``, when matplotlib is installed).

    The rows are computed on the Dask cluster (one task per result). Returns ``{"rows",
    "columns", "outputs"}``: ``outputs`` declares the files for the run monitor.
    """
    items = _flat(results)
    rows = client.gather(client.map(_row, items, pure=False)) if items else []
    names = list(columns or sorted({key for row in rows for key in row}))[:_MAX_COLUMNS]
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "table.csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())
    table = [{key: row.get(key) for key in names} for row in rows]
    outputs = [{"kind": "csv", "path": path, "title": "Summary table"}]
    plotted = [(f"{row.get('kernel') or 'result'} {i + 1}", row[chart]) for i, row in enumerate(rows)
               if isinstance(row.get(chart), (int, float)) and not isinstance(row.get(chart), bool)]
    if plotted:
        try:
            image = bar_chart([p[0] for p in plotted], [p[1] for p in plotted], chart,
                              os.path.join(output_dir, "chart.png"))
        except ImportError:  # matplotlib is optional: the table is the result
            image = None
        if image:
            outputs.append({"kind": "png", "path": image, "title": f"{chart} per result"})
    return {"rows": table, "columns": names, "outputs": outputs}
