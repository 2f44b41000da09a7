"""The Airflow plugin: the FastAPI app under ``/hpcai`` and two pages in the navigation.

Registered through the ``airflow.plugins`` entry point
(``hpcai = "airflow_provider_hpcai.plugins.plugin:HpcAiPlugin"``). Every Airflow component
loads plugins, but only the API server asks for ``fastapi_apps``: the app (and FastAPI
with it) is built then, not at import.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_hpcai.plugins import URL_PREFIX

__all__ = ["HpcAiPlugin"]


class HpcAiPlugin(AirflowPlugin):
    """Workflow Templates, Compose Workflow and HPC Resources pages, the HPC Jobs tab of a DAG run, and their API."""

    name = "hpcai"
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Workflow Templates",
            "href": f"{URL_PREFIX}/templates",
            "url_route": "hpcai-templates",
            "destination": "nav",
            "nav_top_level": True,
        },
        {
            "name": "Compose Workflow",
            "href": f"{URL_PREFIX}/compose",
            "url_route": "hpcai-compose",
            "destination": "nav",
            "nav_top_level": True,
        },
        {
            "name": "HPC Jobs",
            "href": f"{URL_PREFIX}/monitor?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "url_route": "hpcai-jobs",
            "destination": "dag_run",
        },
        {
            "name": "HPC Resources",
            "href": f"{URL_PREFIX}/resources",
            "url_route": "hpcai-resources",
            "destination": "nav",
            "nav_top_level": True,
        },
    ]

    _apps: list[dict[str, Any]] | None = None

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The plugin's FastAPI app, built on first use."""
        if self._apps is None:
            from airflow_provider_hpcai.plugins.app import create_app

            self._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "HPC-AI workflow templates"}]
        return self._apps
