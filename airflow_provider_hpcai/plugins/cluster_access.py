"""Which Airflow connections the "HPC Resources" page may query.

A Viewer chooses the connection in ``/api/cluster?conn_id=``, so the server must not use just
any connection for it (a database connection was once used as a Slurm transport). The rule:

* ``[hpcai] cluster_status_conn_ids`` set (comma-separated): exactly those; the first one is
  the page's default.
* unset: ``slurm_default`` (the hook's default, the local CLI when no such connection exists)
  and any connection whose type is ``slurm``.

Refusals say the same whether the connection exists or not, so ids cannot be probed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fastapi import HTTPException, status

__all__ = ["DEFAULT_CONN_ID", "ConnectionAllowList", "configured_conn_ids"]

DEFAULT_CONN_ID = "slurm_default"
_MAX_REMEMBERED = 1024


def configured_conn_ids() -> list[str]:
    """``[hpcai] cluster_status_conn_ids`` as a list (empty when unset)."""
    from airflow_provider_hpcai import config

    return [c.strip() for c in str(config.get("cluster_status_conn_ids") or "").split(",") if c.strip()]


def _is_slurm_connection(conn_id: str) -> bool:
    try:
        from airflow_provider_hpcai.hooks.slurm import SlurmHook

        return SlurmHook.get_connection(conn_id).conn_type == SlurmHook.conn_type
    except Exception:  # no such connection, or no metadata database: not allowed
        return False


class ConnectionAllowList:
    """Decides (and remembers for ``ttl`` seconds) whether a connection id may be used.

    :param allowed: a fixed list, or ``None`` for the configured rule above.
    :param ttl: seconds a decision is reused (a connection lookup may reach the database).
    :param is_slurm_connection: looks a connection's type up (tests pass a fake).
    """

    def __init__(
        self,
        allowed: list[str] | None = None,
        *,
        ttl: float = 60.0,
        is_slurm_connection: Callable[[str], bool] = _is_slurm_connection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fixed = allowed
        self.ttl = ttl
        self.is_slurm_connection = is_slurm_connection
        self.clock = clock
        self._decided: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def listed(self) -> list[str]:
        """The explicit list (fixed or configured); empty means "connections of type slurm"."""
        return list(self.fixed) if self.fixed is not None else configured_conn_ids()

    def resolve(self, conn_id: str | None) -> str:
        """The connection to use for ``conn_id`` (``None``: the default), or 403 when it is not allowed."""
        listed = self.listed()
        if conn_id is None:
            return listed[0] if listed else DEFAULT_CONN_ID
        if self._allowed(conn_id, listed):
            return conn_id
        which = f"these connections: {', '.join(listed)}" if listed else f"{DEFAULT_CONN_ID} and connections of type 'slurm'"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the HPC Resources page may use {which}; ask an administrator to add a connection to "
            "[hpcai] cluster_status_conn_ids",
        )

    def _allowed(self, conn_id: str, listed: list[str]) -> bool:
        if listed:
            return conn_id in listed
        if conn_id == DEFAULT_CONN_ID:
            return True
        now = self.clock()
        with self._lock:
            known = self._decided.get(conn_id)
        if known is not None and now - known[0] < self.ttl:
            return known[1]
        decision = self.is_slurm_connection(conn_id)
        with self._lock:
            if len(self._decided) >= _MAX_REMEMBERED:
                self._decided.clear()
            self._decided[conn_id] = (now, decision)
        return decision
