"""Turn instance records into DAGs: the body of ``dags/hpcai_template_instances.py``.

Reads files only (no database, no network). One bad instance is logged and skipped so
that it cannot take the other instances' DAGs down with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_provider_hpcai.templates.repository import TemplateRepository

__all__ = ["load_instance_dags"]

log = logging.getLogger(__name__)


def load_instance_dags(repository: TemplateRepository | None = None) -> dict[str, DAG]:
    """Build one DAG per instance record.

    :param repository: the repository to read (default: the configured one).
    :return: ``{dag_id: DAG}``; instances that fail are logged and left out.
    """
    from airflow_provider_hpcai.templates.manifest import validate_params
    from airflow_provider_hpcai.templates.repository import open_repository
    from airflow_provider_hpcai.templates.stages import build_dag

    try:
        repo = repository or open_repository()
        records = repo.list_instances()
    except Exception:
        log.exception("hpcai templates: cannot read the template repository; no instance DAGs this time")
        return {}
    dags: dict[str, DAG] = {}
    templates: dict[tuple[str, str], Any] = {}
    for record in records:
        try:
            key = (str(record["template"]), str(record["version"]))
            if key not in templates:
                templates[key] = repo.get(*key)
            template = templates[key]
            if record.get("checksum") and record["checksum"] != template.checksum:
                raise ValueError(
                    f"template {key[0]} {key[1]} changed since the instance was created (checksum mismatch)"
                )
            params = validate_params(template.manifest, record.get("params"))
            dag = build_dag(template.manifest, {**record, "params": params}, factory_allowlist=repo.settings.factory_allowlist)
            if dag.dag_id in dags:
                raise ValueError(f"dag_id {dag.dag_id!r} is used by another instance")
            dags[dag.dag_id] = dag
        except Exception as err:  # one bad record must not hide the others
            log.error("hpcai templates: skipping instance %s: %s", record.get("id", "?"), err)
    return dags
