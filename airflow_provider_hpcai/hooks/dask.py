"""Airflow hook for Dask: a ``distributed.Client`` on the cluster a ``dask`` connection chooses.

The connection's extras select the cluster (see :mod:`airflow_provider_hpcai.dask.config`)::

    {"cluster": "local", "n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"}   # the default
    {"cluster": "address", "address": "tcp://scheduler:8786"}                               # never closed by us
    {"cluster": "slurm", "slurm_conn_id": "slurm_local", "jobs": 2, "queue": "debug", ...}   # dask-jobqueue
    {"cluster": "kubernetes", "image": "ghcr.io/dask/dask:2026.8.0", "namespace": "hpc"}    # dask-kubernetes

With ``adaptive`` (a connection extra, or the ``adaptive`` argument) the cluster starts at its
minimum and the library's own ``adapt()`` grows and shrinks it. Given the task's ``tag``
(:func:`airflow_provider_hpcai.spec.make_tag`, shared by every try of one task instance), Slurm
worker jobs carry it, and worker jobs an earlier, crashed try left in the queue are cancelled
before new ones are submitted.

Without a ``dask_default`` connection the hook starts a local cluster. Clusters the hook starts
are closed when :meth:`DaskHook.get_client` exits, whether the block succeeded or raised, and by
:meth:`DaskHook.close` (what an operator's ``on_kill`` calls); Slurm worker jobs still known to
the controller afterwards are cancelled by their tag. dask is imported inside methods only.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_hpcai.dask.adaptive import adapt_kwargs
from airflow_provider_hpcai.dask.builders import (
    IN_PROCESS_WORKER_MEMORY,
    check_tag,
    kubernetes_cluster_kwargs,
    local_cluster_kwargs,
    new_tag,
    slurm_cluster_kwargs,
)
from airflow_provider_hpcai.dask.config import (
    AddressClusterConfig,
    ClusterConfig,
    KubernetesClusterConfig,
    LocalClusterConfig,
    SlurmClusterConfig,
    parse_cluster_config,
    with_adaptive,
)
from airflow_provider_hpcai.dask.errors import DaskClusterError, DaskConfigurationError
from airflow_provider_hpcai.dask.jobqueue import cancel_active_jobs, job_listeners
from airflow_provider_hpcai.dask.jobqueue import slurm_cluster_class as _slurm_cluster_class
from airflow_provider_hpcai.dask.progress import format_scaling
from airflow_provider_hpcai.dask.spawn import SpawnEnviron
from airflow_provider_hpcai.dask.usage import (
    WorkerTimeline,
    format_usage,
    register,
    scheduler_plugin,
    unregister,
)

try:
    from airflow.sdk.bases.hook import BaseHook
except ImportError:  # pragma: no cover - Airflow < 3.1
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

if TYPE_CHECKING:
    from distributed import Client

    from airflow_provider_hpcai.hooks.slurm import SlurmHook

__all__ = ["DaskHook"]

#: Constructors by cluster kind; tests and embedders may pass their own to :class:`DaskHook`.
ClusterFactory = Callable[..., Any]


class DaskHook(BaseHook):
    """Start (or reach) the Dask cluster a connection describes and hand out a client.

    :param dask_conn_id: the Airflow connection (type ``dask``); without a ``dask_default``
        connection a local cluster with 2 single-threaded workers is used.
    :param extras: use these extras instead of reading a connection (tests, embedding).
    :param cluster_factories: constructors to use instead of the real cluster classes, by kind
        (``"local"``, ``"slurm"``, ``"kubernetes"``); each is called with keyword arguments.
    :param adaptive: overrides the connection's ``adaptive`` extra: ``None`` keeps it, ``False``
        fixes the size, a mapping such as ``{"minimum": 1, "maximum": 8}`` scales between the bounds.
    :param tag: the task's provider tag (``spec.make_tag``); Slurm worker jobs carry it and stale
        ones of an earlier try are cancelled first. Without it each cluster gets a fresh tag.
    """

    conn_name_attr = "dask_conn_id"
    default_conn_name = "dask_default"
    conn_type = "dask"
    hook_name = "Dask"

    def __init__(
        self,
        dask_conn_id: str = default_conn_name,
        *,
        extras: Mapping[str, Any] | None = None,
        cluster_factories: Mapping[str, ClusterFactory] | None = None,
        adaptive: Any = None,
        tag: str | None = None,
    ) -> None:
        super().__init__()
        self.dask_conn_id = dask_conn_id
        self.adaptive = adaptive
        self.tag = tag
        #: Worker jobs of an earlier try found in the queue and cancelled before this cluster started.
        self.stale_job_ids: list[str] = []
        #: Workers' join/leave times of the running (or last) cluster.
        self.timeline: WorkerTimeline | None = None
        #: The scheduler's dashboard (or its info pages) while the cluster runs; ``None`` when it has none.
        self.dashboard_link: str | None = None
        self._scheduler_address: str | None = None
        self._extras = None if extras is None else dict(extras)
        self._factories = dict(cluster_factories or {})
        self._config: ClusterConfig | None = None
        self._lock = threading.Lock()
        self._client: Any = None
        self._cluster: Any = None
        self._slurm: SlurmHook | None = None
        self._tag: str | None = None
        self._memory_settings: Any = None  # dask.config.set(...) for in-process workers, undone at close
        self._spawn_environ: SpawnEnviron | None = None  # worker processes inside a task (dask/spawn.py)
        #: Slurm job ids of the worker jobs seen while the cluster ran (for logs and tests).
        self.worker_job_ids: list[str] = []
        #: After :meth:`close`: whether the cluster shut down without error (``None``: none was started).
        self.closed_cleanly: bool | None = None
        self._own_log_directory = False
        self._plugin_tracks = False
        #: Where the Slurm worker jobs write their output (``slurm`` clusters).
        self.log_directory: str | None = None

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> ClusterConfig:
        """The connection's validated cluster configuration (read once)."""
        if self._config is not None:
            return self._config
        host = port = None
        if self._extras is not None:
            extras: Mapping[str, Any] = self._extras
        else:
            try:
                conn = self.get_connection(self.dask_conn_id)
            except Exception as err:
                if self.dask_conn_id != self.default_conn_name:
                    raise DaskConfigurationError(
                        f"no Airflow connection {self.dask_conn_id!r}: add one of type 'dask' "
                        "(extras: cluster local/address/slurm/kubernetes)"
                    ) from err
                self.log.info("No %s connection: using a local Dask cluster", self.default_conn_name)
                extras = {}
            else:
                extras = dict(conn.extra_dejson or {})
                host, port = conn.host or None, conn.port or None
        cfg = parse_cluster_config(extras, conn_id=self.dask_conn_id, host=host, port=port)
        self._config = with_adaptive(cfg, self.adaptive)
        return self._config

    def get_conn(self) -> ClusterConfig:
        """The parsed cluster configuration (Dask keeps no connection object outside :meth:`get_client`)."""
        return self.get_config()

    # ------------------------------------------------------------------ lifecycle
    @contextmanager
    def get_client(self) -> Iterator[Client]:
        """Yield a ``distributed.Client``; clusters started here are closed on leaving, also on errors.

        :raises DaskConfigurationError: the connection is invalid (nothing was started).
        :raises DaskClusterError: the scheduler was unreachable or the workers did not join in time.
        """
        if self._client is not None or self._cluster is not None:
            raise DaskClusterError("this DaskHook already has an open client: use one get_client() block at a time")
        cfg = self.get_config()
        succeeded = False
        try:
            yield self._start(cfg)
            succeeded = True
        finally:
            self.close()
            if succeeded and self.closed_cleanly and self._own_log_directory and self.log_directory:
                shutil.rmtree(self.log_directory, ignore_errors=True)  # kept when anything went wrong

    def _start(self, cfg: ClusterConfig) -> Client:
        from airflow_provider_hpcai.utils.extras import require_extra

        require_extra("dask", "distributed")
        from distributed import Client

        if isinstance(cfg, AddressClusterConfig):
            try:
                client = Client(cfg.address, timeout=cfg.timeout)
            except (OSError, TimeoutError) as err:
                raise DaskClusterError(
                    f"could not reach the Dask scheduler at {cfg.address} within {cfg.timeout:g}s ({err}): "
                    "check that it runs and that this worker can reach it"
                ) from None
            self._client = client
            self.log.info("Connected to the Dask scheduler at %s", cfg.address)
            return client
        self.timeline, self._plugin_tracks, self.dashboard_link = WorkerTimeline(), False, None
        if isinstance(cfg, LocalClusterConfig):
            if not cfg.processes:  # kept while the cluster runs: adaptive starts workers later too
                import dask

                self._memory_settings = dask.config.set(IN_PROCESS_WORKER_MEMORY)
            else:  # spawned workers must not initialise Airflow's ORM (see dask/spawn.py); also kept
                self._spawn_environ = SpawnEnviron()
                self._spawn_environ.apply()
            self._cluster = self._factory("local")(**local_cluster_kwargs(cfg))
            self._track(self._cluster)
            if cfg.adaptive:
                self._cluster.adapt(**adapt_kwargs(cfg.adaptive))
                self.log.info("Local Dask cluster: %s", cfg.adaptive.describe())
        elif isinstance(cfg, SlurmClusterConfig):
            self._start_slurm(cfg)
        else:
            self._start_kubernetes(cfg)
        self._no_workers_timeout(cfg)
        client = Client(self._cluster.scheduler_address, timeout=60)
        self._client = client
        address = self._scheduler_address = self._cluster.scheduler_address
        register(address, self.timeline, self._max_workers(cfg))
        wanted = 0 if isinstance(cfg, LocalClusterConfig) else cfg.wait_for_workers
        if cfg.adaptive:
            per_job = cfg.processes if isinstance(cfg, SlurmClusterConfig) else 1
            wanted = min(wanted, cfg.adaptive.minimum * per_job)
        if wanted:
            self._wait_for_workers(client, wanted, cfg.worker_timeout)
        self.dashboard_link = self._dashboard(cfg)
        self.log.info("Dask %s cluster ready: scheduler %s%s", cfg.kind, address,
                      f", dashboard {self.dashboard_link}" if self.dashboard_link else "")
        return client

    def _no_workers_timeout(self, cfg: ClusterConfig) -> None:
        """Give the scheduler (in this process) the connection's ``no_workers_timeout``.

        Distributed's own rule: a task left without any worker for that long is marked erred, so
        the client's ``result()`` raises instead of waiting for ever once every worker has died.
        """
        seconds = getattr(cfg, "no_workers_timeout", None)
        scheduler = getattr(self._cluster, "scheduler", None)
        if seconds is not None and scheduler is not None and hasattr(scheduler, "no_workers_timeout"):
            scheduler.no_workers_timeout = float(seconds)

    @staticmethod
    def _max_workers(cfg: ClusterConfig) -> int | None:
        adaptive = getattr(cfg, "adaptive", None)
        if adaptive is None:
            return None
        return adaptive.maximum * (cfg.processes if isinstance(cfg, SlurmClusterConfig) else 1)

    def _track(self, cluster: Any) -> None:
        """Record workers joining and leaving from inside the scheduler, where it runs in this process."""
        scheduler = getattr(cluster, "scheduler", None)
        if scheduler is not None and hasattr(scheduler, "add_plugin") and self.timeline is not None:
            plugin = scheduler_plugin(self.timeline)
            scheduler.add_plugin(plugin, name="hpcai-worker-timeline")
            for address in list(getattr(scheduler, "workers", {}) or {}):  # workers that joined before the plugin
                plugin.add_worker(scheduler, address)
            self._plugin_tracks = True

    def _dashboard(self, cfg: ClusterConfig) -> str | None:
        """The dashboard URL: bokeh's ``/status`` page, or distributed's own info pages without bokeh."""
        bind = getattr(cfg, "dashboard_address", None)
        if bind is None:
            return None
        try:
            port = int(self._cluster.scheduler_info["services"]["dashboard"])
        except Exception:  # no dashboard service: no link
            return None
        host = bind.rsplit(":", 1)[0].strip("[]")
        if host in ("", "0.0.0.0", "::"):  # every interface: the scheduler's own address
            host = self._cluster.scheduler_address.split("://")[-1].rsplit(":", 1)[0].split("/")[0].strip("[]")
        host = f"[{host}]" if ":" in host else host
        import importlib.util

        page = "/status" if importlib.util.find_spec("bokeh") is not None else "/info/main/workers.html"
        return f"http://{host}:{port}{page}"

    def scaling_text(self) -> str | None:
        """The cluster's size for the progress line: workers running, pending (not joined yet), wanted.

        Read from the cluster's own bookkeeping (no ``squeue``): dask-jobqueue's ``requested`` are
        the worker jobs submitted, ``observed`` those whose workers joined.
        """
        cluster, cfg, client = self._cluster, self._config, self._client
        if cluster is None or client is None:
            return None
        info = client.scheduler_info(n_workers=-1).get("workers") or {}
        running_names = {str(w.get("name")) for w in info.values()}
        if self.timeline is not None and not getattr(self, "_plugin_tracks", False):
            self.timeline.observe(running_names)
        self._note_job_ids()
        wanted = pending = None
        plan = getattr(cluster, "plan", None)
        if isinstance(plan, (set, frozenset)):
            wanted = len(plan)
        requested = getattr(cluster, "requested", None)
        if isinstance(requested, (set, frozenset)):
            pending = len({str(n) for n in requested} - running_names)
        adaptive = getattr(cfg, "adaptive", None)
        unit = "jobs" if isinstance(cfg, SlurmClusterConfig) else "workers"
        return format_scaling(wanted, len(running_names), pending, adaptive.describe(unit) if adaptive else "")

    def usage(self) -> dict[str, Any] | None:
        """Workers started, worker-hours and the fixed-cluster comparison of the current (or last) cluster."""
        return None if self.timeline is None else self.timeline.summary()

    def _factory(self, kind: str) -> ClusterFactory:
        if kind in self._factories:
            return self._factories[kind]
        if kind == "local":
            from distributed import LocalCluster

            return LocalCluster
        if kind == "slurm":
            return _slurm_cluster_class()
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError as err:
            raise DaskConfigurationError(
                "cluster 'kubernetes' needs dask-kubernetes on the Airflow worker (pip install dask-kubernetes) "
                "and the Dask operator installed in the Kubernetes cluster"
            ) from err
        return KubeCluster

    def _start_slurm(self, cfg: SlurmClusterConfig) -> None:
        from airflow_provider_hpcai.hooks.slurm import SlurmHook

        slurm = SlurmHook(cfg.slurm_conn_id or SlurmHook.default_conn_name)
        if slurm.transport_name != "local":
            raise DaskConfigurationError(
                f"dask connection {self.dask_conn_id!r}: dask-jobqueue submits its workers with sbatch on this "
                f"machine, but Slurm connection {cfg.slurm_conn_id!r} uses the {slurm.transport_name!r} transport. "
                "Run the task on a Slurm submit host with a 'local' Slurm connection, or start a scheduler on the "
                "cluster and use cluster 'address'"
            )
        if "slurm" not in self._factories and shutil.which("sbatch") is None:
            raise DaskConfigurationError("cluster 'slurm' needs sbatch on this machine's PATH (a Slurm submit host)")
        tag = check_tag(self.tag) if self.tag else new_tag()
        if self.tag:
            self._cancel_stale(slurm, tag)
        base = slurm.extras.get("work_dir") or tempfile.gettempdir()
        log_directory = cfg.log_directory or os.path.join(base, "hpcai-dask", tag)
        os.makedirs(log_directory, exist_ok=True)
        queue = cfg.queue or slurm.default_partition()
        kwargs = slurm_cluster_kwargs(cfg, tag=tag, python=cfg.python or sys.executable,
                                      log_directory=log_directory, queue=queue)
        self._slurm, self._tag, self.log_directory = slurm, tag, log_directory
        self._own_log_directory = not cfg.log_directory
        job_listeners[tag] = self._job_submitted
        self._cluster = self._factory("slurm")(**kwargs)
        self._track(self._cluster)
        resources = (f"{cfg.cores} core(s), {cfg.memory}, walltime {cfg.walltime}, partition {queue or 'default'}"
                     + (f", account {cfg.account}" if cfg.account else ""))
        if cfg.adaptive:
            self.log.info("Dask worker jobs on Slurm: %s; each job %s (tag %s, logs in %s)",
                          cfg.adaptive.describe("jobs"), resources, tag, log_directory)
            self._cluster.adapt(**adapt_kwargs(cfg.adaptive, jobs=True))
        else:
            self.log.info("Submitting %d Dask worker job(s) to Slurm: each %s (tag %s, logs in %s)",
                          cfg.jobs, resources, tag, log_directory)
            self._cluster.scale(jobs=cfg.jobs)
        self._note_job_ids()

    def _job_submitted(self, job_id: str) -> None:
        with self._lock:
            self.worker_job_ids = sorted(set(self.worker_job_ids) | {job_id}, key=lambda j: (len(j), j))
        if self.timeline is not None:
            self.timeline.job_ids.add(job_id)

    def _note_job_ids(self, cluster: Any = None) -> None:
        """Remember the Slurm job ids of the worker jobs now known to the cluster (they come and go)."""
        ids = self._slurm_job_ids(cluster)
        if ids:
            self.worker_job_ids = sorted(set(self.worker_job_ids) | set(ids), key=lambda j: (len(j), j))
            if self.timeline is not None:
                self.timeline.job_ids.update(ids)

    def _cancel_stale(self, slurm: SlurmHook, tag: str) -> None:
        """Cancel worker jobs that an earlier try of this task left behind (same tag), before submitting new ones.

        The earlier try's scheduler died with it, so those workers can never serve this try; left
        alone they would hold their cores until dask-jobqueue's death timeout or their walltime.
        """
        stale = cancel_active_jobs(slurm, tag)
        self.stale_job_ids = [str(j.job_id) for j in stale]
        if stale:
            self.log.warning("Cancelled %d Dask worker job(s) an earlier try of this task left in the queue "
                             "(tag %s): %s", len(stale), tag,
                             ", ".join(f"{j.job_id} ({j.state})" for j in stale))

    def _slurm_job_ids(self, cluster: Any = None) -> list[str]:
        jobs = getattr(cluster if cluster is not None else self._cluster, "workers", {}) or {}
        return sorted(str(job.job_id) for job in list(jobs.values()) if getattr(job, "job_id", None))

    def _start_kubernetes(self, cfg: KubernetesClusterConfig) -> None:
        from airflow_provider_hpcai import config

        name = cfg.name or f"hpcai-dask-{secrets.token_hex(4)}"
        namespace = cfg.namespace or config.get("kubernetes_namespace") or None
        kwargs = kubernetes_cluster_kwargs(cfg, name=name, namespace=namespace)
        self.log.info("Creating DaskCluster %s in namespace %s with %d worker(s)", name, namespace or "(current)",
                      cfg.n_workers)
        self._cluster = self._factory("kubernetes")(**kwargs)
        if cfg.adaptive:
            # dask-kubernetes' KubeCluster.adapt creates a DaskAutoscaler resource; the Dask operator then
            # scales the worker group between the bounds from the scheduler's own adaptive target.
            self._cluster.adapt(minimum=cfg.adaptive.minimum, maximum=cfg.adaptive.maximum)
            self.log.info("DaskCluster %s: %s", name, cfg.adaptive.describe())

    def _wait_for_workers(self, client: Client, wanted: int, timeout: float) -> None:
        try:
            client.wait_for_workers(wanted, timeout=timeout)
        except (TimeoutError, OSError):
            raise DaskClusterError(self._diagnose(client, wanted, timeout)) from None
        self.worker_job_ids = sorted(set(self.worker_job_ids) | set(self._slurm_job_ids()))

    def _diagnose(self, client: Client, wanted: int, timeout: float) -> str:
        try:
            have = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception:  # only for the message
            have = 0
        lines = [f"only {have} of {wanted} Dask worker(s) joined within {timeout:g}s"]
        if self._slurm is not None and self._tag is not None:
            try:
                jobs = self._slurm.find_jobs_by_tag(self._tag)
                lines.append("Slurm worker jobs: " + (", ".join(
                    f"{j.job_id} {j.state}" + (f" ({j.reason})" if j.reason else "") for j in jobs) or "none left"))
            except Exception as err:  # only for the message
                lines.append(f"(could not list the worker jobs: {err})")
            for path in sorted(glob.glob(os.path.join(self.log_directory or "/nonexistent", "*.err")))[-2:]:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-1500:].strip()
                if tail:
                    lines.append(f"--- end of {path} ---\n{tail}")
            lines.append("Check the partition's free resources (squeue, sinfo), walltime and the worker logs; "
                         "raise worker_timeout if the queue is just slow.")
        return "\n".join(lines)

    def close(self) -> None:
        """Close the client and any cluster this hook started; cancel leftover Slurm worker jobs.

        Safe to call more than once and from another thread or a signal handler (``on_kill``).
        """
        with self._lock:
            client, cluster, slurm, tag = self._client, self._cluster, self._slurm, self._tag
            self._client = self._cluster = self._slurm = self._tag = None
            address, self._scheduler_address = self._scheduler_address, None
        if cluster is not None:
            self._note_job_ids(cluster)
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception as err:  # closing must go on; the error is logged
                self.log.warning("Closing the Dask client failed: %s", err)
        if cluster is not None:
            jobs = list((getattr(cluster, "workers", {}) or {}).values())
            seen = {str(j.job_id) for j in jobs if getattr(j, "job_id", None)}
            self.worker_job_ids = sorted(set(self.worker_job_ids) | seen, key=lambda j: (len(j), j))
            try:
                cluster.close(timeout=60)
                self.closed_cleanly = True
                self.log.info("Closed the Dask cluster")
            except Exception as err:  # closing must go on; the error is logged
                self.closed_cleanly = False
                self.log.warning("Closing the Dask cluster failed: %r", err)
        if slurm is not None and tag is not None:
            self._cancel_leftovers(slurm, tag)
            job_listeners.pop(tag, None)
        settings, self._memory_settings = self._memory_settings, None
        if settings is not None:
            settings.__exit__(None, None, None)
        environ, self._spawn_environ = self._spawn_environ, None
        if environ is not None:
            environ.restore()
        unregister(address)
        if cluster is not None and self.timeline is not None:
            self.timeline.close()
            self.log.info("%s", format_usage(self.timeline.summary()))

    def _cancel_leftovers(self, slurm: SlurmHook, tag: str) -> None:
        try:
            for job in cancel_active_jobs(slurm, tag):
                self.log.warning("Cancelled leftover Dask worker job %s (%s)", job.job_id, job.state)
        except Exception as err:  # the sweep is best effort; logged
            self.log.warning("Could not check for leftover Dask worker jobs with tag %s: %s", tag, err)

    # ------------------------------------------------------------------ UI
    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: validates the extras; for ``address`` also reaches the scheduler."""
        try:
            cfg = self.get_config()
            if isinstance(cfg, AddressClusterConfig):
                with self.get_client() as client:
                    workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
                return True, f"Reached {cfg.address}: {workers} worker(s)"
            if isinstance(cfg, SlurmClusterConfig) and shutil.which("sbatch") is None:
                return False, "valid, but sbatch is not on this machine's PATH"
            return True, f"Valid {cfg.kind} cluster configuration (started only when a task runs)"
        except Exception as err:  # the UI shows the reason
            return False, str(err)
