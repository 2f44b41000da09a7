"""Run an analysis function on a Dask cluster chosen by an Airflow connection.

Classic::

    DaskOperator(task_id="totals", dask_conn_id="dask_slurm", python_callable=rainfall_totals,
                 op_kwargs={"paths": "{{ ti.xcom_pull('simulate') }}"})

TaskFlow (``@task.dask``, registered in provider info; ``dask_task`` is the same decorator)::

    @task.dask(dask_conn_id="dask_default")
    def totals(client, paths):
        return sum(client.gather(client.map(read_total, paths, batch_size=64)))

The function gets a ``distributed.Client`` first; what it returns goes to XCom as JSON. The
cluster is closed on success, failure and kill. Nothing here imports dask at DAG parse time.

Adaptive scaling (``adaptive={"minimum": 1, "maximum": 8, "scale_down_wait": "60s"}``, or the
connection's ``adaptive`` extra) lets Dask grow and shrink the cluster; the task log shows the
workers wanted, running and pending with the futures done, and ends with the worker-hours used.
Slurm worker jobs carry the task's tag (``spec.make_tag``: the same for every try), so a retry
cancels the worker jobs a crashed try left in the queue before it submits its own. While the
cluster runs, the task has a "Dask dashboard" extra link; the usage summary goes to XCom
``dask_usage``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from airflow_provider_hpcai.dask.dagcode import dag_functions_by_value
from airflow_provider_hpcai.dask.links import DASHBOARD_XCOM_KEY, DaskDashboardLink, safe_dashboard_url
from airflow_provider_hpcai.dask.progress import ProgressReporter, to_jsonable
from airflow_provider_hpcai.hooks.dask import DaskHook

__all__ = ["DaskOperator", "dask_task"]


class DaskOperator(BaseOperator):
    """Call ``python_callable(client, *op_args, **op_kwargs)`` with a client on the connection's cluster.

    :param python_callable: the analysis function; its first parameter receives the client.
    :param dask_conn_id: the ``dask`` connection choosing the cluster (default ``dask_default``:
        a local cluster when no such connection exists).
    :param op_args: positional arguments after the client (templated).
    :param op_kwargs: keyword arguments (templated).
    :param progress_interval: seconds between progress lines in the task log (futures finished,
        pending and failed; workers running, pending and wanted).
    :param adaptive: adaptive scaling for this task, overriding the connection's ``adaptive`` extra:
        ``None`` keeps the connection's, ``False`` a fixed size, a mapping with ``minimum``,
        ``maximum`` (workers; Slurm: worker jobs), ``target_duration``, ``scale_down_wait`` and
        ``interval`` (seconds or ``'5s'``, ``'2m'``) scales between the bounds. Checked when the
        operator is built.
    """

    template_fields: Sequence[str] = ("op_args", "op_kwargs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"op_args": "py", "op_kwargs": "py"}
    shallow_copy_attrs: Sequence[str] = ("python_callable",)
    ui_color = "#fce8d5"
    operator_extra_links = (DaskDashboardLink(),)

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        dask_conn_id: str = DaskHook.default_conn_name,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        progress_interval: float = 10.0,
        adaptive: Mapping[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise TypeError(f"python_callable must be callable, got {python_callable!r}")
        if adaptive is not None:
            from airflow_provider_hpcai.dask.adaptive import parse_adaptive

            parse_adaptive(adaptive, where=f"task {self.task_id!r}: argument 'adaptive'")  # fail at parse time
        self.adaptive = adaptive
        #: The task's provider tag, set by :meth:`execute` from the task instance (``None`` outside Airflow).
        self.task_tag: str | None = None
        self.python_callable = python_callable
        self.dask_conn_id = dask_conn_id
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.progress_interval = progress_interval
        self._hook: DaskHook | None = None

    def make_hook(self) -> DaskHook:
        """The hook that provides the cluster (override to inject one; pass ``tag=self.task_tag``)."""
        return DaskHook(self.dask_conn_id, adaptive=self.adaptive, tag=self.task_tag)

    def execute(self, context: Any) -> Any:
        ti = context.get("ti") if isinstance(context, Mapping) else None
        self.task_tag = _task_tag(ti)
        self._hook = hook = self.make_hook()
        name = getattr(self.python_callable, "__name__", repr(self.python_callable))
        try:
            with hook.get_client() as client:
                self.log.info("Running %s on the Dask cluster of %r", name, self.dask_conn_id)
                link = safe_dashboard_url(hook.dashboard_link)
                if link and ti is not None:  # the UI shows the link while the task runs
                    self.log.info("Dask dashboard: %s", link)
                    ti.xcom_push(key=DASHBOARD_XCOM_KEY, value=link)
                    ti.xcom_push(key=DaskDashboardLink().xcom_key, value=link)
                with ProgressReporter(client, self.log, self.progress_interval, scaling=hook.scaling_text) as progress, \
                        dag_functions_by_value(self.python_callable) as module:  # workers cannot import a DAG file
                    if module:
                        self.log.info("Functions of the DAG file go to the Dask workers by value (module %s)", module)
                    result = self.python_callable(client, *self.op_args, **self.op_kwargs)
                progress.finish()
        finally:
            usage = hook.usage()
            if usage is not None and ti is not None:
                try:
                    ti.xcom_push(key="dask_usage", value=usage)
                except Exception as err:  # the usage record must not hide the task's own outcome
                    self.log.warning("Could not push the Dask usage to XCom: %s", err)
        return to_jsonable(result, what=f"the result of {name}")

    def on_kill(self) -> None:
        """Close the cluster (and cancel its Slurm worker jobs) when Airflow kills the task."""
        if self._hook is not None:
            self.log.info("Task killed: closing the Dask cluster")
            self._hook.close()


def _task_tag(ti: Any) -> str | None:
    """The provider tag of the running task instance (the same for every try), or ``None`` outside Airflow."""
    try:
        dag_id, task_id, run_id = str(ti.dag_id), str(ti.task_id), str(ti.run_id)
    except AttributeError:
        return None
    from airflow_provider_hpcai.spec import make_tag

    map_index = getattr(ti, "map_index", -1)
    return make_tag(dag_id, task_id, run_id, map_index if isinstance(map_index, int) else -1)


def _without_client(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with its first parameter (the client) hidden from Airflow's argument checks."""
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        raise TypeError(f"@dask_task function {func.__name__} must take the Dask client first: def {func.__name__}"
                        "(client, ...)")

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    call.__signature__ = signature.replace(parameters=params[1:])  # type: ignore[attr-defined]
    return call


class _DaskDecoratedOperator(DecoratedOperator, DaskOperator):
    """The operator behind :func:`dask_task`."""

    custom_operator_name = "@task.dask"
    template_fields: Sequence[str] = DaskOperator.template_fields

    def __init__(self, *, python_callable: Callable[..., Any], op_args: Collection[Any] | None = None,
                 op_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        upstream = {"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs}
        super().__init__(kwargs_to_upstream=upstream, python_callable=python_callable, op_args=op_args,
                         op_kwargs=op_kwargs, **kwargs)


def dask_task(python_callable: Callable[..., Any] | None = None, *, multiple_outputs: bool | None = None,
              **kwargs: Any) -> Any:
    """TaskFlow form of :class:`DaskOperator`: the decorated function receives the client first.

    :param python_callable: the function (when used as ``@dask_task`` without parentheses).
    :param multiple_outputs: push each key of a returned dict as its own XCom.
    :param kwargs: :class:`DaskOperator` arguments (``dask_conn_id``, ``progress_interval``...).
    """
    def wrap(func: Callable[..., Any]) -> Any:
        return task_decorator_factory(
            python_callable=_without_client(func),
            multiple_outputs=multiple_outputs,
            decorated_operator_class=_DaskDecoratedOperator,
            **kwargs,
        )

    return wrap(python_callable) if python_callable is not None else wrap
