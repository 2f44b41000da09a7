"""OpenLineage for the job operators, following the OpenLineage provider's conventions.

:meth:`BaseJobOperator.get_openlineage_facets_on_complete
<airflow_provider_hpcai.operators.base.BaseJobOperator.get_openlineage_facets_on_complete>`
returns an ``OperatorLineage`` (the OpenLineage provider also calls it when the task fails):

* inputs: the task's ``inlets``; outputs: its ``outlets`` (Assets translated as the OpenLineage
  provider translates them), or else the job's output folder when the task returns one
  (``SimulationOperator``), as ``file://<cluster>`` + path;
* run facets: ``hpcai_job`` (:class:`~airflow_provider_hpcai.lineage.facets.HpcJobRunFacet`: job id,
  backend, cluster, state, exit code, failure class, resources requested and used) and the
  standard ``externalQuery`` (the job id, with ``<backend>:<cluster>`` as its source).

Nothing here imports OpenLineage until a task completes; without the
``apache-airflow-providers-openlineage`` package the method returns ``None``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["job_facet_fields", "job_lineage"]

log = logging.getLogger(__name__)

_USED = (("elapsed_seconds", "elapsedSeconds"), ("max_rss_bytes", "maxRssBytes"),
         ("total_cpu_seconds", "totalCpuSeconds"), ("node_list", "nodeList"))


def job_facet_fields(ref: Mapping[str, Any], result: Mapping[str, Any] | None, cluster: str | None) -> dict[str, Any]:
    """The ``hpcai_job`` facet's fields from a job reference and its result (pure).

    :param ref: ``JobRef.to_dict()``.
    :param result: the job's result (``build_result``), or ``None`` before it finished.
    :param cluster: the cluster's name.
    """
    result = result or {}
    extra = dict(ref.get("extra") or {})
    location = {k: extra[k] for k in ("namespace", "kind", "workdir") if extra.get(k)}
    code = result.get("exit_code")
    return {
        "jobId": str(ref.get("job_id") or result.get("job_id") or ""),
        "backend": str(ref.get("backend") or result.get("backend") or ""),
        "cluster": cluster,
        "state": result.get("state"),
        "exitCode": int(code) if isinstance(code, (int, float)) and not isinstance(code, bool) else None,
        "failure": result.get("failure"),
        "requested": dict(result.get("requested") or {}),
        "used": {camel: result[key] for key, camel in _USED if result.get(key) is not None},
        "location": location,
    }


def _cluster(operator: Any, backend: str) -> str | None:
    """The cluster's name: the connection's ``cluster`` extra, else (Slurm) its host, else its id."""
    if backend == "local":
        return socket.gethostname()
    conn_id = getattr(operator, "conn_id", None)
    if not conn_id:
        return None
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # no such connection (the local Slurm CLI), or none reachable here
        return conn_id
    extras = conn.extra_dejson or {}
    return extras.get("cluster") or (conn.host if backend == "slurm" else None) or conn_id


def _datasets(assets: Iterable[Any]) -> list[Any]:
    """OpenLineage datasets of Assets: the OpenLineage provider's translation (a converter from the
    provider that owns the URI scheme), else ``scheme://authority`` + path, the dataset naming of
    OpenLineage for URIs."""
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset
    from openlineage.client.event_v2 import Dataset

    out = []
    for asset in assets or ():
        if not isinstance(asset, Asset):
            continue
        translated = translate_airflow_asset(asset, None)
        if translated is None:
            parts = urlsplit(asset.uri)
            if not parts.scheme:
                continue
            translated = Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path.lstrip("/") or "/")
        out.append(translated)
    return out


def job_lineage(operator: Any, outcome: Mapping[str, Any] | None) -> Any:
    """The task's ``OperatorLineage``, or ``None`` when the OpenLineage provider is not installed.

    :param operator: the job operator (its ``inlets``, ``outlets``, ``conn_id``, ``backend``, ``job_ref``).
    :param outcome: what the operator recorded when the job ended: ``{"ref", "result", "returned"}``;
        ``None`` when it never got that far (then only the job reference, if any, is reported).
    """
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
        from openlineage.client.facet_v2 import external_query_run

        from airflow_provider_hpcai.lineage.facets import HpcJobRunFacet
    except ImportError:
        return None
    inputs = _datasets(getattr(operator, "inlets", None) or ())
    outputs = _datasets(getattr(operator, "outlets", None) or ())
    ref_obj = getattr(operator, "job_ref", None)
    ref = dict((outcome or {}).get("ref") or (ref_obj.to_dict() if ref_obj is not None else {}))
    if not ref:
        return OperatorLineage(inputs=inputs, outputs=outputs)
    backend = str(ref.get("backend") or getattr(operator, "backend", ""))
    cluster = _cluster(operator, backend)
    returned = (outcome or {}).get("returned")
    if not outputs and isinstance(returned, Mapping) and isinstance(returned.get("output_dir"), str):
        host = cluster if backend == "slurm" else ""
        outputs.append(Dataset(namespace=f"file://{host or ''}", name=returned["output_dir"]))
    fields = job_facet_fields(ref, (outcome or {}).get("result"), cluster)
    run_facets = {
        "hpcai_job": HpcJobRunFacet(**fields),
        "externalQuery": external_query_run.ExternalQueryRunFacet(
            externalQueryId=fields["jobId"], source=f"{backend}:{cluster or 'unknown'}"
        ),
    }
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
