"""The advisor's suggestion for one piece of work, outside a DAG (the template pages ask it).

The policy layer sits above the advisor: it reads the advisor's settings and champion model and
applies its own decision rules (:func:`~airflow_provider_hpcai.policy.decision.advise`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["suggest_resources"]


def suggest_resources(key: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, Any]:
    """The advisor's suggestion for one piece of work (used by the template pages).

    :param key: what identifies the work: ``template``/``dag_id``, ``task_id``, ``owner``,
        ``kernel`` and its ``size_params``.
    :param requested: the resources the work would ask for (``Resources.to_dict()``).
    :return: ``{"resources": <applied, as a mapping>, "predicted": ..., "decision": <the full
        decision>}``; the request unchanged, with the reason, when there is no model or no history.
        The same decision a task would get (the guard's verdict on a snapshot of its state;
        ``estimate`` mode's ``time_min``); nothing is recorded.
    """
    from airflow_provider_hpcai.advisor.settings import read_settings
    from airflow_provider_hpcai.policy.live import decide_for
    from airflow_provider_hpcai.resources import Resources

    settings = read_settings()
    lookup = dict(key)
    lookup.setdefault("dag_id", lookup.get("template"))
    lookup.setdefault("task_id", lookup.get("task_id") or "simulation")
    mode = settings.mode if settings.mode in ("enforce", "estimate") else "advise"
    decision = decide_for(lookup, Resources.from_dict(dict(requested)), mode, settings.home,
                          enforce_time_min=settings.enforce_time_min, time_min_soft=settings.time_min_soft)
    return {"resources": decision.applied.to_dict(), "predicted": decision.predicted, "decision": decision.to_dict()}
