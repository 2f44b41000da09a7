"""Constructor arguments of each Dask cluster class, from a validated :mod:`~.config` configuration.

Pure builders: no dask import, no I/O. The hook (:mod:`airflow_provider_hpcai.hooks.dask`) passes
their result to ``distributed.LocalCluster``, ``dask_jobqueue.SLURMCluster`` or
``dask_kubernetes.operator.KubeCluster``. Values that reach a Slurm batch script were checked by
:func:`~.config.parse_cluster_config`; the arguments that come from elsewhere (the tag, the
interpreter, the log folder, the partition, Kubernetes names) are checked here.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from airflow_provider_hpcai.dask.config import (
    DNS_LABEL_RE,
    NAME_RE,
    PATH_RE,
    KubernetesClusterConfig,
    LocalClusterConfig,
    SlurmClusterConfig,
)
from airflow_provider_hpcai.dask.errors import DaskConfigurationError

__all__ = [
    "IN_PROCESS_WORKER_MEMORY",
    "check_tag",
    "kubernetes_cluster_kwargs",
    "local_cluster_kwargs",
    "new_tag",
    "slurm_cluster_kwargs",
]

_TAG_RE = re.compile(r"^hpcai-[0-9a-f]{20}\Z")  # spec.make_tag and new_tag


def new_tag() -> str:
    """A fresh provider tag (``hpcai-`` + 20 hex digits), carried in the worker jobs' comment."""
    return "hpcai-" + secrets.token_hex(10)


def local_cluster_kwargs(cfg: LocalClusterConfig) -> dict[str, Any]:
    """Arguments of ``distributed.LocalCluster`` (an adaptive one starts at its minimum).

    Workers in this process (``processes: false``) also need :data:`IN_PROCESS_WORKER_MEMORY`
    set while they run (the hook does it).
    """
    kwargs: dict[str, Any] = {
        "n_workers": cfg.adaptive.minimum if cfg.adaptive else cfg.n_workers,
        "threads_per_worker": cfg.threads_per_worker,
        "memory_limit": cfg.memory_limit,
        "processes": cfg.processes,
        "dashboard_address": cfg.dashboard_address,
    }
    return kwargs


#: Dask settings for workers in this process (``processes: false``). Such a worker measures the
#: memory of the whole process (the Airflow task, or a long test run): with Dask's defaults it
#: pauses, holding its tasks for ever, once that passes 80 % of ``memory_limit``. They keep the
#: limit (adaptive scaling sizes by it) but never spill, pause or restart for memory.
IN_PROCESS_WORKER_MEMORY: dict[str, Any] = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.memory.terminate": False,
}


def check_tag(tag: Any) -> str:
    """``tag`` if it is a provider tag (``hpcai-`` and 20 hex digits: ``spec.make_tag``, :func:`new_tag`)."""
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise DaskConfigurationError(f"tag {tag!r} is not a provider tag ('hpcai-' and 20 hex digits, see spec.make_tag)")
    return tag


def slurm_cluster_kwargs(cfg: SlurmClusterConfig, *, tag: str, python: str, log_directory: str,
                         queue: str | None) -> dict[str, Any]:
    """Arguments of ``dask_jobqueue.SLURMCluster``; every value was validated by :func:`parse_cluster_config`.

    :param tag: carried as ``--comment=hpcai-tag=<tag>`` so the hook can find (and cancel) its jobs.
    :param python: the interpreter the worker jobs run (absolute path, validated here too).
    :param log_directory: where the worker jobs write their output.
    :param queue: the partition (the config's, or the Slurm connection's default).
    """
    from airflow_provider_hpcai.slurm.script import COMMENT_PREFIX

    check_tag(tag)
    for what, value in (("python", python), ("log_directory", log_directory)):
        if not PATH_RE.fullmatch(value) or "/../" in value + "/":
            raise DaskConfigurationError(f"{what} {value!r} is not an absolute path of letters, digits and _./+@-")
    if queue is not None and not NAME_RE.fullmatch(queue):
        raise DaskConfigurationError(f"partition {queue!r} is not a partition name (letters, digits and _.-)")
    kwargs: dict[str, Any] = {
        "cores": cfg.cores,
        "processes": cfg.processes,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "queue": queue,
        "account": cfg.account,
        "job_name": cfg.job_name,
        "python": python,
        "log_directory": log_directory,
        "job_extra_directives": [f"--comment={COMMENT_PREFIX}{tag}", *cfg.job_extra_directives],
        "scheduler_options": {"dashboard_address": cfg.dashboard_address,
                              **({"interface": cfg.interface} if cfg.interface else {})},
    }
    if cfg.local_directory:
        kwargs["local_directory"] = cfg.local_directory
    if cfg.interface:
        kwargs["interface"] = cfg.interface
    return kwargs


def kubernetes_cluster_kwargs(cfg: KubernetesClusterConfig, *, name: str, namespace: str | None) -> dict[str, Any]:
    """Arguments of ``dask_kubernetes.operator.KubeCluster`` (deleted again when the hook closes it).

    :param name: the DaskCluster resource name (a DNS label).
    :param namespace: where to create it (``None``: the current kube context's namespace).
    """
    for what, value in (("name", name), ("namespace", namespace)):
        if value is not None and not DNS_LABEL_RE.fullmatch(value):
            raise DaskConfigurationError(f"Kubernetes {what} {value!r} is not a DNS label (a-z, 0-9, '-')")
    env = dict(cfg.env)
    if cfg.adaptive:
        from airflow_provider_hpcai.dask.adaptive import kubernetes_adapt_env

        env.update(kubernetes_adapt_env(cfg.adaptive))
    kwargs: dict[str, Any] = {
        "name": name,
        "image": cfg.image,
        "n_workers": cfg.adaptive.minimum if cfg.adaptive else cfg.n_workers,
        "env": env,
        "scheduler_service_type": cfg.scheduler_service_type,
        "resource_timeout": cfg.resource_timeout,
        "shutdown_on_close": True,
    }
    if namespace:
        kwargs["namespace"] = namespace
    if cfg.resources:
        kwargs["resources"] = {k: dict(v) for k, v in cfg.resources.items()}
    if cfg.idle_timeout is not None:
        kwargs["idle_timeout"] = cfg.idle_timeout
    return kwargs
