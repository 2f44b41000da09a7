"""The repository the ``[hpcai]`` configuration names: the one place that chooses a storage backend.

Both backends (:class:`~.repository.TemplateRepository` on a folder and
:class:`~.git_backend.GitTemplateRepository` on a git clone) sit below this module, so neither
imports the other's module to be chosen.
"""

from __future__ import annotations

from airflow_provider_hpcai.templates.errors import TemplateError
from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings, load_settings

__all__ = ["open_repository"]


def open_repository(settings: TemplateSettings | None = None) -> TemplateRepository:
    """Open the configured repository (``local`` or ``git`` backend)."""
    settings = settings or load_settings()
    if settings.backend == "git":
        from airflow_provider_hpcai.templates.git_backend import GitTemplateRepository

        return GitTemplateRepository(settings.root, settings)
    if settings.backend != "local":
        raise TemplateError(f"[hpcai] templates_backend {settings.backend!r} is unknown; use 'local' or 'git'")
    return TemplateRepository(settings.root, settings)
