"""The Kubernetes backend: :class:`JobSpec` -> a batch/v1 Job (one node) or a Kubeflow MPIJob
(several nodes), driven through the cncf provider's hooks.

Failures come back as the same exceptions as on Slurm (through
:func:`~airflow_provider_hpcai.slurm.outcome.build_result`): the classification in
:mod:`airflow_provider_hpcai.kubernetes.classify` reports Slurm state names.
"""

from __future__ import annotations

import os
import time
from typing import Any

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends.base import JobBackend, JobRef
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.kubernetes.classify import DELETED, Observation, observe_job, observe_mpijob
from airflow_provider_hpcai.kubernetes.logs import LogCursor, log_source, new_lines
from airflow_provider_hpcai.kubernetes.manifests import (
    JOB_CONTAINER,
    KubernetesSettings,
    job_manifest,
    tag_selector,
    workload_name,
)
from airflow_provider_hpcai.kubernetes.mpijob import (
    MPI_NAME_MAX,
    MPIJOB_KIND,
    mpijob_manifest,
)
from airflow_provider_hpcai.slurm.outcome import build_result
from airflow_provider_hpcai.slurm.states import JobStatus, Phase
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["DEFAULT_CONN_ID", "KubernetesBackend", "observe"]

DEFAULT_CONN_ID = "kubernetes_default"
_TAIL_BYTES = 4096
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


def observe(kind: str, workload: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Observation:
    """Classify a workload (``None``: it was deleted)."""
    if workload is None:
        return Observation(*DELETED)
    if kind == MPIJOB_KIND:
        return observe_mpijob(workload, pods)
    return observe_job(workload, pods, JOB_CONTAINER)


class KubernetesBackend(JobBackend):
    """Runs jobs as Kubernetes Jobs, or as Kubeflow MPIJobs when they span several nodes.

    :param conn_id: the cncf ``kubernetes`` connection (default ``kubernetes_default``).
    :param hook: use this hook (tests).
    :param mpi: ``"auto"`` (MPIJob when ``nodes > 1``), ``True`` (always) or ``False`` (never).
    :param options: :class:`~airflow_provider_hpcai.kubernetes.manifests.KubernetesSettings` fields
        (``namespace``, ``image``, ``priority_class``, ``gpu_priority_class``, ``node_selector``...).
    """

    name = "kubernetes"
    can_defer = True

    def __init__(
        self, conn_id: str | None = None, *, hook: Any = None, mpi: bool | str = "auto", **options: Any
    ) -> None:
        super().__init__(conn_id or DEFAULT_CONN_ID, **options)
        if mpi not in ("auto", True, False):
            raise InvalidJobSpecError(f"mpi must be 'auto', True or False, not {mpi!r}")
        self.mpi = mpi
        self._hook = hook
        self._tails: dict[str, str] = {}

    @property
    def hook(self) -> Any:
        if self._hook is None:
            from airflow_provider_hpcai.kubernetes.hooks import KubernetesWorkloadHook

            self._hook = KubernetesWorkloadHook(conn_id=self.conn_id)
        return self._hook

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
        slurm_only = [f for f in ("partition", "account", "qos", "constraint", "reservation") if getattr(res, f)]
        slurm_only += ["exclusive"] if res.exclusive else []
        if slurm_only:
            self.hook.log.warning(
                "Ignoring %s on Kubernetes: Slurm options with no Kubernetes meaning (place pods with the "
                "operator's node_selector, tolerations and priority_class_name instead)", ", ".join(slurm_only))
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

    def _observe(self, ref: JobRef) -> tuple[Observation, bool]:
        kind, namespace = ref.extra.get("kind", "Job"), ref.extra.get("namespace", "default")
        workload = self.hook.read_workload(kind, ref.job_id, namespace)
        pods = self.hook.list_workload_pods(ref.job_id, namespace) if workload is not None else []
        return observe(kind, workload, pods), workload is not None

    def status(self, ref: JobRef) -> JobStatus | None:
        seen, exists = self._observe(ref)
        if not exists:
            return None
        return JobStatus(ref.job_id, seen.state, seen.reason, seen.exit_code, ref.tag)

    def trigger(self, ref: JobRef, *, poll_interval: float, echo: dict[str, Any] | None = None) -> Any:
        from airflow_provider_hpcai.triggers.kubernetes import KubernetesWorkloadTrigger

        return KubernetesWorkloadTrigger(
            name=ref.job_id,
            namespace=ref.extra.get("namespace", "default"),
            kind=ref.extra.get("kind", "Job"),
            kubernetes_conn_id=self.conn_id,
            poll_interval=poll_interval,
            max_poll_interval=max(poll_interval, config.get_float("max_poll_interval")),
            outage_budget=config.get_float("outage_budget"),
            stream_logs=config.get_bool("stream_logs"),
            echo=echo,
        )

    def wait(self, ref: JobRef, *, poll_interval: float, log: Any) -> JobStatus:
        """Poll with backoff, copying the job's log into ``log`` as it grows."""
        interval, last = poll_interval, None
        cursor = LogCursor(**ref.extra.get("log_cursor", {}))
        stream = config.get_bool("stream_logs")
        while True:
            status = self.status(ref) or JobStatus(ref.job_id, DELETED[0], DELETED[1])
            if (status.state, status.reason) != last:
                log.info(
                    "Kubernetes %s %s is %s%s",
                    ref.extra.get("kind", "Job"),
                    ref.job_id,
                    status.state,
                    f" ({status.reason})" if status.reason else "",
                )
                last, interval = (status.state, status.reason), poll_interval
            if stream:
                self._copy_logs(ref, cursor, log, final=False)
                ref.extra["log_cursor"] = cursor.to_dict()
            if status.phase is not Phase.ACTIVE:
                return status
            time.sleep(interval)
            interval = min(interval * 1.5, max(poll_interval, config.get_float("max_poll_interval")))

    def _read_log(self, ref: JobRef) -> tuple[str | None, bytes]:
        """``(pod, its whole log)`` of the pod that shows the workload's output (``None``: no pod yet)."""
        namespace = ref.extra.get("namespace", "default")
        where = log_source(ref.extra.get("kind", "Job"), self.hook.list_workload_pods(ref.job_id, namespace))
        if where is None:
            return None, b""
        return where[0], self.hook.read_pod_log(where[0], where[1], namespace)

    def _copy_logs(self, ref: JobRef, cursor: LogCursor, log: Any, *, final: bool) -> bytes:
        """Copy what the log gained since ``cursor`` into ``log``; return the whole log."""
        try:
            pod, data = self._read_log(ref)
        except Exception as err:  # logs are a convenience: never fail the job for them
            log.warning("Could not read the log of %s: %s", ref.job_id, err)
            return b""
        if pod is None:
            return b""
        for line in new_lines(cursor, pod, data, final=final):
            log.info("[%s] %s", ref.job_id, line)
        return data

    def result(
        self,
        ref: JobRef,
        *,
        state: str,
        exit_code: int | None,
        requested: dict[str, Any],
        offsets: dict[str, int] | None,
        log: Any,
    ) -> dict[str, Any]:
        # Deferred: the trigger's count applies to the pod that shows the output now. Blocking: wait()'s cursor.
        cursor = LogCursor(shown=offsets.get("stdout", 0)) if offsets else LogCursor(**ref.extra.get("log_cursor", {}))
        seen, exists = self._observe(ref)
        data = self._copy_logs(ref, cursor, log, final=True)
        reason = seen.reason if exists else ""
        self._tails[ref.job_id] = (reason + "\n" if reason else "") + data[-_TAIL_BYTES:].decode(
            "utf-8", "replace"
        )
        accounting: dict[str, Any] = {}
        if exists:
            accounting = {
                "state": seen.state,
                "exit_code": seen.exit_code,
                "elapsed_seconds": seen.elapsed_seconds,
                "node_list": seen.node_list,
            }
        if exists and (seen.cleanup or JobStatus(ref.job_id, seen.state).phase is Phase.ACTIVE):
            # A pod that can never start (bad image) would hold its Job open forever.
            log.warning(
                "Deleting %s %s: %s", ref.extra.get("kind", "Job"), ref.job_id, reason or "not finished"
            )
            self.cancel(ref)
        return build_result(
            ref.job_id,
            accounting=accounting,
            state=state,
            exit_code=exit_code,
            requested=requested,
            output_tail=self._tails[ref.job_id],
            extra={
                "backend": self.name,
                "tag": ref.tag,
                "namespace": ref.extra.get("namespace"),
                "kind": ref.extra.get("kind", "Job"),
                "reason": reason or None,
            },
        )

    def job_output(self, ref: JobRef, max_bytes: int = 16 * 1024 * 1024) -> str | None:
        """The pod's log (stdout and stderr are one stream on Kubernetes)."""
        try:
            return self._read_log(ref)[1][-max_bytes:].decode("utf-8", "replace")
        except Exception:
            return None

    def stderr_tail(self, ref: JobRef, max_bytes: int = _TAIL_BYTES) -> str:
        """Why it ended (when Kubernetes says) and the end of its log (stdout and stderr are one stream)."""
        if ref.job_id not in self._tails:
            try:
                seen, _ = self._observe(ref)
                data = self._read_log(ref)[1]
            except Exception:
                return ""
            self._tails[ref.job_id] = (seen.reason + "\n" if seen.reason else "") + data[-max_bytes:].decode(
                "utf-8", "replace"
            )
        return self._tails[ref.job_id][-(max_bytes + 1024) :]

    def cancel(self, ref: JobRef) -> None:
        self.hook.delete_workload(
            ref.extra.get("kind", "Job"), ref.job_id, ref.extra.get("namespace", "default")
        )

    def log_info(self, message: str, *args: Any) -> None:
        self.hook.log.info(message, *args)
