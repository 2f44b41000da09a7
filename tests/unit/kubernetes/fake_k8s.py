"""A stateful fake Kubernetes API at the client seam the cncf provider's hooks talk to.

:class:`FakeCluster` keeps Jobs, MPIJobs, pods and logs as API JSON and moves each workload one
step along its planned :class:`Outcome` whenever its status is read (created -> pod pending ->
running -> final), so tests need no clocks. :func:`install` puts fake ``BatchV1Api``,
``CoreV1Api`` and ``CustomObjectsApi`` objects (sync and ``kubernetes_asyncio``) where the cncf
``KubernetesHook`` / ``AsyncKubernetesHook`` build their clients; everything above that seam
(the cncf hooks, our hooks, backend, trigger, operator) is the real code.

The JSON shapes follow what the Job controller, kubelet and MPI operator write (conditions
``Complete``/``Failed``/``FailureTarget``, ``OOMKilled`` terminations, ``Evicted`` pods,
``DisruptionTarget`` conditions, ``ErrImagePull`` waits); they are written from the Kubernetes
API reference, not recorded from a live cluster.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
from typing import Any

OUTCOMES = ("succeed", "fail", "oom", "deadline", "evicted", "preempted", "node_lost", "image_pull", "hang")
T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:40Z"  # 100 s later


@dataclasses.dataclass
class Outcome:
    """How the next created workload behaves.

    :param kind: one of :data:`OUTCOMES`.
    :param log: what the main container prints: one more line per running read, all of it once finished.
    :param exit_code: the exit code of a ``fail`` outcome.
    :param running_reads: status reads the workload stays running for.
    """

    kind: str = "succeed"
    log: str = "starting\nhello from the job\n"
    exit_code: int = 3
    running_reads: int = 1

    def __post_init__(self) -> None:
        assert self.kind in OUTCOMES, self.kind


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _not_found(asynchronous: bool, what: str) -> Exception:
    if asynchronous:
        from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException

        return AsyncApiException(status=404, reason=f"{what} not found")
    from kubernetes.client.exceptions import ApiException

    return ApiException(status=404, reason=f"{what} not found")


class _Workload:
    def __init__(self, kind: str, body: dict[str, Any], outcome: Outcome) -> None:
        self.kind, self.body, self.outcome, self.step = kind, body, outcome, 0
        self.pods: list[str] = []

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]


class FakeCluster:
    """The API server's state, and scripted progress of each workload."""

    def __init__(self) -> None:
        self.workloads: dict[tuple[str, str, str], _Workload] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], bytes] = {}
        self.planned: collections.deque[Outcome] = collections.deque()
        self.deleted: list[tuple[str, str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.crd_installed = True
        self.errors: collections.deque[Exception] = collections.deque()  # raised by the next status reads
        self.pod_errors: collections.deque[Exception] = collections.deque()  # raised by the next pod listings
        self.log_errors: list[Exception] = []  # raised by the next (asyncio) log reads
        self.log_reads = 0
        self.status_lists = 0  # batched status listings (by label selector)
        self.status_reads = 0  # reads of one workload's status

    # ---------------------------------------------------------------- scripting
    def plan(self, *outcomes: Outcome | str) -> None:
        for outcome in outcomes:
            self.planned.append(Outcome(outcome) if isinstance(outcome, str) else outcome)

    def workload(self, name: str) -> _Workload:
        return next(w for w in self.workloads.values() if w.name == name)

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body["metadata"].setdefault("creationTimestamp", f"2026-01-01T00:00:{len(self.created):02d}Z")
        body["metadata"]["uid"] = f"uid-{len(self.created)}"
        body.setdefault("status", {})
        work = _Workload(kind, body, self.planned.popleft() if self.planned else Outcome())
        self.workloads[(kind, work.namespace, work.name)] = work
        self.created.append(copy.deepcopy(body))
        self._make_pods(work)
        return copy.deepcopy(body)

    def _templates(self, work: _Workload) -> list[tuple[str, dict[str, Any]]]:
        if work.kind == "Job":
            return [(f"{work.name}-abcde", work.body["spec"]["template"])]
        specs = work.body["spec"]["mpiReplicaSpecs"]
        pods = [(f"{work.name}-launcher-xyz12", specs["Launcher"]["template"])]
        pods += [
            (f"{work.name}-worker-{i}", specs["Worker"]["template"])
            for i in range(specs["Worker"]["replicas"])
        ]
        return pods

    def _make_pods(self, work: _Workload) -> None:
        for pod_name, template in self._templates(work):
            labels = dict(template["metadata"]["labels"])
            labels["job-name" if work.kind == "Job" else "training.kubeflow.org/job-name"] = work.name
            pod = {
                "metadata": {
                    "name": pod_name,
                    "namespace": work.namespace,
                    "labels": labels,
                    "creationTimestamp": work.body["metadata"]["creationTimestamp"],
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Pending"},
            }
            self.pods[(work.namespace, pod_name)] = pod
            work.pods.append(pod_name)

    def _containers(self, pod: dict[str, Any], state: dict[str, Any], **extra: Any) -> None:
        pod["status"]["containerStatuses"] = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": "running" in state,
                "restartCount": 0,
                "state": copy.deepcopy(state),
                **extra,
            }
            for c in pod["spec"]["containers"]
        ]

    def _main_pod(self, work: _Workload) -> dict[str, Any] | None:
        return self.pods.get((work.namespace, work.pods[0])) if work.pods else None

    def advance(self, work: _Workload) -> None:
        """One step: pods scheduled and creating -> running (``running_reads`` reads) -> final."""
        work.step += 1
        out, pods = (
            work.outcome,
            [self.pods[(work.namespace, p)] for p in work.pods if (work.namespace, p) in self.pods],
        )
        if work.step == 1:
            for pod in pods:
                pod["spec"]["nodeName"] = "node-1" if pod is pods[0] else f"node-{pods.index(pod) + 1}"
                if out.kind == "image_pull":
                    self._containers(
                        pod,
                        {
                            "waiting": {
                                "reason": "ErrImagePull",
                                "message": "rpc error: code = NotFound desc = pull failed: not found",
                            }
                        },
                    )
                else:
                    self._containers(pod, {"waiting": {"reason": "ContainerCreating"}})
            return
        if out.kind == "image_pull":
            for pod in pods:
                self._containers(
                    pod, {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
                )
            return
        if work.step <= 1 + out.running_reads or out.kind == "hang":
            for pod in pods:
                pod["status"].update({"phase": "Running", "startTime": T0})
                self._containers(pod, {"running": {"startedAt": T0}})
            work.body["status"].update({"active": 1, "startTime": T0})
            first = self._main_pod(work)
            if first is not None:  # the log grows by one line per running read
                shown = out.log.splitlines(True)[: max(1, work.step - 1)]
                self.logs[(work.namespace, first["metadata"]["name"])] = "".join(shown).encode()
            return
        if work.body["status"].get("conditions"):
            return  # already final
        self._finish(work, pods)

    def _finish(self, work: _Workload, pods: list[dict[str, Any]]) -> None:
        out, status = work.outcome, work.body["status"]
        status.pop("active", None)
        main = self._main_pod(work)
        if main is not None:
            self.logs[(work.namespace, main["metadata"]["name"])] = out.log.encode()
        if out.kind == "succeed":
            for pod in pods:
                pod["status"]["phase"] = "Succeeded"
                self._containers(pod, {"terminated": {"exitCode": 0, "reason": "Completed"}})
            status.update({"succeeded": 1, "completionTime": T1})
            types = ("SuccessCriteriaMet", "Complete") if work.kind == "Job" else ("Succeeded",)
            status["conditions"] = [
                {
                    "type": t,
                    "status": "True",
                    "reason": "Completed" if work.kind == "Job" else "MPIJobSucceeded",
                }
                for t in types
            ]
            return
        code, reason, job_reason = 1, "Error", "BackoffLimitExceeded"
        victim = pods[-1] if pods else None  # for MPIJobs: a worker
        if out.kind == "fail":
            code = out.exit_code
        elif out.kind == "oom":
            code = 137
        elif out.kind == "deadline":
            job_reason = "DeadlineExceeded"
        for pod in pods:
            pod["status"]["phase"] = "Failed"
            self._containers(pod, {"terminated": {"exitCode": code, "reason": reason}})
        if victim is not None and out.kind == "oom":
            self._containers(victim, {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
        elif victim is not None and out.kind == "evicted":
            victim["status"].update({"reason": "Evicted", "message": "The node was low on resource: memory."})
        elif victim is not None and out.kind in ("preempted", "node_lost"):
            cond = (
                ("PreemptionByScheduler", "preempted by a higher-priority pod")
                if out.kind == "preempted"
                else ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
            )
            victim["status"]["conditions"] = [
                {"type": "DisruptionTarget", "status": "True", "reason": cond[0], "message": cond[1]}
            ]
        if out.kind == "deadline":  # the Job controller deletes the pods of a Job past its deadline
            for pod in work.pods:
                self.pods.pop((work.namespace, pod), None)
        status.update({"failed": 1})
        if work.kind == "Job":
            message = {"DeadlineExceeded": "Job was active longer than specified deadline"}.get(
                job_reason, "Job has reached the specified backoff limit"
            )
            status["conditions"] = [
                {"type": "FailureTarget", "status": "True", "reason": job_reason, "message": message},
                {"type": "Failed", "status": "True", "reason": job_reason, "message": message},
            ]
        else:
            mpi_reason = {"deadline": "DeadlineExceeded", "evicted": "MPIJobEvicted"}.get(
                out.kind, "MPIJobFailed"
            )
            status["conditions"] = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": mpi_reason,
                    "message": f"MPIJob {work.namespace}/{work.name} has failed",
                }
            ]
            status["completionTime"] = T1

    def read(self, kind: str, namespace: str, name: str, asynchronous: bool = False) -> dict[str, Any]:
        if self.errors:
            raise self.errors.popleft()
        self.status_reads += 1
        work = self.workloads.get((kind, namespace, name))
        if work is None:
            raise _not_found(asynchronous, f"{kind} {name}")
        self.advance(work)
        return copy.deepcopy(work.body)

    def list(self, kind: str, namespace: str, selector: str | None) -> list[dict[str, Any]]:
        """Workloads matching ``selector``. A listing without a tag term is a batched status query
        (every workload the provider manages): like a status read, it moves each one step."""
        if self.errors and "hpcai.io/tag" not in (selector or ""):
            raise self.errors.popleft()
        self.status_lists += "hpcai.io/tag" not in (selector or "")
        found = []
        for (k, ns, _), w in list(self.workloads.items()):
            if k == kind and ns == namespace and _matches(w.body["metadata"].get("labels") or {}, selector):
                if "hpcai.io/tag" not in (selector or ""):
                    self.advance(w)
                found.append(copy.deepcopy(w.body))
        return found

    def list_pods(self, namespace: str, selector: str | None) -> list[dict[str, Any]]:
        if self.pod_errors:
            raise self.pod_errors.popleft()
        return [
            copy.deepcopy(p)
            for (ns, _), p in self.pods.items()
            if ns == namespace and _matches(p["metadata"]["labels"], selector)
        ]

    def delete(self, kind: str, namespace: str, name: str, asynchronous: bool = False) -> None:
        work = self.workloads.pop((kind, namespace, name), None)
        if work is None:
            raise _not_found(asynchronous, f"{kind} {name}")
        for pod in work.pods:
            self.pods.pop((namespace, pod), None)
        self.deleted.append((kind, namespace, name))

    def log(self, namespace: str, pod: str, asynchronous: bool = False) -> bytes:
        if (namespace, pod) not in self.pods:
            raise _not_found(asynchronous, f"pod {pod}")
        return self.logs.get((namespace, pod), b"")


# -------------------------------------------------------------------- the API objects
def _model(data: Any, klass: str) -> Any:
    from kubernetes import client

    return client.ApiClient(configuration=client.Configuration())._ApiClient__deserialize(
        copy.deepcopy(data), klass
    )


class _LogResponse:
    """What ``read_namespaced_pod_log(..., _preload_content=False)`` returns: a response with ``.data``."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class FakeBatchV1Api:
    def __init__(self, cluster: FakeCluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.api_client = client.ApiClient(
            configuration=client.Configuration()
        )  # the cncf hook sanitizes with it

    def create_namespaced_job(self, namespace: str, body: Any, **_: Any) -> Any:
        assert body["metadata"]["namespace"] == namespace
        return _model(self.cluster.create("Job", json.loads(json.dumps(body))), "V1Job")

    def read_namespaced_job_status(self, name: str, namespace: str, **_: Any) -> Any:
        return _model(self.cluster.read("Job", namespace, name), "V1Job")

    read_namespaced_job = read_namespaced_job_status

    def list_namespaced_job(self, namespace: str, label_selector: str | None = None, **_: Any) -> Any:
        return _model(
            {"items": self.cluster.list("Job", namespace, label_selector), "metadata": {}}, "V1JobList"
        )

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        self.cluster.delete("Job", namespace, name)
        return {"status": "Success"}


class FakeCoreV1Api:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None, **_: Any) -> Any:
        return _model(
            {"items": self.cluster.list_pods(namespace, label_selector), "metadata": {}}, "V1PodList"
        )

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str | None = None, **_: Any
    ) -> Any:
        return _LogResponse(self.cluster.log(namespace, name))


class FakeCustomObjectsApi:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def _check(self, group: str, version: str, plural: str, asynchronous: bool = False) -> None:
        if not self.cluster.crd_installed or (group, version, plural) != (
            "kubeflow.org",
            "v2beta1",
            "mpijobs",
        ):
            raise _not_found(asynchronous, f"the resource {plural}.{group}/{version}")

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any, **_: Any
    ) -> Any:
        self._check(group, version, plural)
        assert body["metadata"]["namespace"] == namespace and body["kind"] == "MPIJob"
        return self.cluster.create("MPIJob", body)

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> Any:
        self._check(group, version, plural)
        return self.cluster.read("MPIJob", namespace, name)

    def list_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        label_selector: str | None = None,
        **_: Any,
    ) -> Any:
        self._check(group, version, plural)
        return {
            "apiVersion": f"{group}/{version}",
            "kind": "MPIJobList",
            "items": self.cluster.list("MPIJob", namespace, label_selector),
        }

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> Any:
        self._check(group, version, plural)
        self.cluster.delete("MPIJob", namespace, name)
        return {"status": "Success"}


class AsyncFakeBatchV1Api:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def list_namespaced_job(self, namespace: str, label_selector: str | None = None, **_: Any) -> Any:
        return _model(
            {"items": self.cluster.list("Job", namespace, label_selector), "metadata": {}}, "V1JobList"
        )

    async def read_namespaced_job_status(self, name: str, namespace: str, **_: Any) -> Any:
        return _model(self.cluster.read("Job", namespace, name, asynchronous=True), "V1Job")

    async def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        self.cluster.delete("Job", namespace, name, asynchronous=True)
        return {"status": "Success"}


class AsyncFakeCoreV1Api:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def list_namespaced_pod(self, namespace: str, label_selector: str | None = None, **_: Any) -> Any:
        return _model(
            {"items": self.cluster.list_pods(namespace, label_selector), "metadata": {}}, "V1PodList"
        )


    async def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str | None = None, **_: Any
    ) -> Any:
        if self.cluster.log_errors:
            raise self.cluster.log_errors.pop(0)
        self.cluster.log_reads += 1
        return _AsyncLogResponse(self.cluster.log(namespace, name, asynchronous=True))


class _AsyncLogResponse:
    """What the asyncio client returns with ``_preload_content=False``: a response to ``await .read()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data


class AsyncFakeCustomObjectsApi:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, label_selector: str | None = None, **_: Any
    ) -> Any:
        FakeCustomObjectsApi(self.cluster)._check(group, version, plural, asynchronous=True)
        return {"items": self.cluster.list("MPIJob", namespace, label_selector)}

    async def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> Any:
        FakeCustomObjectsApi(self.cluster)._check(group, version, plural, asynchronous=True)
        return self.cluster.read("MPIJob", namespace, name, asynchronous=True)

    async def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> Any:
        FakeCustomObjectsApi(self.cluster)._check(group, version, plural, asynchronous=True)
        self.cluster.delete("MPIJob", namespace, name, asynchronous=True)
        return {"status": "Success"}


def _factory(name: str, instance: Any) -> type:
    """A class standing in for a client class: constructing it returns the shared fake ``instance``.

    A class, not a lambda, because modules combine the client classes in type expressions
    (``k8s.CoreV1Api | async_k8s.CoreV1Api``) at import time.
    """
    return type(name, (), {"__new__": lambda cls, *args, **kwargs: instance})


def install(monkeypatch: Any, cluster: FakeCluster, namespace: str = "hpc") -> None:
    """Point the cncf hooks' client construction at ``cluster``; a ``kubernetes_default`` connection."""
    import kubernetes.client
    import kubernetes_asyncio.client
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook

    batch, core, custom = FakeBatchV1Api(cluster), FakeCoreV1Api(cluster), FakeCustomObjectsApi(cluster)
    monkeypatch.setattr(kubernetes.client, "BatchV1Api", _factory("BatchV1Api", batch))
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", _factory("CoreV1Api", core))
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", _factory("CustomObjectsApi", custom))
    # No kubeconfig here: the sync hook gets a plain client, the async hook skips loading one.
    monkeypatch.setattr(
        KubernetesHook,
        "get_conn",
        lambda self: kubernetes.client.ApiClient(configuration=kubernetes.client.Configuration()),
    )

    async def _no_config(self: Any) -> None:
        return None

    monkeypatch.setattr(AsyncKubernetesHook, "_load_config", _no_config)
    abatch, acore, acustom = (
        AsyncFakeBatchV1Api(cluster),
        AsyncFakeCoreV1Api(cluster),
        AsyncFakeCustomObjectsApi(cluster),
    )
    monkeypatch.setattr(kubernetes_asyncio.client, "BatchV1Api", _factory("BatchV1Api", abatch))
    monkeypatch.setattr(kubernetes_asyncio.client, "CoreV1Api", _factory("CoreV1Api", acore))
    monkeypatch.setattr(kubernetes_asyncio.client, "CustomObjectsApi", _factory("CustomObjectsApi", acustom))
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps({"conn_type": "kubernetes", "extra": {"namespace": namespace}}),
    )
