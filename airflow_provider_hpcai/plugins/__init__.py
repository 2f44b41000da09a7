"""The provider's Airflow UI plugin (Airflow 3.3): workflow-template gallery and HPC resources.

``HpcAiPlugin`` lives in :mod:`.plugin`; the FastAPI app factory ``create_app`` in :mod:`.app`.
"""

from __future__ import annotations

__all__ = ["URL_PREFIX", "HpcAiPlugin", "create_app"]

#: Where Airflow mounts the plugin's app.
URL_PREFIX = "/hpcai"


def __getattr__(name: str):  # lazy: importing the package must not pull in FastAPI
    if name == "HpcAiPlugin":
        from airflow_provider_hpcai.plugins.plugin import HpcAiPlugin

        return HpcAiPlugin
    if name == "create_app":
        from airflow_provider_hpcai.plugins.app import create_app

        return create_app
    raise AttributeError(name)
