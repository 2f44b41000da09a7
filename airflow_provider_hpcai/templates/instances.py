"""Template instances: validated parameters bound to one template version, one JSON file each.

Mixed into :class:`~airflow_provider_hpcai.templates.repository.TemplateRepository`. Records
live in ``<root>/instances/<id>.json``; the loader DAG file turns each into a DAG.

Limits (``[hpcai]``, read through :mod:`.settings`): ``template_instance_quota`` instances per
owner and ``template_instance_rate`` new instances per owner per minute. Both are counted from
the records on disk under the repository lock, so they hold across api-server workers and the
CLI. Only an instance's owner, or a caller the plugin says may manage every instance, deletes it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_hpcai.templates.errors import (
    InstanceNotFoundError,
    InstanceQuotaError,
    TemplateConflictError,
    TemplatePermissionError,
    TemplateValidationError,
)
from airflow_provider_hpcai.templates.manifest import validate_params
from airflow_provider_hpcai.templates.storage import TMP_PREFIX, atomic_write, repository_lock

if TYPE_CHECKING:
    from airflow_provider_hpcai.templates.settings import TemplateSettings

__all__ = ["RATE_WINDOW_SECONDS", "InstanceStore"]

_INSTANCE_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}-[0-9a-f]{8}\Z")
_DAG_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z")
_OWNER_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}\Z")
#: The window of ``[hpcai] template_instance_rate``.
RATE_WINDOW_SECONDS = 60


def _now() -> datetime:
    return datetime.now(UTC)


def _created(record: Mapping[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(record.get("created")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class InstanceStore:
    """Instance records of a template repository (the repository supplies ``get``)."""

    root: Path
    settings: TemplateSettings
    #: ``get(name, version)`` -> the template version (supplied by the repository).
    get: Callable[..., Any]

    @property
    def instances_dir(self) -> Path:
        """Folder holding one JSON record per instance."""
        return self.root / "instances"

    def _check_limits(self, owner: str, records: list[dict[str, Any]]) -> None:
        """Refuse a new instance over the owner's quota or rate (call under the lock)."""
        mine = [r for r in records if r.get("owner") == owner]
        quota, rate = self.settings.instance_quota, self.settings.instance_rate
        if quota and len(mine) >= quota:
            raise InstanceQuotaError(
                f"{owner} already has {len(mine)} template instances, the most one user may hold "
                f"([hpcai] template_instance_quota = {quota}); delete instances you no longer need "
                "('hpcai templates instances --delete ID' or the gallery), or ask an administrator to raise it"
            )
        if rate:
            since = _now() - timedelta(seconds=RATE_WINDOW_SECONDS)
            recent = sorted(when for r in mine if (when := _created(r)) is not None and when > since)
            if len(recent) >= rate:
                wait = max(1, int((recent[-rate] - since).total_seconds()) + 1)
                raise InstanceQuotaError(
                    f"{owner} created {len(recent)} template instances in the last minute, the most allowed "
                    f"([hpcai] template_instance_rate = {rate}); try again in {wait} s",
                    retry_after=wait,
                )

    def instantiate(
        self,
        name: str,
        version: str | None,
        params: Mapping[str, Any] | None,
        owner: str,
        *,
        resources: Mapping[str, Any] | None = None,
        dag_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an instance: validated parameters bound to one template version.

        The loader DAG file turns the record into a DAG on its next parse.

        :param name: template name.
        :param version: template version, or ``None`` for the latest non-deprecated one.
        :param params: parameter values (checked against the template's schema).
        :param owner: who asked for it (becomes the DAG's owner).
        :param resources: overrides of the template's default resources (e.g. the advisor's).
        :param dag_id: the DAG id to use (default ``tpl_<name>_<8 hex digits>``).
        :return: the instance record.
        :raises InstanceQuotaError: the owner holds ``template_instance_quota`` instances already, or
            created ``template_instance_rate`` in the last minute.
        """
        from airflow_provider_hpcai.templates.stages import instance_resources, resolve_stages, stage_context

        template = self.get(name, version)
        manifest = template.manifest
        if not isinstance(owner, str) or not _OWNER_RE.match(owner):
            raise TemplateValidationError("owner must be 1-128 printable characters")
        filled = validate_params(manifest, params)
        if resources is not None and not isinstance(resources, Mapping):
            raise TemplateValidationError("resources must be a mapping of resource fields")
        suffix = secrets.token_hex(4)
        if dag_id is not None and (not isinstance(dag_id, str) or not _DAG_ID_RE.match(dag_id)):
            raise TemplateValidationError(
                f"dag_id {dag_id!r} is not allowed: letters, digits, '_', '.', '-' (at most 200)"
            )
        record = {
            "schema": 1,
            "id": f"{manifest.name}-{suffix}",
            "template": manifest.name,
            "version": manifest.version,
            "checksum": template.checksum,
            "params": filled,
            "resources": dict(resources) if resources else None,
            "owner": owner,
            "created": _now().isoformat(timespec="seconds"),
            "dag_id": dag_id or f"tpl_{manifest.name.replace('-', '_')}_{suffix}",
        }
        res = instance_resources(manifest, record["resources"])
        if manifest.stages:  # fail now, not at parse time
            resolve_stages(manifest, stage_context(manifest, record, res), self.settings.stage_policy)
        with repository_lock(self.root):
            records = self.list_instances()
            self._check_limits(owner, records)
            if any(other["dag_id"] == record["dag_id"] for other in records):
                raise TemplateConflictError(f"an instance with dag_id {record['dag_id']!r} already exists")
            atomic_write(self._instance_path(record["id"]), json.dumps(record, indent=2).encode())
        return record

    def _instance_path(self, instance_id: str) -> Path:
        if not isinstance(instance_id, str) or not _INSTANCE_ID_RE.match(instance_id):
            raise TemplateValidationError(f"{instance_id!r} is not an instance id (like 'name-0123abcd')")
        return self.instances_dir / f"{instance_id}.json"

    def list_instances(self, template: str | None = None) -> list[dict[str, Any]]:
        """Instance records, oldest first; unreadable files are skipped."""
        if not self.instances_dir.is_dir():
            return []
        records = []
        for path in self.instances_dir.glob("*.json"):
            if path.name.startswith(TMP_PREFIX):
                continue
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and (template is None or record.get("template") == template):
                records.append(record)
        return sorted(records, key=lambda r: (str(r.get("created", "")), str(r.get("id", ""))))

    def get_instance(self, instance_id: str) -> dict[str, Any]:
        """One instance record."""
        try:
            return json.loads(self._instance_path(instance_id).read_bytes())
        except FileNotFoundError:
            raise InstanceNotFoundError(f"no instance {instance_id!r}; 'hpcai templates instances' lists them") from None

    def delete_instance(self, instance_id: str, *, requester: str | None = None) -> dict[str, Any]:
        """Remove an instance; its DAG disappears at the loader's next parse.

        :param instance_id: the instance.
        :param requester: who asks; when given, only the instance's owner may delete it (callers
            allowed to manage every instance pass ``None``).
        :raises TemplatePermissionError: ``requester`` is not the owner.
        """
        path = self._instance_path(instance_id)
        with repository_lock(self.root):
            record = self.get_instance(instance_id)
            if requester is not None and record.get("owner") != requester:
                raise TemplatePermissionError(
                    f"instance {instance_id} belongs to {record.get('owner')}; only its owner or an "
                    "Op/Admin may delete it"
                )
            path.unlink()
        return record
