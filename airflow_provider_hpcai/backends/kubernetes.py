"""The Kubernetes backend: :class:`JobSpec` -> a batch/v1 Job (one node) or a Kubeflow MPIJob
(several nodes), driven through the cncf provider's hooks.

Kubernetes' words are translated into the shared job states by
:mod:`airflow_provider_hpcai.kubernetes.classify` (``OOMKilled`` -> ``OUT_OF_MEMORY``...), so the
same classifier raises the same neutral exceptions (``JobOutOfMemory``...) as on every backend.
Status queries are batched: the waits of one triggerer cost one listing of workloads and one of
pods per namespace and interval, by the label every managed workload carries.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends.base import JobBackend, JobRef
from airflow_provider_hpcai.exceptions import InvalidJobSpecError, TransportError
from airflow_provider_hpcai.jobs.output import OutputRestarted
from airflow_provider_hpcai.jobs.states import JobStatus, Phase
from airflow_provider_hpcai.kubernetes.classify import DELETED, Observation, observe_job, observe_mpijob
from airflow_provider_hpcai.kubernetes.logs import log_source
from airflow_provider_hpcai.kubernetes.manifests import (
    JOB_CONTAINER,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    KubernetesSettings,
    job_manifest,
    tag_selector,
    workload_name,
)
from airflow_provider_hpcai.kubernetes.mpijob import (
    LAUNCHER_CONTAINER,
    MPI_NAME_MAX,
    MPIJOB_KIND,
    mpijob_manifest,
)
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["DEFAULT_CONN_ID", "KubernetesBackend", "observe"]

DEFAULT_CONN_ID = "kubernetes_default"
_TAIL_BYTES = 4096
#: Statuses of API errors worth waiting out (the API server restarting, throttling).
_TRANSIENT = {408, 429, 500, 502, 503, 504}
#: Every workload (and pod) this provider created.
_MANAGED = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
#: ``[hpcai]`` options this backend reads when they are declared (else ``AIRFLOW__HPCAI__<KEY>``).
_SETTING_KEYS = {
    "namespace": "kubernetes_namespace",
    "image": "kubernetes_image",
    "gpu_priority_class": "kubernetes_gpu_priority_class",
}


def _setting(key: str) -> str | None:
    try:
        return config.get(key)
    except KeyError:  # not declared in [hpcai]: still honour the environment variable
        return os.environ.get(f"AIRFLOW__HPCAI__{key.upper()}") or None


def _api_error(err: Exception, what: str) -> Exception:
    """A transient API error as a retryable :class:`TransportError` (the poller waits it out)."""
    status = getattr(err, "status", None)
    if status in _TRANSIENT or isinstance(err, (OSError, TimeoutError)):
        return TransportError(f"the Kubernetes API failed to {what}: {err}", returncode=status, retryable=True)
    return err


def _stream_pod(stream: str) -> str | None:
    return stream.partition("@")[2] or None


def observe(kind: str, workload: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Observation:
    """Classify a workload (``None``: it was deleted)."""
    if workload is None:
        return Observation(*DELETED)
    if kind == MPIJOB_KIND:
        return observe_mpijob(workload, pods)
    return observe_job(workload, pods, JOB_CONTAINER)


class KubernetesBackend(JobBackend):
    """Runs jobs as Kubernetes Jobs, or as Kubeflow MPIJobs when they span several nodes.

    The output is the log of the pod that shows it (a Job's newest pod, an MPIJob's launcher):
    one stream per pod, ``stdout@<pod>``, so a retried pod's log starts a new count.

    :param conn_id: the cncf ``kubernetes`` connection (default ``kubernetes_default``).
    :param hook: use this hook (tests).
    :param mpi: ``"auto"`` (MPIJob when ``nodes > 1``), ``True`` (always) or ``False`` (never).
    :param options: :class:`~airflow_provider_hpcai.kubernetes.manifests.KubernetesSettings` fields
        (``namespace``, ``image``, ``priority_class``, ``gpu_priority_class``, ``node_selector``...).
    """

    name = "kubernetes"
    can_defer = True
    default_python = "python3"  # the image's interpreter, not the worker's
    streams = ("stdout",)
    reads_files = False  # the pods' files are not reachable from the worker: the summary travels in the log
    ignores = ("partition", "account", "qos", "constraint", "reservation", "exclusive")

    def __init__(
        self, conn_id: str | None = None, *, hook: Any = None, mpi: bool | str = "auto", **options: Any
    ) -> None:
        super().__init__(conn_id or DEFAULT_CONN_ID, **options)
        if mpi not in ("auto", True, False):
            raise InvalidJobSpecError(f"mpi must be 'auto', True or False, not {mpi!r}")
        self.mpi = mpi
        self._hook = hook
        self._async_hook: Any = None
        self._seen: dict[str, tuple[Observation, bool]] = {}
        self._tails: dict[str, str] = {}

    @property
    def hook(self) -> Any:
        if self._hook is None:
            from airflow_provider_hpcai.kubernetes.hooks import KubernetesWorkloadHook

            self._hook = KubernetesWorkloadHook(conn_id=self.conn_id)
        return self._hook

    @property
    def async_hook(self) -> Any:
        if self._async_hook is None:
            from airflow_provider_hpcai.kubernetes.hooks import AsyncKubernetesWorkloadHook

            self._async_hook = AsyncKubernetesWorkloadHook(conn_id=self.conn_id)
        return self._async_hook

    def settings(self) -> KubernetesSettings:
        """This backend's settings: its options, then ``[hpcai] kubernetes_*``, then the connection."""
        options = dict(self.options)
        for field, key in _SETTING_KEYS.items():
            if options.get(field) is None:
                options[field] = _setting(key)
        if options.get("namespace") is None:
            options["namespace"] = self.hook.get_namespace() or "default"
        return KubernetesSettings.from_options(options)

    # ------------------------------------------------------------------ contract
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        self.check_components(spec)
        settings = self.settings()
        use_mpi = self.mpi is True or (self.mpi == "auto" and spec.resources.nodes > 1)
        if self.mpi is False and spec.resources.nodes > 1:
            raise InvalidJobSpecError(f"job {spec.name} asks for {spec.resources.nodes} nodes but mpi=False")
        if use_mpi:
            manifest = mpijob_manifest(
                spec, settings, name=workload_name(spec.name, max_len=MPI_NAME_MAX), workdir=workdir
            )
        else:
            manifest = job_manifest(spec, settings, name=workload_name(spec.name), workdir=workdir)
        res = spec.resources
        ignored = [f for f in self.ignores if getattr(res, f, None)]
        if ignored:
            self.hook.log.warning(
                "Ignoring %s on Kubernetes: Slurm options with no Kubernetes meaning (place pods with the "
                "operator's node_selector, tolerations and priority_class_name instead)", ", ".join(ignored))
        created = self.hook.create_workload(manifest)
        name = (created.get("metadata") or {}).get("name") or manifest["metadata"]["name"]
        self.log_info("Created %s %s/%s", manifest["kind"], settings.namespace, name)
        return self._ref(name, manifest["kind"], settings.namespace, spec.tag)

    def _ref(self, name: str, kind: str, namespace: str, tag: str | None) -> JobRef:
        return JobRef(
            self.name, name, tag, None, None, {"namespace": namespace, "kind": kind, "conn_id": self.conn_id}
        )

    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        namespace = self.settings().namespace
        candidates: list[tuple[str, str, dict[str, Any]]] = []
        for kind in ("Job", MPIJOB_KIND):
            for item in self.hook.list_workloads(kind, namespace, tag_selector(tag)):
                candidates.append((str(item["metadata"].get("creationTimestamp") or ""), kind, item))
        for _, kind, item in sorted(candidates, key=lambda c: c[0], reverse=True):
            name = item["metadata"]["name"]
            seen = observe(kind, item, self.hook.list_workload_pods(name, namespace))
            if JobStatus(name, seen.state).phase is Phase.ACTIVE:
                return self._ref(name, kind, namespace, tag)
        return None

    @staticmethod
    def _where(ref: JobRef) -> tuple[str, str]:
        return ref.extra.get("kind", "Job"), ref.extra.get("namespace", "default")

    def _status_of(self, ref: JobRef, workload: dict[str, Any] | None, pods: list[dict[str, Any]]) -> JobStatus | None:
        seen = observe(self._where(ref)[0], workload, pods)
        self._seen[ref.job_id] = (seen, workload is not None)
        if workload is None:
            return None
        return JobStatus(ref.job_id, seen.state, seen.reason, seen.exit_code, ref.tag)

    def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        if len(refs) == 1:  # one workload: read it (the same two calls a listing would cost)
            (ref,) = refs
            kind, namespace = self._where(ref)
            workload = self.hook.read_workload(kind, ref.job_id, namespace)
            pods = self.hook.list_workload_pods(ref.job_id, namespace) if workload is not None else []
            return {ref.job_id: self._status_of(ref, workload, pods)}
        found: dict[str, JobStatus | None] = {}
        for namespace, group in _by_namespace(refs).items():
            workloads = {(k, w["metadata"]["name"]): w for k in sorted({self._where(r)[0] for r in group})
                         for w in self.hook.list_workloads(k, namespace, _MANAGED)}
            pods = _pods_by_workload(self.hook.list_pods(namespace, _MANAGED))
            for ref in group:
                found[ref.job_id] = self._status_of(ref, workloads.get((self._where(ref)[0], ref.job_id)),
                                                    pods.get(ref.job_id, []))
        return found

    async def astatuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        hook = self.async_hook
        found: dict[str, JobStatus | None] = {}
        try:
            if len(refs) == 1:
                (ref,) = refs
                kind, namespace = self._where(ref)
                workload = await hook.read_workload(kind, ref.job_id, namespace)
                pods = await hook.list_workload_pods(ref.job_id, namespace) if workload is not None else []
                return {ref.job_id: self._status_of(ref, workload, pods)}
            for namespace, group in _by_namespace(refs).items():
                workloads = {}
                for kind in sorted({self._where(r)[0] for r in group}):
                    for item in await hook.list_workloads(kind, namespace, _MANAGED):
                        workloads[(kind, item["metadata"]["name"])] = item
                pods = _pods_by_workload(await hook.list_pods(namespace, _MANAGED))
                for ref in group:
                    found[ref.job_id] = self._status_of(ref, workloads.get((self._where(ref)[0], ref.job_id)),
                                                        pods.get(ref.job_id, []))
        except Exception as err:
            raise _api_error(err, "report the workloads' status") from err
        return found

    def vanished(self, ref: JobRef) -> JobStatus | None:
        """A workload that disappears while a task waits on it was deleted (kubectl delete)."""
        return JobStatus(ref.job_id, DELETED[0], DELETED[1], tag=ref.tag)

    def describe(self, ref: JobRef) -> str:
        return f"Kubernetes {ref.extra.get('kind', 'Job')} {ref.job_id}"

    def output_label(self, ref: JobRef, stream: str) -> str:
        return ref.job_id

    def output_streams(self, ref: JobRef) -> Sequence[str]:
        kind, namespace = self._where(ref)
        where = log_source(kind, self.hook.list_workload_pods(ref.job_id, namespace))
        return [f"stdout@{where[0]}"] if where else []

    async def aoutput_streams(self, ref: JobRef) -> Sequence[str]:
        kind, namespace = self._where(ref)
        where = log_source(kind, await self.async_hook.list_workload_pods(ref.job_id, namespace))
        return [f"stdout@{where[0]}"] if where else []

    def _container(self, ref: JobRef, pod: str) -> str:
        """The container whose log is the output (log_source picks an MPIJob's launcher pod)."""
        return LAUNCHER_CONTAINER if self._where(ref)[0] == MPIJOB_KIND else JOB_CONTAINER

    def read_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        pod = _stream_pod(stream) or next(iter(_stream_pod(s) for s in self.output_streams(ref)), None)
        if pod is None:
            return b""
        data = self.hook.read_pod_log(pod, self._container(ref, pod), self._where(ref)[1])
        return _slice(data, offset, limit)

    async def aread_output(self, ref: JobRef, stream: str, offset: int, limit: int) -> bytes:
        pod = _stream_pod(stream) or next(iter(_stream_pod(s) for s in await self.aoutput_streams(ref)), None)
        if pod is None:
            return b""
        data = await self.async_hook.read_pod_log(pod, self._container(ref, pod), self._where(ref)[1])
        return _slice(data, offset, limit)

    def stream_while_waiting(self, *, deferred: bool) -> bool:
        return config.get_bool("stream_logs")

    def accounting(self, ref: JobRef, status: JobStatus) -> dict[str, Any]:
        kind, namespace = self._where(ref)
        workload = self.hook.read_workload(kind, ref.job_id, namespace)
        pods = self.hook.list_workload_pods(ref.job_id, namespace) if workload is not None else []
        self._status_of(ref, workload, pods)
        seen, exists = self._seen[ref.job_id]
        if not exists:
            return {}
        return {"state": seen.state, "exit_code": seen.exit_code, "elapsed_seconds": seen.elapsed_seconds,
                "node_list": seen.node_list}

    def error_tail(self, ref: JobRef, max_bytes: int = _TAIL_BYTES) -> str:
        """Why it ended (when Kubernetes says) and the end of its log (stdout and stderr are one stream)."""
        if ref.job_id in self._tails:  # the workload may be deleted since: keep what was read
            return self._tails[ref.job_id][-(max_bytes + 1024):]
        if ref.job_id not in self._seen:
            try:
                self.status(ref)
            except Exception:
                return ""
        seen, _ = self._seen[ref.job_id]
        tail = (seen.reason + "\n" if seen.reason else "") + super().error_tail(ref, max_bytes)
        if JobStatus(ref.job_id, seen.state).phase is not Phase.ACTIVE:
            self._tails[ref.job_id] = tail
        return tail

    def result_extra(self, ref: JobRef) -> dict[str, Any]:
        seen, exists = self._seen.get(ref.job_id, (None, False))
        return {"backend": self.name, "tag": ref.tag, "namespace": ref.extra.get("namespace"),
                "kind": ref.extra.get("kind", "Job"), "reason": (seen.reason if exists and seen else "") or None}

    def finalize(self, ref: JobRef, status: JobStatus, accounting: dict[str, Any], log: Any) -> None:
        """Delete a workload that can never finish (a pod that cannot start holds its Job open forever)."""
        seen, exists = self._seen.get(ref.job_id, (None, False))
        if exists and seen is not None and (seen.cleanup or JobStatus(ref.job_id, seen.state).phase is Phase.ACTIVE):
            log.warning("Deleting %s %s: %s", ref.extra.get("kind", "Job"), ref.job_id, seen.reason or "not finished")
            self.cancel(ref)

    def cancel(self, ref: JobRef) -> None:
        kind, namespace = self._where(ref)
        self.hook.delete_workload(kind, ref.job_id, namespace)

    async def acancel(self, ref: JobRef) -> None:
        kind, namespace = self._where(ref)
        deleted = await self.async_hook.delete_workload(kind, ref.job_id, namespace)
        if not deleted:
            self.log_info("Already gone: Kubernetes %s %s", kind, ref.job_id)

    def log_info(self, message: str, *args: Any) -> None:
        self.hook.log.info(message, *args)


def _by_namespace(refs: Sequence[JobRef]) -> dict[str, list[JobRef]]:
    groups: dict[str, list[JobRef]] = defaultdict(list)
    for ref in refs:
        groups[ref.extra.get("namespace", "default")].append(ref)
    return groups


def _pods_by_workload(pods: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Pods by the workload they belong to (the :data:`LABEL_JOB` label the manifests put on them)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        owner = labels.get(LABEL_JOB) or labels.get("job-name") or labels.get("training.kubeflow.org/job-name")
        if owner:
            groups[owner].append(pod)
    return groups


def _slice(data: bytes, offset: int, limit: int) -> bytes:
    if len(data) < offset:
        raise OutputRestarted(f"the log is {len(data)} bytes, {offset} were shown")
    return data[offset: offset + limit]
