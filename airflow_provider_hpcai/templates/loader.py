"""Turn instance records into DAGs: the body of ``dags/hpcai_template_instances.py``.

Reads files only (no database, no network). One bad instance is logged and skipped so
that it cannot take the other instances' DAGs down with it.

Growth is bounded so that a parse cannot pass ``[core] dagbag_import_timeout`` (after which
every instance DAG would vanish at once):

* ``[hpcai] template_max_instances`` caps the instances one loader file builds (the oldest
  first); the rest are skipped with one logged error saying how many and what to do;
* ``shard=(k, n)`` builds only the instances whose id hashes to ``k`` of ``n``, so ``n`` copies
  of the loader file share the work, each parsed in its own process with its own timeout;
* DAGs are cached in the process, keyed by the instance record, the template's checksum and the
  settings that shape the DAG, so a second parse in one process rebuilds only what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_provider_hpcai.templates.repository import TemplateRepository

__all__ = ["in_shard", "load_instance_dags"]

log = logging.getLogger(__name__)
#: instance id -> (fingerprint, DAG) of the last build in this process.
_BUILT: dict[str, tuple[str, Any]] = {}


def in_shard(instance_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``instance_id`` belongs to ``shard`` (``(k, n)``: the k-th of n, from 0); ``None``: all."""
    if shard is None:
        return True
    index, count = shard
    if not (isinstance(count, int) and isinstance(index, int) and count >= 1 and 0 <= index < count):
        raise ValueError(f"shard {shard!r} must be (k, n) with 0 <= k < n, e.g. (0, 4)")
    return int(hashlib.sha256(instance_id.encode()).hexdigest()[:8], 16) % count == index


def load_instance_dags(
    repository: TemplateRepository | None = None, *, shard: tuple[int, int] | None = None
) -> dict[str, DAG]:
    """Build one DAG per instance record.

    :param repository: the repository to read (default: the configured one).
    :param shard: ``(k, n)``: build only the k-th of n shards of the instances (see the module).
    :return: ``{dag_id: DAG}``; instances that fail are logged and left out.
    """
    from airflow_provider_hpcai.templates.configured import open_repository
    from airflow_provider_hpcai.templates.manifest import validate_params
    from airflow_provider_hpcai.templates.stages import build_dag

    try:
        repo = repository or open_repository()
        records = [r for r in repo.list_instances() if in_shard(str(r.get("id", "")), shard)]
    except Exception:
        log.exception("hpcai templates: cannot read the template repository; no instance DAGs this time")
        return {}
    settings = repo.settings
    limit = settings.max_instances
    if limit and len(records) > limit:
        log.error(
            "hpcai templates: %d instances to load, more than [hpcai] template_max_instances = %d; the oldest %d "
            "are loaded and %d instances (the newest) are not. Delete unused instances, split the loader into "
            "shards (docs/templates.md) or raise the limit",
            len(records), limit, limit, len(records) - limit,
        )
        records = records[:limit]
    shape = json.dumps([settings.factory_allowlist, settings.bash_programs, settings.job_scripts])
    dags: dict[str, DAG] = {}
    templates: dict[tuple[str, str], Any] = {}
    built: dict[str, tuple[str, Any]] = {}
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
            fingerprint = hashlib.sha256(
                "\x1f".join([json.dumps(record, sort_keys=True, default=str), template.checksum, shape]).encode()
            ).hexdigest()
            cached = _BUILT.get(str(record["id"]))
            if cached and cached[0] == fingerprint:
                dag = cached[1]
            else:
                params = validate_params(template.manifest, record.get("params"))
                dag = build_dag(
                    template.manifest,
                    {**record, "params": params},
                    factory_allowlist=settings.factory_allowlist,
                    policy=settings.stage_policy,
                    templates=lambda name, version: repo.get(name, version).manifest,
                )
            if dag.dag_id in dags:
                raise ValueError(f"dag_id {dag.dag_id!r} is used by another instance")
            dags[dag.dag_id] = dag
            built[str(record["id"])] = (fingerprint, dag)
        except Exception as err:  # one bad record must not hide the others
            log.error("hpcai templates: skipping instance %s: %s", record.get("id", "?"), err)
    _BUILT.clear()
    _BUILT.update(built)
    return dags
