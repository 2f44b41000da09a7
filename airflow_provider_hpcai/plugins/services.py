"""The plugin's links to other parts of the provider, each imported only when called.

Each function raises :class:`~.monitor.ServiceUnavailable` (HTTP 503) with a clear
message when the part it needs is not installed or not configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.plugins.monitor import ServiceUnavailable

__all__ = ["ADVISOR_FUNCTION", "default_advisor", "default_usage_history"]

#: The advisor entry point the plugin calls: ``suggest_resources(key, requested) -> dict``.
ADVISOR_FUNCTION = "suggest_resources"


def default_advisor(key: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, Any]:
    """Ask ``airflow_provider_hpcai.policy.suggest_resources`` for resources.

    :param key: what identifies the work: ``template``, ``version``, ``owner``,
        ``size_params`` (the numeric parameters) and ``params``.
    :param requested: the template's resources for these parameters (``Resources.to_dict()``).
    :return: the advisor's answer, a mapping with at least ``resources``.
    """
    try:
        from airflow_provider_hpcai import policy
    except ImportError as err:
        raise ServiceUnavailable(f"the resource advisor is not installed ({err})") from None
    suggest = getattr(policy, ADVISOR_FUNCTION, None)
    if not callable(suggest):
        raise ServiceUnavailable(
            f"the resource advisor offers no {ADVISOR_FUNCTION}(key, requested) here; "
            "predictions are unavailable, the template's defaults apply"
        )
    try:
        answer = suggest(dict(key), dict(requested))
    except Exception as err:
        raise ServiceUnavailable(f"the resource advisor failed: {err}") from None
    if isinstance(answer, Mapping):
        return dict(answer)
    to_dict = getattr(answer, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise ServiceUnavailable(f"the resource advisor answered {type(answer).__name__}, not a mapping")


def default_usage_history(limit: int) -> list[dict[str, Any]]:
    """Finished jobs with what they asked for (the prediction they ran under) and used.

    Reads the advisor's job history store (``[hpcai] advisor_home``).
    """
    try:
        from airflow_provider_hpcai import config
        from airflow_provider_hpcai.advisor.history import HistoryStore
    except ImportError as err:
        raise ServiceUnavailable(f"the advisor's job history is not installed ({err})") from None
    home = config.get("advisor_home")
    if not home:
        raise ServiceUnavailable("[hpcai] advisor_home is not set: there is no job history to plot")
    try:
        records = HistoryStore(home).records()
    except Exception as err:
        raise ServiceUnavailable(f"cannot read the job history in {home}: {err}") from None
    rows = []
    for record in sorted(records, key=lambda r: r.submit_time)[-limit:]:
        data = record.to_dict()
        rows.append(
            {
                key: data.get(key)
                for key in (
                    "job_id",
                    "submit_time",
                    "state",
                    "elapsed_seconds",
                    "requested_seconds",
                    "max_rss_bytes",
                    "requested_memory_bytes",
                    "dag_id",
                    "task_id",
                    "user",
                )
            }
        )
    return rows
