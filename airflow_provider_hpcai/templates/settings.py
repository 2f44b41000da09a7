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
``[hpcai] template_bash_programs``
    comma-separated programs a manifest's ``bash`` stage may run (see :mod:`.programs`).
``[hpcai] template_job_scripts``
    whether manifests may hold ``slurm_job`` stages (their script runs on the cluster; default ``False``).
``[hpcai] templates_builtin``
    show the templates shipped with the provider next to the site's own (default ``True``).
``[hpcai] template_instance_quota`` / ``template_instance_rate`` / ``template_max_instances``
    instances one user may hold, instances one user may create per minute, and instances the
    loader DAG file builds in one parse (``0``: no limit).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from airflow_provider_hpcai.templates.programs import StagePolicy

__all__ = ["DEFAULT_BASH_PROGRAMS", "DEFAULT_FACTORY_ALLOWLIST", "TemplateSettings", "load_settings"]

DEFAULT_FACTORY_ALLOWLIST: tuple[str, ...] = ("airflow_provider_hpcai.", "dags_templates.")
#: Programs a ``bash`` stage may run when ``[hpcai] template_bash_programs`` is unset: ones
#: whose arguments are data, and the provider's kernels (``*`` ends a module-name prefix).
DEFAULT_BASH_PROGRAMS: tuple[str, ...] = (
    "echo",
    "printf",
    "true",
    "false",
    "sleep",
    "python3 -m simulation_kernels.*",
    "python3 -m airflow_provider_hpcai.templates.greet",
)


@dataclasses.dataclass(frozen=True)
class TemplateSettings:
    """Resolved template-repository settings.

    :param root: repository root folder.
    :param backend: ``"local"`` or ``"git"``.
    :param git_remote: remote the git backend pushes to, or ``None``.
    :param factory_allowlist: module prefixes allowed for ``module:function`` factories.
    :param bash_programs: programs ``bash`` stages may run (see :mod:`.programs`).
    :param job_scripts: whether manifests may hold ``slurm_job`` stages (shell code on the cluster).
    :param builtin: whether the templates shipped with the provider are listed too.
    :param instance_quota: instances one owner may hold (``0``: no limit).
    :param instance_rate: instances one owner may create per minute (``0``: no limit).
    :param max_instances: instances the loader builds in one parse (``0``: no limit).
    """

    root: Path
    backend: str = "local"
    git_remote: str | None = None
    factory_allowlist: tuple[str, ...] = DEFAULT_FACTORY_ALLOWLIST
    bash_programs: tuple[str, ...] = DEFAULT_BASH_PROGRAMS
    job_scripts: bool = False
    builtin: bool = False
    instance_quota: int = 0
    instance_rate: int = 0
    max_instances: int = 0

    @property
    def stage_policy(self) -> StagePolicy:
        """What stages of a published manifest may do."""
        return StagePolicy(bash_programs=self.bash_programs, job_scripts=self.job_scripts)


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


def _split(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip()) if value else default


def _count(key: str) -> int:
    from airflow_provider_hpcai import config

    raw = _airflow_option(key) or config.CONFIG_OPTIONS[key]["default"]
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"[hpcai] {key} = {raw!r} is not a whole number; set 0 for no limit") from None
    if value < 0:
        raise ValueError(f"[hpcai] {key} = {value} is negative; set 0 for no limit")
    return value


def load_settings() -> TemplateSettings:
    """Read the settings (cheap: call it whenever a repository is opened)."""
    root = _option("HPCAI_TEMPLATES_DIR", "templates_dir")
    backend = (_option("HPCAI_TEMPLATES_BACKEND", "templates_backend") or "local").strip().lower()
    remote = _option("HPCAI_TEMPLATES_GIT_REMOTE", "templates_git_remote")
    allow = _option("HPCAI_TEMPLATE_FACTORY_ALLOWLIST", "template_factory_allowlist")
    builtin = (_airflow_option("templates_builtin") or "True").strip().lower()
    job_scripts = (_airflow_option("template_job_scripts") or "False").strip().lower()
    return TemplateSettings(
        root=Path(root).expanduser() if root else _default_root(),
        backend=backend,
        git_remote=remote,
        factory_allowlist=_split(allow, DEFAULT_FACTORY_ALLOWLIST),
        bash_programs=_split(_airflow_option("template_bash_programs"), DEFAULT_BASH_PROGRAMS),
        job_scripts=job_scripts in {"1", "true", "yes", "on"},
        builtin=builtin in {"1", "true", "yes", "on"},
        instance_quota=_count("template_instance_quota"),
        instance_rate=_count("template_instance_rate"),
        max_instances=_count("template_max_instances"),
    )
