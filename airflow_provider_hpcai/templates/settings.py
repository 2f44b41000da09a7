"""Where the template repository lives and what it may import: read in one place.

Configuration (environment variables win over ``airflow.cfg``):

``[hpcai] templates_dir`` / ``HPCAI_TEMPLATES_DIR``
    root folder of the repository (default ``$AIRFLOW_HOME/hpcai/templates``).
``[hpcai] templates_backend`` / ``HPCAI_TEMPLATES_BACKEND``
    ``local`` (default) or ``git`` (each publish and deprecation is a commit).
``[hpcai] templates_git_remote`` / ``HPCAI_TEMPLATES_GIT_REMOTE``
    optional remote the git backend pushes to after each commit.
``[hpcai] template_factory_allowlist`` / ``HPCAI_TEMPLATE_FACTORY_ALLOWLIST``
    comma-separated module prefixes a ``module:function`` factory must start with
    (default ``airflow_provider_hpcai.,dags_templates.``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["DEFAULT_FACTORY_ALLOWLIST", "TemplateSettings", "load_settings"]

DEFAULT_FACTORY_ALLOWLIST: tuple[str, ...] = ("airflow_provider_hpcai.", "dags_templates.")


@dataclasses.dataclass(frozen=True)
class TemplateSettings:
    """Resolved template-repository settings.

    :param root: repository root folder.
    :param backend: ``"local"`` or ``"git"``.
    :param git_remote: remote the git backend pushes to, or ``None``.
    :param factory_allowlist: module prefixes allowed for ``module:function`` factories.
    """

    root: Path
    backend: str = "local"
    git_remote: str | None = None
    factory_allowlist: tuple[str, ...] = DEFAULT_FACTORY_ALLOWLIST


def _airflow_option(key: str) -> str | None:
    from airflow_provider_hpcai import config

    if key in config.CONFIG_OPTIONS:  # declared in provider info: read through the one reader
        return config.get(key) or None
    try:  # not (yet) declared: read it from airflow.cfg / AIRFLOW__HPCAI__* directly
        from airflow.configuration import conf

        return conf.get("hpcai", key, fallback=None) or None
    except Exception:  # pragma: no cover - outside an Airflow installation
        return os.environ.get(f"AIRFLOW__HPCAI__{key.upper()}") or None


def _option(env: str, key: str) -> str | None:
    value = os.environ.get(env)
    if value:
        return value
    return _airflow_option(key)


def _default_root() -> Path:
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return Path(home) / "hpcai" / "templates"


def load_settings() -> TemplateSettings:
    """Read the settings (cheap: call it whenever a repository is opened)."""
    root = _option("HPCAI_TEMPLATES_DIR", "templates_dir")
    backend = (_option("HPCAI_TEMPLATES_BACKEND", "templates_backend") or "local").strip().lower()
    remote = _option("HPCAI_TEMPLATES_GIT_REMOTE", "templates_git_remote")
    allow = _option("HPCAI_TEMPLATE_FACTORY_ALLOWLIST", "template_factory_allowlist")
    prefixes = (
        tuple(p.strip() for p in allow.split(",") if p.strip()) if allow else DEFAULT_FACTORY_ALLOWLIST
    )
    return TemplateSettings(
        root=Path(root).expanduser() if root else _default_root(),
        backend=backend,
        git_remote=remote,
        factory_allowlist=prefixes,
    )
