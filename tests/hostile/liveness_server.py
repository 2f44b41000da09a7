"""The server side of ``test_plugin_liveness``: the plugin app under uvicorn, in a process of its own.

Run as ``python -m tests.hostile.liveness_server PORT REPO_DIR``. It serves a health route shaped
like Airflow's ``/api/v2/monitor/health`` (a plain ``def`` route, so it needs a thread of the
same shared pool as Airflow's own routes) and the plugin under ``/hpcai``, whose only allowed
cluster connection, ``slurm_hung``, never answers.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _hung_cluster(conn_id: str | None) -> dict[str, Any]:
    threading.Event().wait()  # a Slurm host that never answers
    raise AssertionError("unreachable")


def build_app(repo_dir: Path) -> Any:
    """The parent app: health route plus the plugin mounted under /hpcai."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI

    from airflow_provider_hpcai.plugins.app import create_app
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    RevokedToken.is_revoked = classmethod(lambda cls, jti, session=None: False)  # no metadata database here
    create_auth_manager()  # what the api-server does at start (SimpleAuthManager; the secret is in the env)
    repo = TemplateRepository(repo_dir, TemplateSettings(root=repo_dir))
    repo.publish(ROOT / "airflow_provider_hpcai" / "templates" / "builtin" / "hello-local", publisher="seed")
    parent = FastAPI()

    @parent.get("/api/v2/monitor/health")
    def health() -> dict[str, str]:
        return {"status": "healthy"}

    parent.mount("/hpcai", create_app(repository=lambda: repo, cluster_status=_hung_cluster,
                                      advisor=lambda key, requested: {"resources": dict(requested)},
                                      usage_history=lambda limit: [], cluster_conn_ids=["slurm_hung"]))
    return parent


def main(argv: list[str]) -> None:
    import uvicorn

    port, repo_dir = int(argv[0]), Path(argv[1])
    uvicorn.run(build_app(repo_dir), host="127.0.0.1", port=port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main(sys.argv[1:])
