"""The advisor's settings from the ``[hpcai]`` section, cached once per process.

Values come from :func:`airflow_provider_hpcai.config.get` (the provider's one reader of
``[hpcai]``: ``airflow.cfg`` or ``AIRFLOW__HPCAI__<KEY>``). The policy calls
:func:`read_settings` at every DAG parse, so the result is cached; ``reset_settings()``
forgets it (tests, or after changing the configuration in a running process).
"""

from __future__ import annotations

import dataclasses
import functools
import os

__all__ = ["AdvisorSettings", "default_home", "read_settings", "reset_settings"]


def default_home() -> str:
    """``$AIRFLOW_HOME/hpcai/advisor``, with ``AIRFLOW_HOME`` resolved as Airflow resolves it."""
    from airflow_provider_hpcai import config

    return os.path.join(config.airflow_home(), "hpcai", "advisor")


@dataclasses.dataclass(frozen=True)
class AdvisorSettings:
    """The advisor's part of ``[hpcai]``.

    :param mode: ``advisor_mode``: ``off``, ``advise``, ``enforce`` or ``estimate`` (lower case).
    :param home: ``advisor_home`` as an absolute path (history, champion export, default MLflow store);
        unset: :func:`default_home`.
    :param tracking_uri: ``mlflow_tracking_uri``, or ``None`` for SQLite under ``home``.
    :param enforce_time_min: ``advisor_enforce_time_min``: ``enforce`` also sets ``time_min`` to the
        q0.3 run-time estimate (Slurm may lower a job's limit towards it: off by default).
    """

    mode: str = "advise"
    home: str = dataclasses.field(default_factory=default_home)
    tracking_uri: str | None = None
    enforce_time_min: bool = False


@functools.lru_cache(maxsize=1)
def read_settings() -> AdvisorSettings:
    """Read ``[hpcai]`` once per process (``reset_settings()`` forgets it)."""
    from airflow_provider_hpcai import config

    mode = (config.get("advisor_mode") or "advise").strip().lower()
    home = (config.get("advisor_home") or "").strip() or default_home()
    uri = (config.get("mlflow_tracking_uri") or "").strip() or None
    plan = (config.get("advisor_enforce_time_min") or "false").strip().lower() in ("1", "true", "yes", "on")
    return AdvisorSettings(mode=mode, home=os.path.abspath(os.path.expanduser(home)), tracking_uri=uri,
                           enforce_time_min=plan)


def reset_settings() -> None:
    """Forget the cached settings: the next :func:`read_settings` reads ``[hpcai]`` again."""
    read_settings.cache_clear()
