"""Grid Engine transport: its commands (``qsub``, ``qstat``, ``qacct``, ``qdel``) run on this host.

The host must be a Grid Engine submit host (``SGE_ROOT``/``SGE_CELL`` from the options, the
environment, or Debian's defaults). Every command is an argv list (no shell); failures keep the
command, its exit code and stderr, and those that look like a qmaster outage are retryable.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from airflow_provider_hpcai.exceptions import TransportError

__all__ = ["GridEngineHook"]

_OUTAGE = ("unable to contact qmaster", "unable to send message to qmaster", "commlib error", "can't find connection")


class GridEngineHook:
    """Runs Grid Engine's commands for the backend.

    :param sge_root: ``SGE_ROOT`` (default: the environment's, else ``/var/lib/gridengine``).
    :param sge_cell: ``SGE_CELL`` (default: the environment's, else ``default``).
    :param timeout: seconds one command may take.
    """

    def __init__(self, sge_root: str | None = None, sge_cell: str | None = None, timeout: float = 60.0) -> None:
        self.env = {**os.environ, "SGE_ROOT": sge_root or os.environ.get("SGE_ROOT") or "/var/lib/gridengine",
                    "SGE_CELL": sge_cell or os.environ.get("SGE_CELL") or "default"}
        self.timeout = timeout
        self.calls = 0

    def run(self, argv: Sequence[str], *, ok_codes: Sequence[int] = (0,)) -> str:
        """Run one command; its stdout, or :class:`TransportError`."""
        self.calls += 1
        command = " ".join(argv)
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError as err:
            raise TransportError(f"{argv[0]} is not installed: this host is not a Grid Engine submit host "
                                 "(install gridengine-client, or run scripts/local-gridengine up)",
                                 command=command) from err
        except subprocess.TimeoutExpired as err:
            raise TransportError(f"{argv[0]} took more than {self.timeout:.0f} s", command=command,
                                 retryable=True) from err
        if done.returncode not in ok_codes:
            text = (done.stderr + done.stdout).lower()
            raise TransportError(f"{argv[0]} failed", command=command, returncode=done.returncode,
                                 stdout=done.stdout, stderr=done.stderr,
                                 retryable=any(marker in text for marker in _OUTAGE))
        return done.stdout
