"""Run a batch script on Slurm from a DAG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.operators.base import BaseJobOperator
from airflow_provider_hpcai.operators.links import SlurmJobLink
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.script import user_directives

__all__ = ["SlurmJobOperator"]


class SlurmJobOperator(BaseJobOperator):
    """Submit a batch script to Slurm, wait without holding a worker, and return its accounting.

    The job is tagged with its task instance, so a retry after a worker crash reattaches to the
    job instead of submitting a second one. Returns (XCom) a dict with ``job_id``, ``state``,
    ``exit_code``, ``elapsed_seconds``, ``max_rss_bytes``, ``total_cpu_seconds``, ``node_list``,
    ``requested`` and the output paths (``exit_code`` as a shell reports it on every transport and
    Slurm version: ``128 + N`` when signal ``N``, also in ``signal``, ended the job); failures raise
    :class:`~airflow_provider_hpcai.exceptions.SlurmJobFailed` subclasses (out of memory,
    timeout, node failure, preemption, cancellation).

    :param script: the bash commands to run (templated). ``#SBATCH`` lines in it are ignored:
        use ``job_resources``.
    :param job_resources: :class:`~airflow_provider_hpcai.resources.Resources` (or a mapping).
    :param environment: variables exported to the job (templated); values are quoted.
    :param job_name: the Slurm job name (templated).
    :param array: a job array spec, e.g. ``"0-9%2"`` (templated).
    :param slurm_conn_id: the Slurm connection.
    :param deferrable: wait in the triggerer (default: ``[hpcai] default_deferrable`` when set, else
        Airflow's ``[operators] default_deferrable``).
    :param poll_interval: seconds between (batched) status queries.
    """

    template_fields: Sequence[str] = ("script", "environment", "job_name", "array", "workdir")
    template_ext: Sequence[str] = (".sh", ".bash")
    template_fields_renderers: ClassVar[dict[str, str]] = {"script": "bash", "environment": "json"}
    operator_extra_links = (SlurmJobLink(),)

    def __init__(
        self,
        *,
        script: str,
        job_resources: Resources | dict[str, Any] | None = None,
        environment: dict[str, Any] | None = None,
        job_name: str | None = None,
        array: str | None = None,
        slurm_conn_id: str = "slurm_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(job_resources=job_resources, environment=environment, job_name=job_name,
                         backend="slurm", conn_id=slurm_conn_id, **kwargs)
        self.script = script
        self.array = array
        self.slurm_conn_id = slurm_conn_id

    def build_script(self, context: Any) -> str:
        if not isinstance(self.script, str) or not self.script.strip():
            raise InvalidJobSpecError(f"task {self.task_id}: script is empty")
        ignored = user_directives(self.script)
        if ignored:
            self.log.warning("Ignoring #SBATCH lines in the script (use job_resources instead): %s", ignored)
        return self.script
