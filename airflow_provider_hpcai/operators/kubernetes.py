"""Run a stage in any container image on Kubernetes (a Job, or an MPIJob across nodes)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.operators.base import BaseJobOperator
from airflow_provider_hpcai.operators.links import KubernetesJobLink
from airflow_provider_hpcai.resources import Resources

__all__ = ["KubernetesJobStageOperator", "command_script"]


def command_script(cmds: Sequence[str]) -> str:
    """A bash script that runs ``cmds`` as one argv (every element quoted, nothing expanded).

    :param cmds: the program and its arguments, e.g. ``["python", "-m", "app", "--n", "4"]``.
    """
    if isinstance(cmds, str) or not cmds or not all(isinstance(c, str) for c in cmds):
        raise InvalidJobSpecError("cmds must be a non-empty list of strings, e.g. ['python', '-m', 'app']")
    return "exec " + shlex.join(cmds)


class KubernetesJobStageOperator(BaseJobOperator):
    """Run a script (or a command) in a container image on Kubernetes and return its result.

    One-node jobs run as a batch/v1 Job; ``job_resources`` with ``nodes > 1`` run as a Kubeflow
    ``MPIJob`` (the MPI operator must be installed). Memory and CPUs become requests and limits,
    ``gpus`` become ``nvidia.com/gpu`` limits on GPU nodes, ``time_limit`` becomes
    ``activeDeadlineSeconds``. Failures raise the provider's exceptions (``SlurmOutOfMemory`` for
    an OOMKilled container, ``SlurmJobTimeout`` past the deadline, ``SlurmJobPreempted`` when
    evicted or preempted, ``SlurmNodeFailure`` when the node is lost). A retry reattaches to a
    still-running Job of the same task instead of starting a second one.

    :param image: the container image (templated); optional with ``container=``, which names it.
    :param script: bash commands to run (templated); give this or ``cmds``.
    :param cmds: a command as an argv list (templated), run without a shell expanding it.
    :param job_resources: :class:`~airflow_provider_hpcai.resources.Resources` (or a mapping).
    :param environment: variables for the container (templated); passed as data, never through a shell.
    :param kubernetes_conn_id: the cncf ``kubernetes`` connection.
    :param namespace: where to run (templated; default: ``[hpcai] kubernetes_namespace``, else the
        connection's).
    :param node_selector: extra node labels the pods must match.
    :param tolerations: extra Kubernetes tolerations (dicts).
    :param priority_class_name: PriorityClass of the pods.
    :param service_account_name: the pods' service account.
    :param image_pull_secrets: Secret names for a private registry.
    :param mpi_implementation: ``OpenMPI``, ``Intel`` or ``MPICH`` for multi-node jobs.
    """

    template_fields: Sequence[str] = (
        "image",
        "script",
        "cmds",
        "environment",
        "job_name",
        "namespace",
        "workdir",
    )
    template_ext: Sequence[str] = (".sh", ".bash")
    template_fields_renderers: ClassVar[dict[str, str]] = {"script": "bash", "environment": "json", "cmds": "py"}
    operator_extra_links = (KubernetesJobLink(),)

    def __init__(
        self,
        *,
        image: str | None = None,
        script: str | None = None,
        cmds: Sequence[str] | None = None,
        job_resources: Resources | dict[str, Any] | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        namespace: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Mapping[str, Any]] | None = None,
        priority_class_name: str | None = None,
        service_account_name: str | None = None,
        image_pull_secrets: Sequence[str] | None = None,
        mpi_implementation: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            job_resources=job_resources, backend="kubernetes", conn_id=kubernetes_conn_id, **kwargs
        )
        if (script is None) == (cmds is None):
            raise InvalidJobSpecError(f"task {kwargs.get('task_id')}: give exactly one of script= or cmds=")
        if self.container is not None and image and image != self.container.image:
            raise InvalidJobSpecError(f"task {kwargs.get('task_id')}: image={image!r} and container= name two images; "
                                      "give the image once (container= carries mounts, workdir and env too)")
        image = image or (self.container.image if self.container is not None else None)
        if not image:
            raise InvalidJobSpecError(
                f"task {kwargs.get('task_id')}: image= (or container=) is required (e.g. 'python:3.11-slim')"
            )
        self.image = image
        self.script = script
        self.cmds = list(cmds) if cmds is not None else None
        self.kubernetes_conn_id = kubernetes_conn_id
        self.namespace = namespace
        self.node_selector = dict(node_selector or {})
        self.tolerations = [dict(t) for t in tolerations or ()]
        self.priority_class_name = priority_class_name
        self.service_account_name = service_account_name
        self.image_pull_secrets = list(image_pull_secrets or ())
        self.mpi_implementation = mpi_implementation

    def build_script(self, context: Any) -> str:
        if self.cmds is not None:
            return command_script(self.cmds)
        if not isinstance(self.script, str) or not self.script.strip():
            raise InvalidJobSpecError(f"task {self.task_id}: script is empty")
        return self.script

    def backend_options(self) -> dict[str, Any]:
        """The backend's settings from this task's arguments (``None`` means: the backend's default)."""
        options: dict[str, Any] = {
            "image": self.image,
            "namespace": self.namespace,
            "priority_class": self.priority_class_name,
            "service_account": self.service_account_name,
            "mpi_implementation": self.mpi_implementation,
        }
        if self.node_selector:
            options["node_selector"] = self.node_selector
        if self.tolerations:
            options["tolerations"] = tuple(self.tolerations)
        if self.image_pull_secrets:
            options["image_pull_secrets"] = tuple(self.image_pull_secrets)
        return options

    def get_backend(self) -> Any:
        from airflow_provider_hpcai.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(self.kubernetes_conn_id, **self.backend_options())
