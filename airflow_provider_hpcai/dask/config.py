"""Parse a ``dask`` connection into a validated cluster configuration.

The constructor arguments of each cluster class are built from it by
:mod:`airflow_provider_hpcai.dask.builders`. Every function here is pure: no dask import, no I/O. The connection's extras choose the cluster::

    {"cluster": "local", "n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"}
    {"cluster": "address", "address": "tcp://scheduler:8786"}
    {"cluster": "slurm", "slurm_conn_id": "slurm_local", "cores": 1, "memory": "1GiB",
     "walltime": "00:30:00", "jobs": 2, "queue": "debug", "job_extra_directives": ["--constraint=avx2"]}
    {"cluster": "kubernetes", "image": "ghcr.io/dask/dask:2026.8.0", "n_workers": 2, "namespace": "hpc"}

``local``, ``slurm`` and ``kubernetes`` also take ``adaptive`` (see :mod:`airflow_provider_hpcai.dask.adaptive`),
e.g. ``"adaptive": {"minimum": 1, "maximum": 8, "scale_down_wait": "60s"}``; ``local`` and ``slurm``
take ``dashboard_address`` (default ``127.0.0.1:0``: this machine only, a free port; ``null``: none).

Values that end up in a Slurm batch script (partition, account, memory, walltime, paths, directives)
are checked against conservative patterns and re-formatted, so no newline or shell character can
reach the script.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from airflow_provider_hpcai.dask.adaptive import AdaptiveConfig, parse_adaptive
from airflow_provider_hpcai.dask.errors import DaskConfigurationError
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import format_duration, parse_duration, parse_memory

__all__ = [
    "DASHBOARD_RE",
    "DNS_LABEL_RE",
    "NAME_RE",
    "PATH_RE",
    "AddressClusterConfig",
    "ClusterConfig",
    "KubernetesClusterConfig",
    "LocalClusterConfig",
    "SlurmClusterConfig",
    "parse_cluster_config",
    "with_adaptive",
]

ClusterKind = Literal["local", "address", "slurm", "kubernetes"]
CLUSTER_KINDS: tuple[str, ...] = ("local", "address", "slurm", "kubernetes")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")  # partition, account, job name
PATH_RE = re.compile(r"^/[A-Za-z0-9_./+@\-]{0,1023}\Z")  # no spaces, quotes or shell characters
_DIRECTIVE_RE = re.compile(r"^--[a-z][a-z0-9\-]{0,63}(?:=[A-Za-z0-9_.:,@%+/=\-]{1,512})?\Z")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,32}\Z")
_ADDRESS_RE = re.compile(r"^(?:(tcp|tls)://)?(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.\-]{1,253}):(\d{1,5})\Z")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\Z")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/:@]{0,254}\Z")
_ENVNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_QUANTITY_RE = re.compile(r"^\d+(?:\.\d+)?(?:m|k|Ki|M|Mi|G|Gi|T|Ti)?\Z")
DASHBOARD_RE = re.compile(r"^(?:[A-Za-z0-9_.\-]{1,253}|\[[0-9A-Fa-f:]+\])?:(\d{1,5})\Z")
#: The dashboard listens on this machine only, on a free port, unless the connection says otherwise.
DEFAULT_DASHBOARD = "127.0.0.1:0"

#: Directives the hook sets itself from dedicated keys; naming them again would contradict those.
RESERVED_DIRECTIVES: dict[str, str] = {
    "--comment": "the hook tags its worker jobs with it",
    "--job-name": "use the extra 'job_name'",
    "--partition": "use the extra 'queue'",
    "--time": "use the extra 'walltime'",
    "--mem": "use the extra 'memory'",
    "--mem-per-cpu": "use the extra 'memory'",
    "--account": "use the extra 'account'",
    "--output": "use the extra 'log_directory'",
    "--error": "use the extra 'log_directory'",
    "--array": "one worker job per Slurm job; use 'jobs'",
    "--wrap": "the worker command is built by dask-jobqueue",
    "--cpus-per-task": "use the extra 'cores'",
    "--ntasks": "dask-jobqueue runs one task per job",
}


def _fail(conn_id: str, message: str) -> DaskConfigurationError:
    return DaskConfigurationError(f"dask connection {conn_id!r}: {message}")


@dataclasses.dataclass(frozen=True)
class LocalClusterConfig:
    """A ``distributed.LocalCluster`` on the Airflow worker (the default)."""

    kind: ClassVar[str] = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "2GiB"
    processes: bool = True
    adaptive: AdaptiveConfig | None = None
    dashboard_address: str | None = DEFAULT_DASHBOARD
    #: Fail the tasks waiting for a worker after this many seconds with none (local workers start in
    #: seconds: a cluster without any for 5 minutes has lost them all); ``None``: wait for ever.
    no_workers_timeout: float | None = 300.0


@dataclasses.dataclass(frozen=True)
class AddressClusterConfig:
    """An existing scheduler; the hook connects to it and never closes it."""

    kind: ClassVar[str] = "address"
    address: str
    timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class SlurmClusterConfig:
    """A dask-jobqueue ``SLURMCluster``: each worker is one Slurm job submitted with ``sbatch`` from here."""

    kind: ClassVar[str] = "slurm"
    slurm_conn_id: str | None = None
    cores: int = 1
    processes: int = 1
    memory: str = "1024MiB"
    walltime: str = "00:30:00"
    jobs: int = 2
    queue: str | None = None
    account: str | None = None
    job_name: str = "hpcai-dask"
    python: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    log_directory: str | None = None
    local_directory: str | None = None
    interface: str | None = None
    wait_for_workers: int = 1
    worker_timeout: float = 300.0
    adaptive: AdaptiveConfig | None = None
    dashboard_address: str | None = DEFAULT_DASHBOARD
    #: As :attr:`LocalClusterConfig.no_workers_timeout`; off by default, since worker jobs may wait in
    #: the Slurm queue for hours. Set it where the queue is short and a stall should fail the task.
    no_workers_timeout: float | None = None

    @property
    def n_workers(self) -> int:
        return self.jobs * self.processes


@dataclasses.dataclass(frozen=True)
class KubernetesClusterConfig:
    """A dask-kubernetes ``KubeCluster`` (operator-based), created and deleted by the hook."""

    kind: ClassVar[str] = "kubernetes"
    name: str | None = None
    namespace: str | None = None
    image: str = "ghcr.io/dask/dask:latest"
    n_workers: int = 2
    resources: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    scheduler_service_type: str = "ClusterIP"
    idle_timeout: int | None = None
    resource_timeout: int = 300
    wait_for_workers: int = 1
    worker_timeout: float = 300.0
    adaptive: AdaptiveConfig | None = None


ClusterConfig = LocalClusterConfig | AddressClusterConfig | SlurmClusterConfig | KubernetesClusterConfig


# ------------------------------------------------------------------------------------ value checks
class _Reader:
    """Reads typed values out of one connection's extras, naming the connection and key in errors."""

    def __init__(self, conn_id: str, extras: Mapping[str, Any]) -> None:
        self.conn_id = conn_id
        self.extras = extras

    def fail(self, message: str) -> DaskConfigurationError:
        return _fail(self.conn_id, message)

    def integer(self, key: str, default: int, minimum: int, maximum: int) -> int:
        value = self.extras.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise self.fail(f"extra {key!r} must be a whole number from {minimum} to {maximum}, got {value!r}")
        return value

    def number(self, key: str, default: float, minimum: float, maximum: float) -> float:
        value = self.extras.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
            raise self.fail(f"extra {key!r} must be a number of seconds from {minimum:g} to {maximum:g}, got {value!r}")
        return float(value)

    def optional_number(self, key: str, default: float | None, minimum: float, maximum: float) -> float | None:
        """A number of seconds, or ``null`` (none)."""
        if key in self.extras and self.extras[key] is None:
            return None
        if key not in self.extras and default is None:
            return None
        return self.number(key, default if default is not None else minimum, minimum, maximum)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.extras.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"extra {key!r} must be true or false, got {value!r}")
        return value

    def pattern(self, key: str, default: str | None, regex: re.Pattern[str], what: str) -> str | None:
        value = self.extras.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not regex.fullmatch(value) or "/../" in value + "/":
            raise self.fail(f"extra {key!r} = {value!r} is not allowed: {what}")
        return value

    def memory(self, key: str, default: str) -> str:
        """A size with a unit, returned as whole MiB (``'1536MiB'``) so only digits reach the script."""
        value = self.extras.get(key, default)
        if not isinstance(value, str) or any(ch in value for ch in "\n\r\x00;&|`$<>\\'\"") or not re.search(
            r"[KMGTkmgt]", value
        ):
            raise self.fail(f"extra {key!r} must be a size with a unit such as '1GiB' or '512MiB', got {value!r}")
        try:
            num_bytes = parse_memory(value)
        except InvalidJobSpecError as err:
            raise self.fail(f"extra {key!r}: {err}") from None
        assert num_bytes is not None
        return f"{-(-num_bytes // 1024**2)}MiB"

    def adaptive(self) -> AdaptiveConfig | None:
        return parse_adaptive(self.extras.get("adaptive"), where=f"dask connection {self.conn_id!r}: extra 'adaptive'")

    def dashboard(self) -> str | None:
        value = self.extras.get("dashboard_address", DEFAULT_DASHBOARD)
        if value is None or value is False:
            return None
        match = DASHBOARD_RE.fullmatch(value) if isinstance(value, str) else None
        if not match or int(match.group(1)) > 65535:
            raise self.fail(f"extra 'dashboard_address' = {value!r} is not an address: use 'host:port' such as "
                            "'127.0.0.1:0' (this machine, a free port) or ':8787' (every interface), or null for none")
        return value

    def walltime(self, key: str, default: str) -> str:
        value = self.extras.get(key, default)
        if not isinstance(value, str) or not re.fullmatch(r"[0-9:\-]{1,16}", value):
            raise self.fail(f"extra {key!r} must be a Slurm time such as '00:30:00' or '1-00:00:00', got {value!r}")
        try:
            seconds = parse_duration(value)
        except InvalidJobSpecError as err:
            raise self.fail(f"extra {key!r}: {err}") from None
        if not seconds:
            raise self.fail(f"extra {key!r} must be longer than zero, got {value!r}")
        return format_duration(seconds)


def _check_keys(reader: _Reader, kind: str, allowed: set[str]) -> None:
    unknown = sorted(set(reader.extras) - allowed - {"cluster"})
    if unknown:
        raise reader.fail(
            f"unknown extra(s) {', '.join(map(repr, unknown))} for cluster {kind!r}; allowed: {', '.join(sorted(allowed))}"
        )


def check_directive(conn_id: str, index: int, directive: Any) -> str:
    """Accept one ``#SBATCH`` option (long form, no spaces or shell characters) or explain why not."""
    if not isinstance(directive, str) or not _DIRECTIVE_RE.fullmatch(directive):
        raise _fail(
            conn_id,
            f"job_extra_directives[{index}] = {directive!r} is not allowed: use long options such as "
            "'--constraint=avx2' or '--exclusive' (letters, digits and _.:,@%+/=- only; no spaces, "
            "newlines, quotes or shell characters)",
        )
    option = directive.split("=", 1)[0]
    if option in RESERVED_DIRECTIVES:
        raise _fail(conn_id, f"job_extra_directives[{index}] = {directive!r}: {option} is set by the hook; "
                             f"{RESERVED_DIRECTIVES[option]}")
    return directive


# ------------------------------------------------------------------------------------ parsing
def parse_cluster_config(extras: Mapping[str, Any] | None, *, conn_id: str = "dask_default",
                         host: str | None = None, port: int | None = None) -> ClusterConfig:
    """Validate a ``dask`` connection and return its cluster configuration.

    :param extras: the connection's extras (``None`` or ``{}``: a local cluster with the defaults).
    :param conn_id: named in error messages.
    :param host: the connection's host; without a ``cluster`` extra it means ``address``.
    :param port: the connection's port (default 8786) used with ``host``.
    :raises DaskConfigurationError: a key is unknown, missing or unsafe; the message names it.
    """
    extras = dict(extras or {})
    kind = extras.get("cluster") or ("address" if host else "local")
    if kind not in CLUSTER_KINDS:
        raise _fail(conn_id, f"extra 'cluster' = {kind!r}; use one of {', '.join(CLUSTER_KINDS)}")
    reader = _Reader(conn_id, extras)
    if kind == "local":
        return _parse_local(reader)
    if kind == "address":
        return _parse_address(reader, host, port)
    if kind == "slurm":
        return _parse_slurm(reader)
    return _parse_kubernetes(reader)


def _parse_local(r: _Reader) -> LocalClusterConfig:
    _check_keys(r, "local", {"n_workers", "threads_per_worker", "memory_limit", "processes", "adaptive",
                             "dashboard_address", "no_workers_timeout"})
    return LocalClusterConfig(
        n_workers=r.integer("n_workers", 2, 1, 256),
        threads_per_worker=r.integer("threads_per_worker", 1, 1, 256),
        memory_limit=r.memory("memory_limit", "2GiB"),
        processes=r.boolean("processes", True),
        adaptive=r.adaptive(),
        dashboard_address=r.dashboard(),
        no_workers_timeout=r.optional_number("no_workers_timeout", 300.0, 1, 7 * 86400),
    )


def _parse_address(r: _Reader, host: str | None, port: int | None) -> AddressClusterConfig:
    if "adaptive" in r.extras:
        raise r.fail("extra 'adaptive' does not apply to cluster 'address': the hook did not start that scheduler "
                     "and cannot add or remove its workers; call cluster.adapt() where the cluster is started, or use "
                     "cluster 'local', 'slurm' or 'kubernetes'")
    _check_keys(r, "address", {"address", "timeout"})
    address = r.extras.get("address") or (f"{host}:{port or 8786}" if host else None)
    if not address:
        raise r.fail("cluster 'address' needs the extra 'address' (e.g. 'tcp://scheduler:8786') or a host")
    match = _ADDRESS_RE.fullmatch(str(address))
    if not match or not 0 < int(match.group(3)) < 65536:
        raise r.fail(f"address {address!r} is not a scheduler address; use 'tcp://host:8786' or 'tls://host:8786'")
    scheme = match.group(1) or "tcp"
    return AddressClusterConfig(
        address=f"{scheme}://{match.group(2)}:{match.group(3)}", timeout=r.number("timeout", 30.0, 1, 3600)
    )


def _parse_slurm(r: _Reader) -> SlurmClusterConfig:
    allowed = {f.name for f in dataclasses.fields(SlurmClusterConfig)}
    _check_keys(r, "slurm", allowed)
    path = "an absolute path of letters, digits and _./+@- (no spaces, '..' or shell characters)"
    directives = r.extras.get("job_extra_directives") or []
    if isinstance(directives, str) or not isinstance(directives, (list, tuple)):
        raise r.fail(f"extra 'job_extra_directives' must be a list of strings, got {directives!r}")
    slurm_conn_id = r.extras.get("slurm_conn_id")
    if slurm_conn_id is not None and (not isinstance(slurm_conn_id, str) or not NAME_RE.fullmatch(slurm_conn_id)):
        raise r.fail(f"extra 'slurm_conn_id' = {slurm_conn_id!r} is not a connection id")
    jobs = r.integer("jobs", 2, 1, 1000)
    processes = r.integer("processes", 1, 1, 256)
    adaptive = r.adaptive()
    return SlurmClusterConfig(
        slurm_conn_id=slurm_conn_id,
        cores=r.integer("cores", 1, 1, 1024),
        processes=processes,
        memory=r.memory("memory", "1GiB"),
        walltime=r.walltime("walltime", "00:30:00"),
        jobs=jobs,
        queue=r.pattern("queue", None, NAME_RE, "a partition name of letters, digits and _.- only"),
        account=r.pattern("account", None, NAME_RE, "an account name of letters, digits and _.- only"),
        job_name=r.pattern("job_name", "hpcai-dask", NAME_RE, "letters, digits and _.- only") or "hpcai-dask",
        python=r.pattern("python", None, PATH_RE, path),
        job_extra_directives=tuple(check_directive(r.conn_id, i, d) for i, d in enumerate(directives)),
        log_directory=r.pattern("log_directory", None, PATH_RE, path),
        local_directory=r.pattern("local_directory", None, PATH_RE, path),
        interface=r.pattern("interface", None, _IFACE_RE, "a network interface name such as 'eth0' or 'ib0'"),
        wait_for_workers=r.integer("wait_for_workers", 1, 0, max(jobs, adaptive.maximum if adaptive else 0) * processes),
        worker_timeout=r.number("worker_timeout", 300.0, 1, 86400),
        adaptive=adaptive,
        dashboard_address=r.dashboard(),
        no_workers_timeout=r.optional_number("no_workers_timeout", None, 1, 7 * 86400),
    )


def _parse_kubernetes(r: _Reader) -> KubernetesClusterConfig:
    allowed = {f.name for f in dataclasses.fields(KubernetesClusterConfig)}
    _check_keys(r, "kubernetes", allowed)
    dns = "a DNS label: lower-case letters, digits and '-', at most 63 characters"
    resources = r.extras.get("resources") or {}
    if not isinstance(resources, Mapping) or set(resources) - {"requests", "limits"}:
        raise r.fail("extra 'resources' must look like {'requests': {'cpu': '1', 'memory': '2Gi'}, 'limits': {...}}")
    clean_resources: dict[str, dict[str, str]] = {}
    for section, values in resources.items():
        if not isinstance(values, Mapping) or set(values) - {"cpu", "memory"}:
            raise r.fail(f"extra 'resources.{section}' may only set 'cpu' and 'memory'")
        for key, quantity in values.items():
            if not _QUANTITY_RE.fullmatch(str(quantity)):
                raise r.fail(f"resources.{section}.{key} = {quantity!r} is not a Kubernetes quantity ('500m', '2Gi')")
        clean_resources[section] = {k: str(v) for k, v in values.items()}
    env = r.extras.get("env") or {}
    if not isinstance(env, Mapping) or any(not _ENVNAME_RE.fullmatch(str(k)) for k in env):
        raise r.fail("extra 'env' must map variable names (letters, digits, _) to values")
    service = r.extras.get("scheduler_service_type", "ClusterIP")
    if service not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise r.fail(f"extra 'scheduler_service_type' = {service!r}; use ClusterIP, NodePort or LoadBalancer")
    idle = r.extras.get("idle_timeout")
    n_workers = r.integer("n_workers", 2, 0, 1000)
    adaptive = r.adaptive()
    return KubernetesClusterConfig(
        name=r.pattern("name", None, DNS_LABEL_RE, dns),
        namespace=r.pattern("namespace", None, DNS_LABEL_RE, dns),
        image=r.pattern("image", "ghcr.io/dask/dask:latest", _IMAGE_RE, "an image reference such as "
                        "'ghcr.io/dask/dask:2026.8.0'") or "ghcr.io/dask/dask:latest",
        n_workers=n_workers,
        resources=clean_resources,
        env={str(k): str(v) for k, v in env.items()},
        scheduler_service_type=service,
        idle_timeout=None if idle is None else r.integer("idle_timeout", 0, 1, 7 * 86400),
        resource_timeout=r.integer("resource_timeout", 300, 1, 3600),
        wait_for_workers=r.integer("wait_for_workers", 1, 0, max(n_workers, adaptive.maximum if adaptive else 0)),
        worker_timeout=r.number("worker_timeout", 300.0, 1, 86400),
        adaptive=adaptive,
    )


def with_adaptive(cfg: ClusterConfig, adaptive: Any, *, where: str = "operator argument 'adaptive'") -> ClusterConfig:
    """``cfg`` with the operator's ``adaptive`` argument in place of the connection's.

    :param adaptive: ``None``: keep the connection's; ``False``: a fixed-size cluster; a mapping
        (or ``True``): adaptive scaling with these bounds (see :func:`parse_adaptive`).
    :raises DaskConfigurationError: invalid bounds, or adaptive scaling asked of an ``address`` cluster.
    """
    if adaptive is None:
        return cfg
    parsed = parse_adaptive(adaptive, where=where)
    if isinstance(cfg, AddressClusterConfig):
        if parsed is None:
            return cfg
        raise DaskConfigurationError(f"{where}: cluster 'address' is an existing scheduler the hook did not start; "
                                     "it cannot add or remove its workers. Use a 'local', 'slurm' or 'kubernetes' "
                                     "connection for adaptive scaling")
    return dataclasses.replace(cfg, adaptive=parsed)
