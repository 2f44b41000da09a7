"""Airflow hooks for Slurm: credentials and transport from an Airflow connection.

The connection (type ``slurm``) selects the transport in its extras::

    {"transport": "rest", "base_url": "http://head:6820", "api_version": "auto"}   # login + password = user + JWT
    {"transport": "ssh", "ssh_conn_id": "ssh_cluster"}
    {"transport": "local"}

Optional extras: ``work_dir`` (where jobs run and write output), ``partition`` (default),
``token_file`` (rest: a file with the JWT, re-read on every call), ``log_ssh_conn_id`` (rest:
read job output over SSH), ``verify`` (rest: ``true``, ``false`` or a CA bundle path),
``job_url_template`` (the task's "Slurm job" link). Without any ``slurm_default`` connection the
hook uses the CLI on this host.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow_provider_hpcai import config
from airflow_provider_hpcai.exceptions import ConfigurationError, TransportError
from airflow_provider_hpcai.jobs.states import JobStatus, Phase
from airflow_provider_hpcai.slurm.transport import SlurmTransport, retry_call
from airflow_provider_hpcai.spec import JobSpec

try:
    from airflow.sdk.bases.hook import BaseHook
except ImportError:  # pragma: no cover - Airflow < 3.1
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

__all__ = ["AsyncSlurmHook", "SlurmHook", "build_transport", "with_default_partition"]


_VERIFY_WORDS = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


def parse_verify(value: Any) -> bool | str:
    """The ``verify`` extra (TLS of slurmrestd): ``True`` (default), ``False``, or a CA bundle path.

    The connection form stores text, so ``"true"``/``"false"`` (any case) count as booleans; an
    empty value is the default.

    :raises ConfigurationError: for another type, or a CA bundle path that is not a file.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ConfigurationError("the slurm connection's extra 'verify' must be true, false or a CA bundle path")
    word = _VERIFY_WORDS.get(value.strip().lower())
    if word is not None:
        return word
    if not os.path.isfile(value):
        raise ConfigurationError(f"the slurm connection's 'verify' CA bundle {value!r} does not exist")
    return value


def build_transport(conn_type_extras: dict[str, Any], *, login: str | None, password: str | None,
                    run_as: str | None = None, get_connection: Any = None) -> SlurmTransport:
    """Build the transport a connection's extras describe (pure apart from the objects it creates).

    :param run_as: act as this allowlisted Slurm user (:mod:`airflow_provider_hpcai.identity`);
        ``None``: as the connection's own account.
    :param get_connection: reads another Airflow connection by id (per-user SSH and token connections).
    """
    for key in ("transport", "base_url", "api_version", "ssh_conn_id", "log_ssh_conn_id", "work_dir", "token_file",
                "partition"):
        value = conn_type_extras.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"the slurm connection's extra {key!r} must be text, not {type(value).__name__}")
    verify = parse_verify(conn_type_extras.get("verify"))
    kind = (conn_type_extras.get("transport") or "local").lower()
    if run_as is not None:
        return _user_transport(conn_type_extras, kind, run_as, login, password, get_connection, verify)
    if kind == "local":
        from airflow_provider_hpcai.slurm.cli_transport import CliTransport, LocalRunner

        return CliTransport(LocalRunner(), name="local")
    if kind == "ssh":
        ssh_conn_id = conn_type_extras.get("ssh_conn_id")
        if not ssh_conn_id:
            raise ConfigurationError("a slurm connection with transport 'ssh' needs the extra 'ssh_conn_id'")
        from airflow_provider_hpcai.slurm.cli_transport import CliTransport, SshRunner

        return CliTransport(SshRunner(ssh_conn_id), name="ssh")
    if kind == "rest":
        base_url = conn_type_extras.get("base_url")
        if not base_url or not login:
            raise ConfigurationError(
                "a slurm connection with transport 'rest' needs the extra 'base_url' and the Slurm user as login"
            )
        token_file = conn_type_extras.get("token_file")
        if not password and not token_file:
            raise ConfigurationError("a rest slurm connection needs the JWT as password or an extra 'token_file'")

        def token() -> str:
            if token_file:
                with open(token_file, encoding="utf-8") as handle:
                    return handle.read().strip()
            return password or ""

        from airflow_provider_hpcai.slurm.cli_transport import LocalRunner, SshRunner
        from airflow_provider_hpcai.slurm.rest_transport import RestTransport

        log_ssh = conn_type_extras.get("log_ssh_conn_id")
        return RestTransport(
            base_url,
            login,
            token,
            api_version=conn_type_extras.get("api_version") or "auto",
            workdir=conn_type_extras.get("work_dir") or "/tmp",
            file_reader=SshRunner(log_ssh) if log_ssh else LocalRunner(),
            verify=verify,
            job_path=conn_type_extras.get("job_path"),
        )
    raise ConfigurationError(f"unknown slurm transport {kind!r}: use 'rest', 'ssh' or 'local'")


def _user_transport(extras: dict[str, Any], kind: str, run_as: str, login: str | None, password: str | None,
                    get_connection: Any, verify: bool | str) -> SlurmTransport:
    """:func:`build_transport` for a job that runs as ``run_as`` (checked against the allowlist again)."""
    from airflow_provider_hpcai.identity.mapping import IdentitySettings
    from airflow_provider_hpcai.identity.transports import build_user_transport

    service_token = None
    if kind == "rest":
        if not extras.get("base_url") or not login:
            raise ConfigurationError(
                "a slurm connection with transport 'rest' needs the extra 'base_url' and the Slurm user as login"
            )
        token_file = extras.get("token_file")
        if password or token_file:
            def service_token() -> str:
                if token_file:
                    with open(token_file, encoding="utf-8") as handle:
                        return handle.read().strip()
                return password or ""
    if get_connection is None:
        get_connection = BaseHook.get_connection
    return build_user_transport(extras, kind=kind, user=run_as, settings=IdentitySettings.from_config(),
                                service_token=service_token, get_connection=get_connection, verify=verify)


def with_default_partition(parts: dict[str, dict[str, Any]], configured: str | None) -> dict[str, dict[str, Any]]:
    """``parts`` with ``default`` filled in from ``configured`` where the scheduler left it unknown (``None``)."""
    if configured not in parts or any(p.get("default") is not None for p in parts.values()):
        return parts
    return {name: {**part, "default": name == configured} for name, part in parts.items()}


class SlurmHook(BaseHook):
    """Submit, watch, cancel and account for Slurm jobs through one connection.

    :param slurm_conn_id: the Airflow connection (type ``slurm``).
    :param transport: use this transport instead of one built from the connection (tests, embedding).
    :param run_as: submit, watch, cancel and read output as this Slurm user (allowlisted in
        ``[hpcai] run_as_users``; see :mod:`airflow_provider_hpcai.identity`).
    """

    conn_name_attr = "slurm_conn_id"
    default_conn_name = "slurm_default"
    conn_type = "slurm"
    hook_name = "Slurm"

    def __init__(self, slurm_conn_id: str = default_conn_name, *, transport: SlurmTransport | None = None,
                 run_as: str | None = None) -> None:
        super().__init__()
        self.slurm_conn_id = slurm_conn_id
        self.run_as = run_as or None
        self._transport = transport
        self._injected = transport is not None
        self._extras: dict[str, Any] | None = None if transport is None else {}
        self._ensured: set[str] = set()
        self._load_lock = threading.Lock()  # a shared hook is used from several threads at once

    # ------------------------------------------------------------------ connection
    def _load(self) -> None:
        try:
            conn = self.get_connection(self.slurm_conn_id)
        except Exception as err:
            if self.slurm_conn_id != self.default_conn_name:
                raise ConfigurationError(
                    f"no Airflow connection {self.slurm_conn_id!r}: add one of type 'slurm' "
                    "(extras: transport rest/ssh/local)"
                ) from err
            self.log.info("No %s connection: using the Slurm CLI on this host", self.default_conn_name)
            self._extras = {"transport": "local"}
            self._transport = build_transport(self._extras, login=None, password=None, run_as=self.run_as)
            return
        self._extras = dict(conn.extra_dejson or {})
        self._transport = build_transport(self._extras, login=conn.login, password=conn.password,
                                          run_as=self.run_as, get_connection=self.get_connection)

    def get_conn(self) -> SlurmTransport:
        """The transport for this connection (built once, and again after refused credentials)."""
        transport = self._transport
        if transport is None:
            with self._load_lock:
                if self._transport is None:
                    self._load()
                transport = self._transport
        assert transport is not None
        return transport

    @property
    def extras(self) -> dict[str, Any]:
        if self._extras is None:
            self.get_conn()
        return self._extras or {}

    def _fresh_credentials(self, func):  # type: ignore[no-untyped-def]
        """Call ``func``; if the scheduler refuses our credentials, re-read the connection once and call again.

        Tokens expire and admins rotate them in the connection: a long-lived hook (the triggerer's)
        must pick up the new one instead of failing every task that waits on it.
        """
        try:
            return func()
        except TransportError as err:
            if not err.credentials or self._injected:
                raise
            self.log.warning("Slurm refused the credentials of connection %r (%s); re-reading the connection "
                             "in case its token was rotated, and trying once more", self.slurm_conn_id,
                             str(err).split("\n", 1)[0])
        with self._load_lock:
            self._transport = None  # the old one is dropped, not closed: another thread may be using it
            self._load()
        return func()

    @property
    def transport_name(self) -> str:
        return self.get_conn().name

    def workdir(self, override: str | None = None) -> str:
        """The job working directory: the task's, the connection's ``work_dir``, or the transport default.

        A job that runs as another user never uses the connection's ``work_dir`` (the service account's
        folder): its own (``[hpcai] run_as_work_dir``, else ``~user/.hpcai/jobs``).
        """
        from airflow_provider_hpcai.spec import check_path

        shared = None if self.run_as else self.extras.get("work_dir")
        return check_path("workdir", override or shared or self.get_conn().default_workdir())

    def default_partition(self) -> str | None:
        return self.extras.get("partition")

    #: How the hook waits between retries (tests replace it).
    sleep = staticmethod(time.sleep)

    def _retry(self, func, what: str):  # type: ignore[no-untyped-def]
        return retry_call(
            lambda: self._fresh_credentials(func),
            attempts=config.get_int("retry_attempts"),
            what=what,
            sleep=self.sleep,
            on_retry=lambda n, err: self.log.warning("%s failed (attempt %d), retrying: %s", what, n, err),
        )

    # ------------------------------------------------------------------ jobs
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> str:
        """Submit ``spec`` and return its job id.

        If a transient error hides whether sbatch went through, the tag decides: a live job
        with ``spec.tag`` is adopted instead of submitting a second one.
        """
        where = self.workdir(workdir)
        if spec.resources.partition is None and self.default_partition():
            spec = spec.replace(resources=spec.resources.replace(partition=self.default_partition()))
        if where not in self._ensured:  # one mkdir per hook and folder (a round trip over SSH)
            self._retry(lambda: self.get_conn().ensure_dir(where), f"creating {where}")
            self._ensured.add(where)

        def attempt() -> str:
            try:
                return self.get_conn().submit(spec, where)
            except TransportError as err:
                if err.retryable and spec.tag:
                    found = self.find_live_job(spec.tag)
                    if found is not None:
                        self.log.warning("Submission reported %s, but job %s with our tag exists", err, found.job_id)
                        return found.job_id
                raise

        job_id = self._retry(attempt, "sbatch")
        self.log.info("Submitted Slurm job %s (%s) through %s", job_id, spec.name, self.get_conn().name)
        return job_id

    def find_live_job(self, tag: str) -> JobStatus | None:
        """The still-active job carrying ``tag``, if any (one controller query)."""
        jobs = self._retry(lambda: self.get_conn().my_jobs(), "listing jobs")
        live = [s for s in jobs.values() if s.tag == tag and s.phase is Phase.ACTIVE]
        return max(live, key=lambda s: int(s.job_id)) if live else None

    def find_jobs_by_tag(self, tag: str) -> list[JobStatus]:
        """Every job the controller still knows that carries ``tag`` (newest first)."""
        jobs = self._retry(lambda: self.get_conn().my_jobs(), "listing jobs")
        return sorted((s for s in jobs.values() if s.tag == tag), key=lambda s: -int(s.job_id))

    def get_statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Statuses of many jobs in one query; unknown jobs are looked up in accounting."""
        if not job_ids:
            return {}
        return self._fresh_credentials(lambda: self._statuses(job_ids))

    def _statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        transport = self.get_conn()
        found = dict(transport.statuses(list(job_ids)))
        missing = [j for j in job_ids if j not in found]
        if missing:
            for job_id, record in transport.accounting(missing).items():
                found[job_id] = JobStatus(job_id, record.get("state") or "UNKNOWN", exit_code=record.get("exit_code"),
                                          tag=record.get("tag"))
        return found

    def get_status(self, job_id: str) -> JobStatus | None:
        return self._retry(lambda: self._statuses([str(job_id)]), "status query").get(str(job_id))

    def cancel(self, job_id: str) -> None:
        """Cancel a job; already-finished jobs are left alone."""
        self._retry(lambda: self.get_conn().cancel(str(job_id)), f"scancel {job_id}")
        self.log.info("Cancelled Slurm job %s", job_id)

    def release(self, job_id: str) -> None:
        """Release a held job or array element (``array_batch`` releases each element this way)."""
        self._retry(lambda: self.get_conn().release(str(job_id)), f"releasing {job_id}")

    def get_accounting(self, job_id: str) -> dict[str, Any]:
        """The accounting record of one job (with its steps), or ``{}`` if accounting has none yet."""
        records = self._retry(lambda: self.get_conn().accounting([str(job_id)]), "sacct")
        return records.get(str(job_id), {})

    def accounting_since(self, since: dt.datetime) -> dict[str, dict[str, Any]]:
        """Accounting of the connection user's jobs that started since ``since`` (one query)."""
        text = since.strftime("%Y-%m-%dT%H:%M:%S")
        return self._retry(lambda: self.get_conn().accounting_since(text), "accounting since " + text)

    def read_output(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return self._retry(lambda: self.get_conn().read_file(path, offset, limit), f"reading {path}")

    def partition_limits(self) -> dict[str, dict[str, Any]]:
        """Limits per partition: ``max_time_seconds``, ``default``, ``state``, ``total_cpus``, ``nodes``.

        Where the scheduler does not say which partition is the default (``default`` is ``None``:
        slurmrestd of Slurm 24.11 reports no partition flags), the connection's ``partition`` extra
        names it; without that extra it stays ``None`` (unknown), never a guess.
        """
        parts = self._retry(lambda: self.get_conn().partitions(), "partition limits")
        return with_default_partition(parts, self.default_partition())

    def cluster_status(self) -> dict[str, Any]:
        """Nodes, partitions and this provider's jobs: what the plugin's HPC page shows."""
        transport = self.get_conn()
        jobs = [s.to_dict() for s in transport.my_jobs().values() if s.tag]
        return {
            "transport": transport.name,
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "nodes": transport.nodes(),
            "partitions": list(transport.partitions().values()),
            "jobs": jobs,
        }

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button: lists the partitions."""
        try:
            names = sorted(self.get_conn().partitions())
            return True, f"Connected through {self.transport_name}; partitions: {', '.join(names)}"
        except Exception as err:
            return False, str(err)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class AsyncSlurmHook:
    """The same operations for triggers, without blocking the triggerer's event loop.

    Each call runs the sync hook in a worker thread; the poller makes one call per interval
    per connection, so threads are few. Triggers get theirs from :meth:`shared`: one per
    connection in a triggerer process, so 500 waiting tasks hold two transports (HTTP clients or
    SSH connections), not 500: one for status queries and cancels, one for copying job output,
    so that the many output reads never delay the one status query that detects a job's end.
    """

    _shared: ClassVar[dict[tuple[str, str | None], AsyncSlurmHook]] = {}

    def __init__(self, slurm_conn_id: str = SlurmHook.default_conn_name, *, hook: SlurmHook | None = None,
                 run_as: str | None = None) -> None:
        self.slurm_conn_id = slurm_conn_id
        self._hook = hook
        self.run_as = run_as or None

    @classmethod
    def shared(cls, slurm_conn_id: str = SlurmHook.default_conn_name, run_as: str | None = None) -> AsyncSlurmHook:
        """The process's hook for ``slurm_conn_id`` acting as ``run_as`` (created on first use)."""
        key = (slurm_conn_id, run_as or None)
        hook = cls._shared.get(key)
        if hook is None:
            hook = cls._shared[key] = cls(slurm_conn_id, run_as=run_as)
        return hook

    @classmethod
    def reset_shared(cls) -> None:
        """Forget the shared hooks (tests)."""
        cls._shared.clear()

    @functools.cached_property
    def hook(self) -> SlurmHook:
        return self._hook or SlurmHook(self.slurm_conn_id, run_as=self.run_as)

    @functools.cached_property
    def output_hook(self) -> SlurmHook:
        """The hook that reads job output (its own transport; the given hook in tests)."""
        return self._hook or SlurmHook(self.slurm_conn_id, run_as=self.run_as)

    async def get_statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return await asyncio.to_thread(self.hook.get_statuses, list(job_ids))

    async def cancel(self, job_id: str) -> None:
        await asyncio.to_thread(self.hook.cancel, job_id)

    async def read_output(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return await asyncio.to_thread(self.output_hook.read_output, path, offset, limit)

    async def get_accounting(self, job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.hook.get_accounting, job_id)
