"""The per-storm rainfall analysis as a job on any backend (local, Slurm, Kubernetes)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from airflow_provider_hpcai.exceptions import HpcAiError, InvalidJobSpecError
from airflow_provider_hpcai.operators.base import BaseJobOperator
from airflow_provider_hpcai.operators.simulation import command_line

__all__ = ["StormRainfallOperator", "rainfall_script"]

_MAX_JSON = 4 * 1024 * 1024


def rainfall_script(*, python: str, run_dir: str, storm_id: int, output_dir: str, refine: int = 4,
                    margin: int = 2) -> str:
    """The bash script of one storm's analysis (pure; every value shell-quoted).

    :param python: the interpreter on the machine the job runs on.
    :param run_dir: the climate run's output folder.
    :param storm_id: the storm to analyse (``summary.json["storms"][i]["id"]``).
    :param output_dir: where ``storm_<id>.json`` and ``storm_<id>_refined.npy`` go.
    :param refine: refinement factor (1-16).
    :param margin: cells of margin around the storm's bounding box.
    """
    for name, value, low, high in (("storm_id", storm_id, 1, 10**6), ("refine", refine, 1, 16),
                                   ("margin", margin, 0, 64)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidJobSpecError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    for name, value in (("run_dir", run_dir), ("output_dir", output_dir)):
        if not isinstance(value, str) or not value.strip() or any(c in value for c in "\x00\n\r"):
            raise InvalidJobSpecError(f"{name} {value!r} must be a folder path on one line")
    argv = [python, "-m", "simulation_kernels.climate.rainfall", "--input", run_dir, "--storm", str(storm_id),
            "--output", output_dir, "--refine", str(refine), "--margin", str(margin)]
    return "\n".join(["set -euo pipefail", "export PYTHONUNBUFFERED=1", f"mkdir -p -- {shlex.quote(output_dir)}",
                      command_line(argv), ""])


class StormRainfallOperator(BaseJobOperator):
    """Run the high-resolution rainfall analysis of one storm as a job and return its figures.

    Usually mapped over the storms a climate run found (``.partial(...).expand_kwargs(...)``).
    Returns (XCom) ``{"storm_id", "output_dir", "analysis", "job"}`` where ``analysis`` is
    ``storm_<id>.json`` (volumes, exceedance areas, Gumbel levels).

    :param run_dir: the climate run's output folder (templated).
    :param storm_id: the storm's id.
    :param output_dir: where the analysis writes (templated).
    :param refine: refinement factor of the window (bilinear).
    :param margin: cells around the storm's bounding box.
    :param python: the interpreter on the machine the job runs on (default: the backend's; with
        ``container=``, the image's ``python``).
    :param backend: a backend of :data:`~airflow_provider_hpcai.backends.BACKENDS` whose jobs' files
        the worker can read (``"local"``, ``"slurm"``...).
    """

    template_fields: Sequence[str] = ("run_dir", "output_dir", "environment", "job_name", "workdir")
    ui_color = "#d8ecf7"

    def __init__(self, *, run_dir: str, storm_id: int, output_dir: str, refine: int = 4, margin: int = 2,
                 python: str | None = None, backend: str = "local",
                 **kwargs: Any) -> None:
        kwargs.setdefault("job_resources", {"memory": "512M", "time_limit": "00:10:00"})
        super().__init__(backend=backend, **kwargs)
        self.run_dir = run_dir
        self.storm_id = storm_id
        self.output_dir = output_dir
        self.refine = refine
        self.margin = margin
        self.python = python

    def build_script(self, context: Any) -> str:
        python = self.python or ("python" if self.container is not None else self.get_backend().python())
        return rainfall_script(python=python, run_dir=self.run_dir, storm_id=self.storm_id,
                               output_dir=self.output_dir, refine=self.refine, margin=self.margin)

    def advisor_key(self) -> dict[str, Any]:
        return {**super().advisor_key(), "kernel": "climate.rainfall", "refine": self.refine}

    def post_process(self, context: Any, result: dict[str, Any]) -> dict[str, Any]:
        path = f"{self.output_dir.rstrip('/')}/storm_{self.storm_id}.json"
        backend = self.get_backend()
        if not backend.reads_files:
            raise HpcAiError(f"the {self.backend} backend cannot read {path}: use a backend with a shared "
                             "file system (local or Slurm) for the rainfall analyses")
        data = backend.read_file(path, 0, _MAX_JSON)
        if not data:
            raise HpcAiError(f"storm {self.storm_id}: the analysis wrote no {path}; read the job's output above")
        analysis = json.loads(data)
        self.log.info("Storm %s: %.3g m3 (refined), max %.1f mm", self.storm_id,
                      analysis.get("rain_volume_m3_refined", float("nan")),
                      analysis.get("max_accum_mm_refined", float("nan")))
        return {"storm_id": self.storm_id, "output_dir": self.output_dir, "analysis": analysis, "job": result}
