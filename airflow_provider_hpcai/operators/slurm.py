"""Run a batch script on Slurm from a DAG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.operators.base import BaseJobOperator
from airflow_provider_hpcai.operators.links import SlurmJobLink
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.arrays import check_array_batch
from airflow_provider_hpcai.slurm.script import user_directives
from airflow_provider_hpcai.spec import check_components, make_tag

if TYPE_CHECKING:
    from airflow_provider_hpcai.backends.base import JobBackend, JobRef
    from airflow_provider_hpcai.spec import JobSpec

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
    :param array_batch: for a mapped task (``.partial(...).expand(...)``): submit its items as Slurm
        job arrays of this many elements each (``ceil(N / array_batch)`` submissions for ``N`` items)
        instead of one job per item. Each mapped task instance still waits on its own element and
        gets its own state, result, log and retries; a retry submits only its own item. The items
        of a chunk share the resources and job name of the task instance that submits it (an item
        asking for others runs as a job of its own), and the jobs' working folder must be visible
        from the worker (transport ``local``, or ``rest`` reading output here). See
        :mod:`airflow_provider_hpcai.slurm.arrays`. ``None`` (default): one job per item.
    :param checkpoint_signal: seconds before the time limit at which the job's batch shell gets
        ``SIGUSR1`` (``--signal=B:USR1@<s>``), and the job's checkpoint convention: the job sees
        ``HPCAI_CHECKPOINT``, a path in its working folder that is the same on every try of this
        task instance. Trap USR1 and write the checkpoint there; on start, resume from it when it
        exists. A try that ends in TIMEOUT is retried (with more time when ``escalate_on_retry``)
        and its job finds the checkpoint the last one wrote. Bash runs a trap only between
        commands: run long commands in the background and ``wait`` for them.
    :param components: a heterogeneous job (``#SBATCH hetjob``): the resources of het groups 1, 2 ...
        (each :class:`~airflow_provider_hpcai.resources.Resources` or a mapping), ``job_resources``
        being group 0, where the script runs. The script starts work in group ``N`` with
        ``srun --het-group=N ...`` (plain ``srun`` runs in group 0). One job id, one state (running
        while any component runs, failed with the most telling failure of any), the exit code of
        the script, accounting summed over the groups with each group's own figures under
        ``het_components``; cancelling cancels every group. Not with ``array``, ``array_batch`` or
        ``container``. Slurm places the groups on distinct nodes: a job of ``N`` groups needs ``N``
        nodes (docs/slurm.md, "Heterogeneous jobs"). ``None`` (default): an ordinary job.
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
        array_batch: int | None = None,
        checkpoint_signal: int | None = None,
        components: Sequence[Resources | dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(job_resources=job_resources, environment=environment, job_name=job_name,
                         backend="slurm", conn_id=slurm_conn_id, **kwargs)
        self.script = script
        self.array = array
        self.slurm_conn_id = slurm_conn_id
        self.array_batch = check_array_batch(array_batch)
        if checkpoint_signal is not None and (isinstance(checkpoint_signal, bool) or not isinstance(
                checkpoint_signal, int) or not 1 <= checkpoint_signal <= 65535):
            raise InvalidJobSpecError(f"task {self.task_id}: checkpoint_signal {checkpoint_signal!r} must be whole "
                                      "seconds before the time limit, from 1 to 65535")
        self.checkpoint_signal = checkpoint_signal
        self.signal = f"B:USR1@{checkpoint_signal}" if checkpoint_signal else None
        if self.array_batch is not None and array is not None:
            raise InvalidJobSpecError(f"task {self.task_id}: array_batch and array cannot be combined (array_batch "
                                      "makes the arrays itself, one element per mapped item)")
        self.components = _check_components(self.task_id, components, array=array, array_batch=self.array_batch,
                                            container=self.container)

    def build_script(self, context: Any) -> str:
        if not isinstance(self.script, str) or not self.script.strip():
            raise InvalidJobSpecError(f"task {self.task_id}: script is empty")
        ignored = user_directives(self.script)
        if ignored:
            self.log.warning("Ignoring #SBATCH lines in the script (use job_resources instead): %s", ignored)
        if not self.checkpoint_signal:
            return self.script
        map_index = getattr(context["ti"], "map_index", None)
        tag = make_tag(self.dag_id, self.task_id, context["run_id"], -1 if map_index is None else map_index)
        # The same path on every try of this task instance: the retry's job finds what the last one wrote.
        return f'export HPCAI_CHECKPOINT="$PWD/hpcai-checkpoint-{tag}"\n' + self.script

    def submit_job(self, context: Any, backend: JobBackend, spec: JobSpec, previous: dict[str, Any] | None) -> JobRef:
        """The first try of a mapped item joins its chunk's job array when ``array_batch`` is set;
        everything else (a retry, an unmapped task, an item its chunk cannot take) is a job of its own."""
        ref = self._join_array(context, backend, spec) if self.array_batch and previous is None else None
        return ref if ref is not None else backend.submit(spec, workdir=self.workdir)

    def _join_array(self, context: Any, backend: JobBackend, spec: JobSpec) -> JobRef | None:
        from airflow_provider_hpcai.slurm import arrays

        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)
        if map_index is None or map_index < 0:
            return None  # not mapped: nothing to batch
        total = _mapped_count(ti, self.dag_id, self.task_id, context["run_id"])
        if total is None or total <= map_index:
            self.log.warning("array_batch: the number of mapped items is unknown here; submitting map index %s "
                             "as a job of its own", map_index)
            return None
        assert self.array_batch is not None
        place = arrays.placement(map_index, total, self.array_batch)
        tag = arrays.chunk_tag(self.dag_id, self.task_id, context["run_id"], place.chunk)
        return arrays.submit_in_chunk(backend, spec, tag=tag, place=place, workdir=self.workdir, log=self.log)


def _check_components(task_id: str, components: Any, *, array: str | None, array_batch: int | None,
                      container: Any) -> tuple[Resources, ...]:
    """The het groups 1.. of a heterogeneous job, checked at parse time (``()``: an ordinary job)."""
    try:
        checked = check_components(components)
    except InvalidJobSpecError as err:
        raise InvalidJobSpecError(f"task {task_id}: {err}") from None
    if not checked:
        return ()
    for name, value in (("array", array), ("array_batch", array_batch), ("container", container)):
        if value is not None:
            raise InvalidJobSpecError(f"task {task_id}: components (a heterogeneous job) cannot be combined with "
                                      f"{name}: Slurm runs no hetjob arrays, and a container wraps one allocation")
    return checked


def _mapped_count(ti: Any, dag_id: str, task_id: str, run_id: str) -> int | None:
    """How many mapped task instances this task has in the run (``None``: unknown)."""
    counter = getattr(ti, "get_ti_count", None)
    if counter is None:
        return None
    try:
        count = counter(dag_id=dag_id, task_ids=[task_id], run_ids=[run_id])
    except Exception:  # no supervisor to ask (a bare test run): the item goes alone
        return None
    return count if isinstance(count, int) and count > 0 else None
