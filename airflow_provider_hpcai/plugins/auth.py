"""Airflow authentication and authorisation for the plugin's routes.

A plugin's FastAPI app gets no protection from Airflow by itself. Every route here
depends on one of the checks below, built on ``airflow.api_fastapi.core_api.security``:
the user comes from the ``Authorization: Bearer`` JWT or, for the pages opened inside the
Airflow UI, from Airflow's ``_token`` cookie (the same resolution Airflow's own API uses);
the auth manager then decides.

============  ==================================================  ==========================
check         Airflow permission                                  used for
============  ==================================================  ==========================
``READ``      read DAGs                                           pages, gallery, status
``CREATE``    create DAGs                                         instantiate
``DELETE``    delete DAGs                                         delete an instance
``ADMIN``     change configuration (Op/Admin in the simple         publish, deprecate
              auth manager)
============  ==================================================  ==========================

Routes that change state also require a JSON body (``Content-Type: application/json``) or
an ``X-Requested-With`` header: a cross-site form cannot send either, so a logged-in
browser cannot be made to publish or instantiate from another site (CSRF).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, HTTPException, Request, status

__all__ = ["ADMIN", "CREATE", "DELETE", "READ", "check_dag_read", "manages_all", "require", "same_origin_write",
           "user_name"]


def _dag(method: str) -> Callable[[Any, Any], bool]:
    return lambda manager, user: manager.is_authorized_dag(method=method, user=user)


def _configuration_write(manager: Any, user: Any) -> bool:
    return manager.is_authorized_configuration(method="PUT", user=user)


def require(check: Callable[[Any, Any], bool], action: str) -> Callable[..., Any]:
    """A dependency that resolves the Airflow user and answers 403 unless ``check`` allows it.

    :param check: ``check(auth_manager, user) -> bool``.
    :param action: what is being attempted, for the 403 message.
    """

    def dependency(user: GetUserDep) -> Any:
        from airflow.api_fastapi.app import get_auth_manager

        if not check(get_auth_manager(), user):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"Forbidden: your Airflow role does not allow you to {action}; ask an administrator",
            )
        return user

    return dependency


READ = Depends(require(_dag("GET"), "view workflow templates"))
CREATE = Depends(require(_dag("POST"), "create DAGs from templates"))
DELETE = Depends(require(_dag("DELETE"), "delete template instances"))
ADMIN = Depends(require(_configuration_write, "publish or deprecate templates"))


def check_dag_read(user: Any, dag_id: str) -> None:
    """403 unless ``user`` may read DAG ``dag_id`` (the run monitor shows one DAG's runs)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: your Airflow role cannot see this DAG's runs")


def manages_all(user: Any) -> bool:
    """Whether ``user`` may see and change every user's instances and jobs (Op and Admin).

    Others see their own instances' parameters and usage rows only, and delete only their
    own instances (see ``SECURITY.md``).
    """
    from airflow.api_fastapi.app import get_auth_manager

    return bool(_configuration_write(get_auth_manager(), user))


def same_origin_write(request: Request) -> None:
    """Refuse state-changing requests a cross-site HTML form could forge."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not request.headers.get("x-requested-with"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send a JSON body (Content-Type: application/json) or an X-Requested-With header",
        )


def user_name(user: Any) -> str:
    """The user's display name for records (owner, publisher)."""
    getter = getattr(user, "get_name", None)
    name = getter() if callable(getter) else getattr(user, "username", None)
    return str(name or "unknown")[:128]
