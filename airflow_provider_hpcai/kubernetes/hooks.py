"""Workload hooks: the cncf provider's :class:`KubernetesHook` / :class:`AsyncKubernetesHook` plus
the few calls a backend needs for Jobs and Kubeflow MPIJobs, with the same names in both.

Every call goes through the cncf hooks' clients (``batch_v1_client``, ``core_v1_client``,
``custom_object_client``, ``create_job``, ``create_custom_object``, ``get_job_status``, ``get_pod_logs``,
``get_conn``), so connection handling (kubeconfig, in-cluster, contexts) and API retries are theirs.
Objects come back as API JSON dicts (camelCase), the input of
:mod:`~airflow_provider_hpcai.kubernetes.classify`.
This module imports the Kubernetes clients: import it only where a task runs.
"""

from __future__ import annotations

import functools
from typing import Any

from airflow_provider_hpcai.utils.extras import missing_extra

try:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
    from kubernetes import client as k8s
    from kubernetes_asyncio import client as async_k8s
except ImportError as _err:  # a Slurm-only site installs no Kubernetes client
    raise missing_extra("kubernetes", _err) from _err

from airflow_provider_hpcai.kubernetes.manifests import job_selector
from airflow_provider_hpcai.kubernetes.mpijob import MPIJOB_GROUP, MPIJOB_KIND, MPIJOB_PLURAL, MPIJOB_VERSION

__all__ = ["KINDS", "AsyncKubernetesWorkloadHook", "KubernetesWorkloadHook", "to_json"]

KINDS = ("Job", MPIJOB_KIND)


@functools.lru_cache(maxsize=1)
def _serializer() -> k8s.ApiClient:
    return k8s.ApiClient(configuration=k8s.Configuration())


def to_json(obj: Any) -> Any:
    """An API object (sync or asyncio client model, or already a dict) as API JSON."""
    if obj is None or isinstance(obj, (dict, list, str, int, float, bool)):
        return obj
    return _serializer().sanitize_for_serialization(obj)


def _status(err: BaseException) -> int | None:
    return getattr(err, "status", None)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown workload kind {kind!r}; expected one of {KINDS}")
    return kind


class KubernetesWorkloadHook(KubernetesHook):
    """Create, read, list, log and delete Jobs and MPIJobs through the cncf hook's clients."""

    hook_name = "Kubernetes workloads (hpcai)"

    def create_workload(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Job or MPIJob from its manifest; return what the API server stored."""
        kind = _check_kind(manifest["kind"])
        namespace = manifest["metadata"]["namespace"]
        if kind == "Job":
            model = _serializer()._ApiClient__deserialize(manifest, "V1Job")  # the cncf hook takes a V1Job
            return to_json(self.create_job(model))
        return to_json(
            self.create_custom_object(MPIJOB_GROUP, MPIJOB_VERSION, MPIJOB_PLURAL, manifest, namespace)
        )

    def read_workload(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The workload with its status, or ``None`` when it no longer exists."""
        try:
            if _check_kind(kind) == "Job":
                return to_json(self.get_job_status(job_name=name, namespace=namespace))
            return to_json(
                self.get_custom_object(MPIJOB_GROUP, MPIJOB_VERSION, MPIJOB_PLURAL, name, namespace)
            )
        except k8s.ApiException as err:
            if _status(err) == 404:
                return None
            raise

    def list_workloads(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Workloads of ``kind`` matching ``label_selector`` (no MPIJobs where the CRD is absent)."""
        try:
            if _check_kind(kind) == "Job":
                found = self.batch_v1_client.list_namespaced_job(
                    namespace=namespace, label_selector=label_selector
                )
                return list(to_json(found).get("items") or [])
            found = self.custom_object_client.list_namespaced_custom_object(
                MPIJOB_GROUP, MPIJOB_VERSION, namespace, MPIJOB_PLURAL, label_selector=label_selector
            )
            return list(to_json(found).get("items") or [])
        except k8s.ApiException as err:
            if kind == MPIJOB_KIND and _status(err) == 404:  # the MPI operator is not installed
                return []
            raise

    def list_workload_pods(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The pods of workload ``name`` (selected by the label the manifests put on them)."""
        return self.list_pods(namespace, job_selector(name))

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The pods in ``namespace`` matching ``label_selector`` (one call for many workloads)."""
        found = self.core_v1_client.list_namespaced_pod(namespace=namespace, label_selector=label_selector)
        return list(to_json(found).get("items") or [])

    def read_pod_log(self, pod: str, container: str, namespace: str) -> bytes:
        """The whole log of one container (empty when the pod is gone or has not started)."""
        try:
            response = self.get_pod_logs(pod, container=container, namespace=namespace)
        except k8s.ApiException as err:
            if _status(err) in (400, 404):  # 400: the container is still waiting to start
                return b""
            raise
        data = getattr(response, "data", response)
        return data.encode() if isinstance(data, str) else bytes(data or b"")

    def delete_workload(self, kind: str, name: str, namespace: str) -> bool:
        """Delete the workload and (in the background) its pods; ``False`` if it was already gone."""
        try:
            if _check_kind(kind) == "Job":
                self.batch_v1_client.delete_namespaced_job(
                    name=name, namespace=namespace, propagation_policy="Background"
                )
            else:
                self.delete_custom_object(
                    MPIJOB_GROUP,
                    MPIJOB_VERSION,
                    MPIJOB_PLURAL,
                    name,
                    namespace,
                    propagation_policy="Background",
                )
        except k8s.ApiException as err:
            if _status(err) == 404:
                return False
            raise
        return True


class AsyncKubernetesWorkloadHook(AsyncKubernetesHook):
    """The triggerer's side: the same method names, awaited."""

    async def read_workload(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            if _check_kind(kind) == "Job":
                return to_json(await self.get_job_status(name=name, namespace=namespace))
            async with self.get_conn() as api:
                found = await async_k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                    MPIJOB_GROUP, MPIJOB_VERSION, namespace, MPIJOB_PLURAL, name
                )
            return to_json(found)
        except async_k8s.ApiException as err:
            if _status(err) == 404:
                return None
            raise

    async def list_workload_pods(self, name: str, namespace: str) -> list[dict[str, Any]]:
        return await self.list_pods(namespace, job_selector(name))

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        async with self.get_conn() as api:
            found = await async_k8s.CoreV1Api(api).list_namespaced_pod(
                namespace=namespace, label_selector=label_selector
            )
        return list(to_json(found).get("items") or [])

    async def list_workloads(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Workloads of ``kind`` matching ``label_selector`` (no MPIJobs where the CRD is absent)."""
        try:
            async with self.get_conn() as api:
                if _check_kind(kind) == "Job":
                    found = await async_k8s.BatchV1Api(api).list_namespaced_job(
                        namespace=namespace, label_selector=label_selector
                    )
                else:
                    found = await async_k8s.CustomObjectsApi(api).list_namespaced_custom_object(
                        MPIJOB_GROUP, MPIJOB_VERSION, namespace, MPIJOB_PLURAL, label_selector=label_selector
                    )
            return list(to_json(found).get("items") or [])
        except async_k8s.ApiException as err:
            if kind == MPIJOB_KIND and _status(err) == 404:
                return []
            raise

    async def read_pod_log(self, pod: str, container: str, namespace: str) -> bytes:
        """The whole log of one container as raw bytes (empty when the pod is gone or not started)."""
        try:
            async with self.get_conn() as api:
                response = await async_k8s.CoreV1Api(api).read_namespaced_pod_log(
                    name=pod, namespace=namespace, container=container, _preload_content=False
                )
                return bytes(await response.read())  # raw: the pod may print anything, UTF-8 or not
        except async_k8s.ApiException as err:
            if _status(err) in (400, 404):  # 400: the container is still waiting to start
                return b""
            raise

    async def delete_workload(self, kind: str, name: str, namespace: str) -> bool:
        try:
            async with self.get_conn() as api:
                if _check_kind(kind) == "Job":
                    await async_k8s.BatchV1Api(api).delete_namespaced_job(
                        name=name, namespace=namespace, propagation_policy="Background"
                    )
                else:
                    await async_k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
                        MPIJOB_GROUP,
                        MPIJOB_VERSION,
                        namespace,
                        MPIJOB_PLURAL,
                        name,
                        propagation_policy="Background",
                    )
        except async_k8s.ApiException as err:
            if _status(err) == 404:
                return False
            raise
        return True
