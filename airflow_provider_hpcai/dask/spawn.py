"""Let a local Dask cluster's worker processes start inside an Airflow 3 task process.

``distributed`` starts each local worker with multiprocessing's ``spawn``, and ``spawn`` re-runs
the parent's ``__main__`` file in the child before anything else. In a task that the LocalExecutor
(or Celery, or ``airflow task run``) runs, that file is the ``airflow`` command itself: every worker
imports ``airflow``, whose ``settings.initialize()`` configures the ORM from
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``. The task runner set that variable to
``airflow-db-not-allowed:///`` (``block_orm_access``: tasks get no database), so SQLAlchemy cannot
parse it, the child dies before the worker starts, and ``LocalCluster`` raises "Nanny failed to
start". ``airflow dags test`` runs tasks without that block, so it never shows this.

:class:`SpawnEnviron` sets Airflow's own opt-out of that initialisation, ``_AIRFLOW__AS_LIBRARY``,
in this process's environment while the cluster runs (adaptive clusters spawn workers later
too), so that children inherit it; it is removed again when the last cluster closes. Workers
then import the ``airflow`` command as a plain library: no ORM, no database URL, nothing of the
task's database access restored. Pure Python, no dask import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping

__all__ = ["AS_LIBRARY", "SpawnEnviron"]

#: Airflow's switch (``airflow/__init__.py``) that skips ``settings.initialize()`` on import.
AS_LIBRARY = "_AIRFLOW__AS_LIBRARY"

_lock = threading.Lock()
_users = 0  # clusters of this process that rely on the variable we set
_ours = False  # whether we set it (a value set by someone else is never touched)


class SpawnEnviron:
    """Holds ``_AIRFLOW__AS_LIBRARY=1`` in the environment between :meth:`apply` and :meth:`restore`.

    Counted per process, so two clusters of one process (``airflow dags test`` runs every task in
    one) share it and the last one to close removes it. Both methods are idempotent per instance.

    :param environ: the environment to change (``os.environ``; tests pass a dict).
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._applied = False

    def apply(self) -> None:
        """Set the variable (unless it is set already) for worker processes spawned from now on."""
        global _users, _ours
        with _lock:
            if self._applied:
                return
            self._applied = True
            if _users == 0:
                _ours = AS_LIBRARY not in self._environ
                if _ours:
                    self._environ[AS_LIBRARY] = "1"
            _users += 1

    def restore(self) -> None:
        """Undo :meth:`apply`: the last cluster to close removes the variable if this module set it."""
        global _users, _ours
        with _lock:
            if not self._applied:
                return
            self._applied = False
            _users -= 1
            if _users == 0 and _ours:
                self._environ.pop(AS_LIBRARY, None)
                _ours = False
