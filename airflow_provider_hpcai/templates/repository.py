"""The workflow-template repository: publish, find, deprecate and instantiate templates.

On disk (``root`` from :mod:`~airflow_provider_hpcai.templates.settings`)::

    .lock                                   writers serialise on it (fcntl.flock)
    templates/<name>/<version>/template.yaml  the published manifest, never changed again
    templates/<name>/<version>/published.json sha256 of the manifest, when, by whom
    templates/<name>/deprecated.json        {version: {"reason", "at", "by"}}
    instances/<id>.json                     one record per instantiated template

Versions are immutable: publishing a version again succeeds only with byte-identical
content. Every change is one atomic rename (see :mod:`.storage`), so readers (the loader
DAG file, the plugin) need no lock and never see half a change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_provider_hpcai.templates.errors import (
    InstanceNotFoundError,
    TemplateConflictError,
    TemplateError,
    TemplateNotFoundError,
    TemplateValidationError,
)
from airflow_provider_hpcai.templates.manifest import (
    MAX_MANIFEST_BYTES,
    NAME_RE,
    TemplateManifest,
    check_name,
    check_version,
    parse_manifest,
    semver_key,
    validate_params,
)
from airflow_provider_hpcai.templates.settings import TemplateSettings, load_settings
from airflow_provider_hpcai.templates.storage import (
    TMP_PREFIX,
    atomic_write,
    publish_dir,
    remove_debris,
    repository_lock,
)

__all__ = ["TemplateRepository", "TemplateVersion", "open_repository", "sha256_hex"]

MANIFEST_FILE = "template.yaml"
RECORD_FILE = "published.json"
_INSTANCE_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}-[0-9a-f]{8}\Z")
_DAG_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z")
_OWNER_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}\Z")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class TemplateVersion:
    """One published version of a template.

    :param manifest: the parsed manifest.
    :param checksum: SHA-256 of the manifest's bytes, recorded at publication.
    :param published_at: ISO time of publication (UTC).
    :param publisher: who published it.
    :param deprecation: ``{"reason", "at", "by"}`` when deprecated, else ``None``.
    :param source: the manifest text as published.
    """

    manifest: TemplateManifest
    checksum: str
    published_at: str
    publisher: str | None
    deprecation: Mapping[str, Any] | None
    source: str

    @property
    def deprecated(self) -> bool:
        """Whether this version is deprecated (still usable when named explicitly)."""
        return self.deprecation is not None

    def to_dict(self, *, with_source: bool = False) -> dict[str, Any]:
        """JSON-safe form for the CLI and the plugin."""
        out = {
            **self.manifest.summary(),
            "parameters": self.manifest.to_dict()["parameters"],
            "resources": dict(self.manifest.resources),
            "stages": [
                {"id": s.id, "kind": s.kind, "depends_on": list(s.depends_on)} for s in self.manifest.stages
            ],
            "entrypoint": self.manifest.entrypoint,
            "checksum": self.checksum,
            "published_at": self.published_at,
            "publisher": self.publisher,
            "deprecated": self.deprecated,
            "deprecation": dict(self.deprecation) if self.deprecation else None,
        }
        if with_source:
            out["source"] = self.source
        return out


class TemplateRepository:
    """A template repository in a local folder.

    :param root: the repository folder (created on first write).
    :param settings: settings to use (factory allow-list); default: :func:`load_settings`.
    """

    backend = "local"

    def __init__(self, root: str | Path, settings: TemplateSettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or dataclasses.replace(load_settings(), root=self.root)

    # ------------------------------------------------------------------ paths
    @property
    def templates_dir(self) -> Path:
        """Folder holding one sub-folder per template name."""
        return self.root / "templates"

    @property
    def instances_dir(self) -> Path:
        """Folder holding one JSON record per instance."""
        return self.root / "instances"

    def _version_dir(self, name: str, version: str) -> Path:
        return self.templates_dir / check_name(name) / check_version(version)

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        """Names of all templates with at least one published version."""
        if not self.templates_dir.is_dir():
            return []
        return sorted(p.name for p in self.templates_dir.iterdir() if NAME_RE.match(p.name) and p.is_dir())

    def _deprecations(self, name: str) -> dict[str, Any]:
        path = self.templates_dir / name / "deprecated.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _version_names(self, name: str) -> list[str]:
        folder = self.templates_dir / check_name(name)
        if not folder.is_dir():
            return []
        found = [
            p.name
            for p in folder.iterdir()
            if not p.name.startswith(TMP_PREFIX) and (p / RECORD_FILE).is_file()
        ]
        return sorted(found, key=semver_key)

    def _read_version(self, name: str, version: str, deprecations: Mapping[str, Any]) -> TemplateVersion:
        folder = self._version_dir(name, version)
        try:
            data = (folder / MANIFEST_FILE).read_bytes()
            record = json.loads((folder / RECORD_FILE).read_bytes())
        except FileNotFoundError:
            raise TemplateNotFoundError(
                f"template {name} {version} is not published; see 'hpcai templates versions {name}'"
            ) from None
        if sha256_hex(data) != record.get("sha256"):
            raise TemplateError(
                f"template {name} {version} does not match its recorded checksum: the repository was "
                "edited by hand; restore the file from the repository's history"
            )
        manifest = parse_manifest(data, factory_allowlist=self.settings.factory_allowlist)
        return TemplateVersion(
            manifest=manifest,
            checksum=record["sha256"],
            published_at=record.get("published_at", ""),
            publisher=record.get("publisher"),
            deprecation=deprecations.get(version),
            source=data.decode("utf-8"),
        )

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every published version of ``name``, oldest first (semver order)."""
        found = self._version_names(name)
        if not found:
            raise TemplateNotFoundError(f"no template named {name!r}; 'hpcai templates list' shows them")
        deprecations = self._deprecations(name)
        out = []
        for version in found:
            record = json.loads((self._version_dir(name, version) / RECORD_FILE).read_bytes())
            out.append(
                {
                    "version": version,
                    "checksum": record.get("sha256"),
                    "published_at": record.get("published_at"),
                    "publisher": record.get("publisher"),
                    "deprecated": version in deprecations,
                }
            )
        return out

    def get(self, name: str, version: str | None = None) -> TemplateVersion:
        """One version of a template; ``version=None`` means the latest non-deprecated one.

        Pre-releases are chosen only when no release is available.
        """
        check_name(name)
        deprecations = self._deprecations(name)
        if version is not None:
            return self._read_version(name, check_version(version), deprecations)
        found = self._version_names(name)
        if not found:
            raise TemplateNotFoundError(f"no template named {name!r}; 'hpcai templates list' shows them")
        usable = [v for v in found if v not in deprecations]
        if not usable:
            raise TemplateNotFoundError(
                f"every version of {name} is deprecated ({', '.join(found)}); name a version explicitly"
            )
        releases = [v for v in usable if "-" not in v.split("+", 1)[0]]
        return self._read_version(name, (releases or usable)[-1], deprecations)

    def list_templates(self, *, include_deprecated: bool = False) -> list[dict[str, Any]]:
        """A summary of each template's latest usable version (with all its version numbers)."""
        out = []
        for name in self.names():
            try:
                latest = self.get(name)
            except TemplateNotFoundError:
                if not include_deprecated:
                    continue
                found = self._version_names(name)
                if not found:
                    continue
                latest = self._read_version(name, found[-1], self._deprecations(name))
            except TemplateError:
                continue  # a corrupted entry must not hide the others
            entry = latest.to_dict()
            entry["versions"] = self._version_names(name)
            out.append(entry)
        return out

    list = list_templates  # the repository API's name for it

    def search(
        self, text: str | None = None, domain: str | None = None, tag: str | None = None
    ) -> list[dict[str, Any]]:
        """Templates whose name, title, description or tags contain ``text`` (any case),
        in ``domain`` and carrying ``tag`` when those are given."""
        needle = (text or "").strip().lower()
        found = []
        for entry in self.list_templates():
            if domain and entry["domain"] != domain:
                continue
            if tag and tag not in entry["tags"]:
                continue
            haystack = " ".join([entry["name"], entry["title"], entry["description"], *entry["tags"]]).lower()
            if needle and needle not in haystack:
                continue
            found.append(entry)
        return found

    # ------------------------------------------------------------------ validation
    def validate_manifest(self, source: str | bytes | Path) -> TemplateManifest:
        """Parse and check a manifest (text, bytes, a file, or a template folder)."""
        return parse_manifest(_read_source(source), factory_allowlist=self.settings.factory_allowlist)

    def validate_params(self, name: str, version: str | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check parameters against a template's schema; return them with defaults filled in."""
        return validate_params(self.get(name, version).manifest, params)

    def validate(
        self,
        manifest: str | bytes | Path | None = None,
        *,
        name: str | None = None,
        version: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> TemplateManifest | dict[str, Any]:
        """Validate a manifest, or parameters for a published template (``name`` given)."""
        if manifest is not None:
            return self.validate_manifest(manifest)
        if name is None:
            raise TemplateValidationError("give a manifest to check, or a template name and params")
        return self.validate_params(name, version, params)

    # ------------------------------------------------------------------ writing
    def _after_change(self, message: str) -> None:
        """Hook for backends that record history (git); called under the lock."""

    def publish(self, source: str | bytes | Path, *, publisher: str | None = None) -> TemplateVersion:
        """Publish a manifest as an immutable version.

        :param source: manifest text or bytes, a ``template.yaml`` file, or a template folder.
        :param publisher: who publishes it (recorded).
        :raises TemplateConflictError: the version exists with different content.
        """
        data = _read_source(source)
        manifest = parse_manifest(data, factory_allowlist=self.settings.factory_allowlist)
        checksum = sha256_hex(data)
        target = self._version_dir(manifest.name, manifest.version)
        record = {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": checksum,
            "size": len(data),
            "published_at": _now(),
            "publisher": publisher,
        }
        with repository_lock(self.root):
            remove_debris(target.parent)
            created = publish_dir(
                target, {MANIFEST_FILE: data, RECORD_FILE: json.dumps(record, indent=2).encode()}
            )
            if not created:
                existing = self._read_version(manifest.name, manifest.version, self._deprecations(manifest.name))
                if existing.checksum != checksum:
                    raise TemplateConflictError(
                        f"{manifest.name} {manifest.version} is already published with different content "
                        f"(sha256 {existing.checksum[:12]}...); versions are immutable: bump the version"
                    )
                return existing
            self._after_change(f"publish {manifest.name} {manifest.version}")
        return self.get(manifest.name, manifest.version)

    def deprecate(self, name: str, version: str, *, reason: str = "", by: str | None = None) -> TemplateVersion:
        """Mark a version deprecated: it stays usable by explicit version, but is no longer 'latest'."""
        self._read_version(name, check_version(version), {})  # exists and intact
        if len(reason) > 1000:
            raise TemplateValidationError("the deprecation reason is limited to 1000 characters")
        with repository_lock(self.root):
            marks = self._deprecations(name)
            marks[version] = {"reason": reason, "at": _now(), "by": by}
            atomic_write(self.templates_dir / name / "deprecated.json", json.dumps(marks, indent=2).encode())
            self._after_change(f"deprecate {name} {version}")
        return self.get(name, version)

    # ------------------------------------------------------------------ instances
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
            "created": _now(),
            "dag_id": dag_id or f"tpl_{manifest.name.replace('-', '_')}_{suffix}",
        }
        res = instance_resources(manifest, record["resources"])
        if manifest.stages:
            resolve_stages(manifest, stage_context(manifest, record, res))  # fail now, not at parse time
        with repository_lock(self.root):
            if any(other["dag_id"] == record["dag_id"] for other in self.list_instances()):
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

    def delete_instance(self, instance_id: str) -> dict[str, Any]:
        """Remove an instance; its DAG disappears at the loader's next parse."""
        path = self._instance_path(instance_id)
        with repository_lock(self.root):
            record = self.get_instance(instance_id)
            path.unlink()
        return record


def _read_source(source: str | bytes | Path) -> bytes:
    if isinstance(source, Path):
        path = source / MANIFEST_FILE if source.is_dir() else source
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise TemplateValidationError(f"{path} does not exist") from None
        if size > MAX_MANIFEST_BYTES:
            raise TemplateValidationError(f"{path} is {size} bytes; the limit is {MAX_MANIFEST_BYTES} (256 KiB)")
        return path.read_bytes()
    if isinstance(source, str):
        try:
            return source.encode("utf-8")
        except UnicodeEncodeError as err:
            raise TemplateValidationError(
                f"the manifest is not valid UTF-8 text (character {err.start}); save it as UTF-8") from None
    if isinstance(source, bytes):
        return source
    raise TemplateValidationError(f"a manifest must be text, bytes or a path, not {type(source).__name__}")


def open_repository(settings: TemplateSettings | None = None) -> TemplateRepository:
    """Open the configured repository (``local`` or ``git`` backend)."""
    settings = settings or load_settings()
    if settings.backend == "git":
        from airflow_provider_hpcai.templates.git_backend import GitTemplateRepository

        return GitTemplateRepository(settings.root, settings)
    if settings.backend != "local":
        raise TemplateError(f"[hpcai] templates_backend {settings.backend!r} is unknown; use 'local' or 'git'")
    return TemplateRepository(settings.root, settings)
