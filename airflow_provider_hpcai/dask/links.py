"""The "Dask dashboard" extra link of :class:`~airflow_provider_hpcai.operators.dask.DaskOperator`.

Airflow 3 computes extra links on the worker when a task ends and stores them in XCom under the
link's ``xcom_key``; the UI only reads that XCom. So that the link works *while* the cluster runs,
the operator pushes the dashboard URL under the same key as soon as the cluster is up; at the
end :meth:`DaskDashboardLink.get_link` returns the same URL (the dashboard is gone by then: the
link stays for the record). Only ``http`` URLs the hook built itself are ever stored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseOperatorLink

__all__ = ["DASHBOARD_XCOM_KEY", "DaskDashboardLink", "safe_dashboard_url"]

#: XCom key of the dashboard URL (also readable by downstream tasks).
DASHBOARD_XCOM_KEY = "dask_dashboard"


def safe_dashboard_url(url: Any) -> str:
    """``url`` when it is an ``http(s)`` URL with a host, else ``''`` (a disabled link)."""
    if not isinstance(url, str) or not url:
        return ""
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.hostname else ""


class DaskDashboardLink(BaseOperatorLink):
    """"Dask dashboard": the scheduler's dashboard (``/status``; distributed's info pages without bokeh)."""

    name = "Dask dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom  # the deployment's XCom backend

        return safe_dashboard_url(XCom.get_value(ti_key=ti_key, key=DASHBOARD_XCOM_KEY))
