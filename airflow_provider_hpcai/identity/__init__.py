"""Jobs that run as their owner: which Slurm user a task's job runs as, and how each transport acts as it.

:mod:`.mapping` is pure (the allowlist, the owner mapping, :func:`resolve`); :mod:`.runners` and
:mod:`.transports` act as a user (sudo on this host, a per-user SSH connection, slurmrestd
impersonation or per-user tokens) and are imported only when a job runs as someone. The trust
model is in ``SECURITY.md``.
"""

from __future__ import annotations

from airflow_provider_hpcai.identity.mapping import (
    IdentitySettings,
    RunAsRefusedError,
    check_user,
    check_user_name,
    parse_mapping,
    resolve,
)

__all__ = ["IdentitySettings", "RunAsRefusedError", "check_user", "check_user_name", "parse_mapping", "resolve"]
