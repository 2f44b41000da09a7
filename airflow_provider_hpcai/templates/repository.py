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
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_provider_hpcai.templates.builtin_source import BUILTIN_ORIGIN, BuiltinTemplates
from airflow_provider_hpcai.templates.errors import (
    TemplateConflictError,
    TemplateError,
    TemplateNotFoundError,
    TemplatePermissionError,
    TemplateValidationError,
)
from airflow_provider_hpcai.templates.instances import InstanceStore
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
from airflow_provider_hpcai.templates.version import SITE_ORIGIN, TemplateVersion, sha256_hex

__all__ = ["SITE_ORIGIN", "TemplateRepository", "TemplateVersion", "sha256_hex", "version_order"]

MANIFEST_FILE = "template.yaml"
RECORD_FILE = "published.json"
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_order(version: str) -> tuple[Any, ...]:
    """Sort key of versions: semver precedence, then a deterministic tie-break.

    Versions that differ only in build metadata (``1.0.0`` and ``1.0.0+x``) have equal
    precedence; publish refuses a new one, and among any that exist the one without build
    metadata sorts last (wins "latest"), then by text.
    """
    return (*semver_key(version), "+" not in version, version)


class TemplateRepository(InstanceStore):
    """A template repository in a local folder, with the built-in templates as a read-only source.

    :param root: the repository folder (created on first write).
    :param settings: settings to use (factory allow-list, bash programs, built-ins, limits);
        default: :func:`load_settings`.
    """

    backend = "local"

    def __init__(self, root: str | Path, settings: TemplateSettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or dataclasses.replace(load_settings(), root=self.root)
        self.builtin = BuiltinTemplates(factory_allowlist=self.settings.factory_allowlist) if self.settings.builtin else None

    # ------------------------------------------------------------------ paths
    @property
    def templates_dir(self) -> Path:
        """Folder holding one sub-folder per template name."""
        return self.root / "templates"

    def _version_dir(self, name: str, version: str) -> Path:
        return self.templates_dir / check_name(name) / check_version(version)

    # ------------------------------------------------------------------ reading
    def site_names(self) -> list[str]:
        """Names of the templates published into this repository."""
        if not self.templates_dir.is_dir():
            return []
        return sorted(p.name for p in self.templates_dir.iterdir() if NAME_RE.match(p.name) and p.is_dir())

    def names(self) -> list[str]:
        """Names of all templates: the site's and the built-in ones."""
        return sorted({*self.site_names(), *(self.builtin.names() if self.builtin else ())})

    def _builtin_for(self, name: str) -> bool:
        """Whether ``name`` is served by the built-in source (the site has published no version of it)."""
        return self.builtin is not None and not self._version_names(name) and self.builtin.has(name)

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
        return sorted(found, key=version_order)

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
        if self._builtin_for(name):
            return self.builtin.versions(name)  # type: ignore[union-attr]
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
                    "origin": SITE_ORIGIN,
                }
            )
        return out

    def get(self, name: str, version: str | None = None) -> TemplateVersion:
        """One version of a template; ``version=None`` means the latest non-deprecated one.

        Pre-releases are chosen only when no release is available. A name the site has never
        published is looked up among the built-in templates.
        """
        check_name(name)
        if self._builtin_for(name):
            return self.builtin.get(name, version)  # type: ignore[union-attr]
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
            entry["versions"] = [v["version"] for v in self.versions(name)]
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
        return parse_manifest(
            _read_source(source),
            factory_allowlist=self.settings.factory_allowlist,
            policy=self.settings.stage_policy,
        )

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

    def owner(self, name: str) -> str | None:
        """Who owns template ``name``: the publisher of its first published version.

        ``"built-in"`` for a built-in the site has not published; ``None`` when unknown.
        """
        found = self._version_names(name)
        if not found:
            return BUILTIN_ORIGIN if self.builtin is not None and self.builtin.has(name) else None
        firsts = []
        for version in found:
            try:
                record = json.loads((self._version_dir(name, version) / RECORD_FILE).read_bytes())
            except (OSError, ValueError):
                continue
            firsts.append((str(record.get("published_at") or ""), version_order(version), record.get("publisher")))
        return min(firsts)[2] if firsts else None

    def _check_new_version(self, manifest: TemplateManifest, data: bytes, publisher: str | None,
                           take_over: bool) -> None:
        """Refuse a version that ties with a published one, or that changes someone else's template."""
        name, version = manifest.name, manifest.version
        found = self._version_names(name)
        if version in found:
            return  # the same version again: identical content succeeds, other content conflicts
        same = [v for v in found if semver_key(v) == semver_key(version)]
        if same:
            raise TemplateConflictError(
                f"{name} {version} has the same precedence as the published {same[0]} (build metadata after "
                "'+' does not order versions); bump MAJOR.MINOR.PATCH or the pre-release instead"
            )
        owner = self.owner(name)
        if take_over or publisher is None or owner is None or owner == publisher:
            return
        if owner == BUILTIN_ORIGIN and self.builtin is not None and self.builtin.read(name)[0] == data:
            return  # a copy of the built-in itself changes nothing
        if owner == BUILTIN_ORIGIN:
            what = f"{name} is a built-in template"
        else:
            what = f"template {name} belongs to {owner}, who published its first version"
        raise TemplatePermissionError(
            f"{what}; {publisher} may not publish a new version of it (that would change what 'latest' "
            "means for everyone). Publish under another name, ask the owner, or have a deployment admin "
            "run 'hpcai templates publish --take-over PATH'"
        )

    def publish(
        self, source: str | bytes | Path, *, publisher: str | None = None, take_over: bool = False
    ) -> TemplateVersion:
        """Publish a manifest as an immutable version.

        Only the template's owner (the publisher of its first version; ``"built-in"`` for a
        built-in template) adds versions, unless ``take_over`` is set. A version equal in
        precedence to a published one (``1.0.0+x`` next to ``1.0.0``) is refused.

        :param source: manifest text or bytes, a ``template.yaml`` file, or a template folder.
        :param publisher: who publishes it (recorded; ``None`` skips the owner check: trusted code).
        :param take_over: allow a new version of a template someone else owns (deployment admins).
        :raises TemplateConflictError: the version exists with different content, or ties with one.
        :raises TemplatePermissionError: the template belongs to someone else.
        """
        data = _read_source(source)
        manifest = parse_manifest(
            data, factory_allowlist=self.settings.factory_allowlist, policy=self.settings.stage_policy
        )
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
            self._check_new_version(manifest, data, publisher, take_over)
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
        if self._builtin_for(check_name(name)):
            raise TemplatePermissionError(
                f"{name} is a built-in template, which is read-only: set [hpcai] templates_builtin = False to "
                "hide the built-ins, or have a deployment admin publish a replacement with --take-over"
            )
        self._read_version(name, check_version(version), {})  # exists and intact
        if len(reason) > 1000:
            raise TemplateValidationError("the deprecation reason is limited to 1000 characters")
        with repository_lock(self.root):
            marks = self._deprecations(name)
            marks[version] = {"reason": reason, "at": _now(), "by": by}
            atomic_write(self.templates_dir / name / "deprecated.json", json.dumps(marks, indent=2).encode())
            self._after_change(f"deprecate {name} {version}")
        return self.get(name, version)


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
