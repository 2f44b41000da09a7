"""What each stage kind of a declarative manifest takes and gives: argument schemas and data types.

Pure data (no Airflow, no FastAPI). Used by the manifest checks (a hand-written manifest is held
to the same rules as a composed one), by DAG building, and by the composer's palette and live
validation.

Data types flow along edges: a stage's *output* type must be one its downstream stage accepts
(``any`` accepts everything: a plain ordering edge). A stage *mapped over* another runs once per
row of that stage's output, so the source must give ``rows``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANALYSES",
    "DASK_ARGS_SCHEMA",
    "KIND_TYPES",
    "MAPPABLE_KINDS",
    "RESOURCES_SCHEMA",
    "TEMPLATE_ARGS_SCHEMA",
    "accepts",
]

_NAME = r"^[a-z][a-z0-9_-]{0,63}\Z"
_CONN = {"type": "string", "maxLength": 250, "pattern": r"^[A-Za-z0-9_.-]*\Z"}

#: The analyses a ``dask_analysis`` stage may run: name -> ``module:function(client, results, ...)``.
ANALYSES: dict[str, str] = {
    "summary_table": "airflow_provider_hpcai.templates.analysis:summary_table",
}

#: A stage's ``job_resources`` as a form (``Resources.from_dict`` checks the rest).
RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Resources",
    "additionalProperties": False,
    "properties": {
        "nodes": {"type": "integer", "minimum": 1, "maximum": 100000, "title": "Nodes"},
        "ntasks": {"type": "integer", "minimum": 1, "maximum": 1000000, "title": "Tasks (MPI ranks)"},
        "cpus_per_task": {"type": "integer", "minimum": 1, "maximum": 4096, "title": "CPUs per task"},
        "memory": {"type": "string", "pattern": r"^[1-9][0-9]{0,9}[KMGT]?\Z", "title": "Memory (e.g. 512M, 4G)"},
        "gpus": {"type": "integer", "minimum": 0, "maximum": 64, "title": "GPUs"},
        "time_limit": {"type": "string", "pattern": r"^([0-9]{1,3}-)?[0-9]{1,2}:[0-5][0-9]:[0-5][0-9]\Z",
                       "title": "Time limit (HH:MM:SS)"},
        "partition": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}\Z", "title": "Partition"},
    },
}

DASK_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["analysis"],
    "properties": {
        "analysis": {"enum": sorted(ANALYSES), "title": "Analysis", "default": "summary_table"},
        "dask_conn_id": {**_CONN, "title": "Dask connection (empty: a local cluster)"},
        "columns": {"type": "array", "maxItems": 64, "title": "Columns (empty: every number)",
                    "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_.]{0,127}\Z"}},
        "chart": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_.]{0,127}\Z",
                  "title": "Column to chart", "default": "job.elapsed_seconds"},
    },
}

TEMPLATE_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "version"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME, "title": "Template"},
        "version": {"type": "string", "maxLength": 64, "title": "Version (pinned)"},
        "params": {"type": "object", "title": "Its parameters"},
    },
}

#: kind -> (output type, accepted input types). ``any`` accepts every type.
KIND_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bash": ("text", ("any",)),
    "empty": ("none", ("any",)),
    "slurm_job": ("job_result", ("any",)),
    "kubernetes_job": ("job_result", ("any",)),
    "simulation": ("simulation_result", ("any",)),
    "dask_analysis": ("rows", ("simulation_result", "job_result", "rows")),
    "template": ("none", ("any",)),
}
#: Kinds that can be mapped over rows (each row becomes part of the kernel parameters).
MAPPABLE_KINDS = frozenset({"simulation"})


def accepts(kind: str, source_kind: str) -> bool:
    """Whether a ``kind`` stage takes the output of a ``source_kind`` stage as its input."""
    accepted = KIND_TYPES.get(kind, ("none", ("any",)))[1]
    return "any" in accepted or KIND_TYPES.get(source_kind, ("none", ()))[0] in accepted
