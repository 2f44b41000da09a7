"""One published template version, whatever its source (the site's repository or the built-ins)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.templates.manifest import TemplateManifest

__all__ = ["SITE_ORIGIN", "TemplateVersion", "sha256_hex"]

#: ``origin`` of a template published into the site's repository.
SITE_ORIGIN = "site"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class TemplateVersion:
    """One published version of a template.

    :param manifest: the parsed manifest.
    :param checksum: SHA-256 of the manifest's bytes, recorded at publication.
    :param published_at: ISO time of publication (UTC).
    :param publisher: who published it.
    :param deprecation: ``{"reason", "at", "by"}`` when deprecated, else ``None``.
    :param source: the manifest text as published.
    :param origin: ``"site"`` (published into the repository) or ``"built-in"`` (shipped with
        the provider, read-only).
    """

    manifest: TemplateManifest
    checksum: str
    published_at: str
    publisher: str | None
    deprecation: Mapping[str, Any] | None
    source: str
    origin: str = SITE_ORIGIN

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
            "origin": self.origin,
        }
        if with_source:
            out["source"] = self.source
        return out
