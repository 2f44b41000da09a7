"""The templates shipped inside the provider's wheel: a read-only source.

They live in ``airflow_provider_hpcai/templates/builtin/<name>/template.yaml`` (package data),
one version per name, and appear in listings next to the site's repository with
``"origin": "built-in"``. They are never written: ``publish`` and ``deprecate`` act on the
site's repository only.

Precedence: a name the site's repository has published (any version) hides the built-in of
that name entirely, so a site can replace a built-in by publishing its own (see
:meth:`~airflow_provider_hpcai.templates.repository.TemplateRepository.publish` for who may).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow_provider_hpcai.templates.errors import TemplateError, TemplateNotFoundError
from airflow_provider_hpcai.templates.manifest import NAME_RE, check_name, check_version, parse_manifest
from airflow_provider_hpcai.templates.version import TemplateVersion

__all__ = ["BUILTIN_DIR", "BUILTIN_ORIGIN", "BuiltinTemplates"]

#: Where the built-in templates are installed.
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
#: ``origin`` of a built-in template in listings (the gallery's label).
BUILTIN_ORIGIN = "built-in"


class BuiltinTemplates:
    """The read-only templates in ``folder`` (default: the ones shipped with the provider).

    :param folder: holds one ``<name>/template.yaml`` per template.
    :param factory_allowlist: module prefixes for ``entrypoint`` factories.
    """

    def __init__(self, folder: Path = BUILTIN_DIR, factory_allowlist: Iterable[str] | None = None) -> None:
        self.folder = folder
        self.factory_allowlist = tuple(factory_allowlist) if factory_allowlist is not None else None

    def names(self) -> list[str]:
        """Names of the built-in templates."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name for p in self.folder.iterdir() if NAME_RE.match(p.name) and (p / "template.yaml").is_file()
        )

    def has(self, name: str) -> bool:
        """Whether a built-in template is called ``name``."""
        return name in self.names()

    def read(self, name: str) -> tuple[bytes, Any]:
        """The manifest bytes and parsed manifest of built-in ``name``.

        :raises TemplateNotFoundError: no built-in has that name.
        """
        path = self.folder / check_name(name) / "template.yaml"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TemplateNotFoundError(f"no template named {name!r}; 'hpcai templates list' shows them") from None
        manifest = parse_manifest(data, factory_allowlist=self.factory_allowlist)
        if manifest.name != name:
            raise TemplateError(f"built-in template folder {name!r} holds a manifest named {manifest.name!r}")
        return data, manifest

    def get(self, name: str, version: str | None = None) -> TemplateVersion:
        """The built-in ``name`` as a :class:`~.version.TemplateVersion` (``origin`` built-in).

        :raises TemplateNotFoundError: no such built-in, or it has another version.
        """
        data, manifest = self.read(name)
        if version is not None and check_version(version) != manifest.version:
            raise TemplateNotFoundError(
                f"template {name} {version} is not published; the built-in {name} is version {manifest.version}"
            )
        return TemplateVersion(
            manifest=manifest,
            checksum=hashlib.sha256(data).hexdigest(),
            published_at="",
            publisher=BUILTIN_ORIGIN,
            deprecation=None,
            source=data.decode("utf-8"),
            origin=BUILTIN_ORIGIN,
        )

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The one version of built-in ``name``, in the shape of the repository's ``versions()``."""
        found = self.get(name)
        return [
            {
                "version": found.manifest.version,
                "checksum": found.checksum,
                "published_at": None,
                "publisher": BUILTIN_ORIGIN,
                "deprecated": False,
                "origin": BUILTIN_ORIGIN,
            }
        ]
