"""Airflow cluster policy: record (and in enforce mode apply) the advisor's decision per task.

Registered through the ``airflow.policy`` entry point, so Airflow imports this module while it
imports itself, in every process. It therefore imports nothing but Airflow's ``hookimpl``: the
advisor, the decision rules and the settings load the first time a task with
``job_resources`` is judged. ``task_policy`` runs at every DAG parse, so it only touches such
tasks, uses the cached compact champion (never MLflow), and never raises: any error is logged
once and the task keeps the user's request.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.policies import hookimpl

__all__ = ["apply_advice", "task_policy"]

log = logging.getLogger(__name__)
_logged: set[str] = set()


def _advisor_key(task: Any) -> dict[str, Any]:
    key_method = getattr(task, "advisor_key", None)
    if callable(key_method):
        return dict(key_method())
    return {"dag_id": getattr(task, "dag_id", None), "task_id": task.task_id, "owner": getattr(task, "owner", None)}


def apply_advice(task: Any, mode: str, home: str, *, enforce_time_min: bool = False,
                 time_min_soft: bool = False) -> None:
    """Compute, store and (in enforce/estimate mode) apply the decision for one task.

    ``estimate`` mode needs only the series' last run times (history store); ``advise`` and
    ``enforce`` put the champion's run-time prediction through the guard's rules on its live
    state (:func:`~airflow_provider_hpcai.policy.live.guard_verdict`). The decision (with the
    guard's verdict) is stored on the task; the operator hands it to the guard again just
    before submitting (:func:`~airflow_provider_hpcai.advisor.live_guard.admit`).
    """
    from airflow_provider_hpcai.policy.live import decide_for
    from airflow_provider_hpcai.resources import Resources

    requested = getattr(task, "job_resources", None)
    if not isinstance(requested, Resources):
        return
    decision = decide_for(_advisor_key(task), requested, mode, home, enforce_time_min=enforce_time_min,
                          time_min_soft=time_min_soft)
    task.hpcai_decision = decision.to_dict()
    if decision.mode in ("enforce", "estimate") and decision.changed:
        task.job_resources = decision.applied


@hookimpl
def task_policy(task: Any) -> None:
    """Airflow hook: never raises, costs microseconds for tasks without ``job_resources``."""
    if getattr(task, "job_resources", None) is None:
        return
    try:
        from airflow_provider_hpcai.advisor.settings import read_settings

        settings = read_settings()
        if settings.mode == "off":
            return
        apply_advice(task, settings.mode, settings.home, enforce_time_min=settings.enforce_time_min,
                     time_min_soft=settings.time_min_soft)
    except Exception as error:
        kind = type(error).__name__
        if kind not in _logged:
            _logged.add(kind)
            log.warning("hpcai advisor skipped (%s: %s); tasks keep their requested resources", kind, error)
