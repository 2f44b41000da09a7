"""Build an Airflow DAG from a manifest and an instance record.

Two factories:

* ``stages:`` in the manifest: each stage ``kind`` maps, through :data:`STAGE_OPERATORS`
  (data, not code in the manifest), to an operator class imported only when needed;
  ``{{ params.x }}`` placeholders in its ``args`` are resolved first.
* ``entrypoint: package.module:function``: an installed factory, imported only when its
  module starts with an allow-listed prefix, called as
  ``function(dag_id=..., params=..., resources=..., instance=...)`` and expected to return
  a DAG with that ``dag_id``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_hpcai.templates.errors import TemplateError, TemplateValidationError
from airflow_provider_hpcai.templates.manifest import TemplateManifest, _check_entrypoint
from airflow_provider_hpcai.templates.placeholders import has_jinja, resolve

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_provider_hpcai.resources import Resources
    from airflow_provider_hpcai.templates.programs import StagePolicy

__all__ = ["STAGE_OPERATORS", "build_dag", "instance_resources", "resolve_stages", "stage_context"]

#: Stage kinds that run a job, and so run in the template's ``image`` when it names one.
_JOB_KINDS = ("slurm_job", "simulation", "kubernetes_job")

#: Stage kind -> ``module:Class``. Only these can appear in a manifest.
STAGE_OPERATORS: dict[str, str] = {
    "bash": "airflow_provider_hpcai.templates.bash_stage:QuotedBashOperator",
    "empty": "airflow.providers.standard.operators.empty:EmptyOperator",
    "slurm_job": "airflow_provider_hpcai.operators.slurm:SlurmJobOperator",
    "simulation": "airflow_provider_hpcai.operators.simulation:SimulationOperator",
    "kubernetes_job": "airflow_provider_hpcai.operators.kubernetes:KubernetesJobStageOperator",
    "dask_analysis": "airflow_provider_hpcai.operators.dask:DaskOperator",
}
#: Kinds whose operator does not render Jinja in the arguments we pass.
_UNTEMPLATED_KINDS = frozenset({"bash", "empty"})


def instance_resources(manifest: TemplateManifest, overrides: Mapping[str, Any] | None) -> Resources:
    """The template's default resources with an instance's overrides applied (validated)."""
    from airflow_provider_hpcai.exceptions import InvalidJobSpecError
    from airflow_provider_hpcai.resources import Resources

    merged = {**dict(manifest.resources), **dict(overrides or {})}
    try:
        return Resources.from_dict(merged)
    except InvalidJobSpecError as err:
        raise TemplateValidationError(f"resources: {err}") from None


def stage_context(
    manifest: TemplateManifest, instance: Mapping[str, Any], resources: Resources
) -> dict[str, Any]:
    """What placeholders can name: ``params``, ``resources`` and ``instance``."""
    return {
        "params": dict(instance.get("params") or {}),
        "resources": {k: v for k, v in resources.to_dict().items() if v is not None},
        "instance": {
            "id": instance["id"],
            "dag_id": instance["dag_id"],
            "owner": instance.get("owner", ""),
            "template": manifest.name,
            "version": manifest.version,
        },
    }


def _reject_jinja(value: Any, where: str) -> None:
    if isinstance(value, str) and has_jinja(value):
        raise TemplateValidationError(
            f"{where}: the value {value!r} contains template syntax ('{{{{', '{{%' or '{{#'), which this "
            "stage's operator would render; remove it from the parameter"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _reject_jinja(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_jinja(item, f"{where}[{index}]")


def resolve_stages(
    manifest: TemplateManifest, context: Mapping[str, Any], policy: StagePolicy | None = None
) -> list[dict[str, Any]]:
    """Resolve every stage's arguments; pure (imports no operator). Used to fail early.

    :param manifest: the template version.
    :param context: what placeholders name (:func:`stage_context`).
    :param policy: what stages may do (default: the settings').
    :raises TemplateValidationError: a stage does what the policy does not allow (e.g. runs a
        program that is not allowed), or a value does not fit where it goes.
    """
    if policy is None:
        from airflow_provider_hpcai.templates.settings import load_settings

        policy = load_settings().stage_policy
    resolved = []
    for stage in manifest.stages:
        where = f"stage {stage.id!r}"
        kwargs = resolve(dict(stage.args), context, f"{where} args")
        if stage.kind == "template":
            resolved.append({"id": stage.id, "kind": stage.kind, "depends_on": list(stage.depends_on),
                             "kwargs": kwargs, "map_over": None})
            continue
        if stage.kind == "bash":
            argv = kwargs.get("argv")
            if not isinstance(argv, list) or not all(
                isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in argv
            ):
                raise TemplateValidationError(
                    f"{where}: argv must resolve to a list of words; a placeholder that stands for a whole "
                    "argv element must name a string or number parameter"
                )
            env = kwargs.get("env") or {}
            if not all(isinstance(v, (str, int, float)) for v in env.values()):
                raise TemplateValidationError(f"{where}: env values must resolve to strings or numbers")
            policy.check("bash", {"argv": stage.args["argv"], "env": env}, where)  # program words as written
        else:
            policy.check(stage.kind, kwargs, where)
        if stage.kind not in _UNTEMPLATED_KINDS:
            _reject_jinja(kwargs, f"{where} args")
        resolved.append({"id": stage.id, "kind": stage.kind, "depends_on": list(stage.depends_on), "kwargs": kwargs,
                         "map_over": stage.map_over})
    return resolved


def _import(target: str, what: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise TemplateError(
            f"{what} needs {module_name}.{attr}, which cannot be imported here ({err}); install the "
            "package that provides it on the dag processor and the workers"
        ) from None


def _new_dag(manifest: TemplateManifest, instance: Mapping[str, Any]) -> DAG:
    from airflow.sdk import DAG

    created = datetime.fromisoformat(str(instance["created"]))
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return DAG(
        dag_id=instance["dag_id"],
        schedule=None,
        start_date=created,
        catchup=False,
        description=f"{manifest.title} (template {manifest.name} {manifest.version})"[:1000],
        tags=sorted({"hpcai-template", manifest.name, *manifest.tags})[:20],
        default_args={"owner": str(instance.get("owner") or "airflow")},
        doc_md=(
            f"Instance `{instance['id']}` of template **{manifest.name}** {manifest.version}, "
            f"created by {instance.get('owner') or 'unknown'}."
        ),
    )


def build_dag(
    manifest: TemplateManifest,
    instance: Mapping[str, Any],
    *,
    factory_allowlist: Iterable[str] | None = None,
    policy: StagePolicy | None = None,
    templates: Callable[[str, str], TemplateManifest] | None = None,
) -> DAG:
    """Build the DAG of one instance.

    :param manifest: the template version the instance was made from.
    :param instance: the instance record (``id``, ``dag_id``, ``params``, ``owner``, ``created``,
        optional ``resources`` overrides).
    :param factory_allowlist: prefixes for ``entrypoint`` factories (default: the settings).
    :param policy: what stages may do (default: the settings).
    :param templates: ``f(name, version) -> manifest`` for sub-workflow stages (the repository's).
    :raises TemplateError: when a stage cannot be built (the loader logs it and skips the DAG).
    """
    resources = instance_resources(manifest, instance.get("resources"))
    if manifest.entrypoint:
        _check_entrypoint(manifest.entrypoint, factory_allowlist)
        factory = _import(manifest.entrypoint, f"template {manifest.name}")
        dag = factory(
            dag_id=instance["dag_id"],
            params=dict(instance.get("params") or {}),
            resources=resources,
            instance=dict(instance),
        )
        from airflow.sdk import DAG

        if not isinstance(dag, DAG) or dag.dag_id != instance["dag_id"]:
            raise TemplateError(
                f"factory {manifest.entrypoint} must return a DAG with dag_id {instance['dag_id']!r}"
            )
        return dag
    stages = resolve_stages(manifest, stage_context(manifest, instance, resources), policy)
    dag = _new_dag(manifest, instance)
    _add_stages(dag, stages, manifest, instance, resources, policy, templates, group=None)
    return dag


def _analysis_dir(dag_id: str, stage_id: str) -> str:
    """Where an analysis stage writes (templated by run): under ``[hpcai] local_work_dir``."""
    import os

    from airflow_provider_hpcai import config

    root = os.path.expanduser(config.get("local_work_dir") or "~/.hpcai/local-jobs")
    return os.path.join(root, "analysis", dag_id, "{{ run_id | replace(':', '_') | replace('+', '_') }}", stage_id)


def _topological(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``stages`` with every stage after the ones it depends on (the manifest's order otherwise)."""
    done: set[str] = set()
    ordered: list[dict[str, Any]] = []
    pending = list(stages)
    while pending:
        ready = [s for s in pending if all(d in done for d in s["depends_on"])]
        if not ready:  # parse_manifest refuses cycles; never loop forever anyway
            raise TemplateValidationError("the stages form a cycle; a DAG cannot loop")
        for stage in ready:
            ordered.append(stage)
            done.add(stage["id"])
        pending = [s for s in pending if s["id"] not in done]
    return ordered


def _row_params(base: Mapping[str, Any], kernel: str) -> Any:
    """For a mapped stage: each row's values for the kernel's parameters merged into the stage's own."""
    from airflow_provider_hpcai.kernel_params import SPECS

    names = set(SPECS.get(kernel, {}))

    def merge(row: Any) -> dict[str, Any]:
        extra = dict(row) if isinstance(row, Mapping) else {}
        return {"kernel_params": {**dict(base), **{k: v for k, v in extra.items() if k in names}}}

    return merge


def _rows(result: Any) -> list[Any]:
    return list(result.get("rows") or []) if isinstance(result, Mapping) else []


def _add_stages(
    dag: DAG,
    stages: list[dict[str, Any]],
    manifest: TemplateManifest,
    instance: Mapping[str, Any],
    resources: Resources,
    policy: StagePolicy | None,
    templates: Callable[[str, str], TemplateManifest] | None,
    group: Any,
) -> None:
    tasks: dict[str, Any] = {}
    for stage in _topological(stages):
        kind, sid, kwargs = stage["kind"], stage["id"], dict(stage["kwargs"])
        where = f"stage {sid!r} ({kind})"
        if kind == "template":
            tasks[sid] = _sub_workflow(dag, stage, manifest, instance, policy, templates, group)
            continue
        if kind == "dask_analysis":
            from airflow_provider_hpcai.templates.stage_kinds import ANALYSES

            function = _import(ANALYSES[kwargs.pop("analysis")], f"{where} analysis")
            op_kwargs = {
                "results": [tasks[d].output for d in stage["depends_on"] if hasattr(tasks[d], "output")],
                "output_dir": _analysis_dir(str(instance["dag_id"]), sid),
            }
            if kwargs.get("columns"):
                op_kwargs["columns"] = list(kwargs.pop("columns"))
            if kwargs.get("chart"):
                op_kwargs["chart"] = str(kwargs.pop("chart"))
            kwargs = {"python_callable": function, "op_kwargs": op_kwargs,
                      **({"dask_conn_id": kwargs["dask_conn_id"]} if kwargs.get("dask_conn_id") else {})}
        if manifest.image is not None and kind in _JOB_KINDS:  # the template's image: every job stage runs in it
            kwargs.setdefault("container", dict(manifest.image))
        operator = _import(STAGE_OPERATORS[kind], f"stage kind {kind!r}")
        try:
            if stage.get("map_over"):
                from airflow.providers.standard.operators.python import PythonOperator

                params = kwargs.pop("kernel_params", None) or {}
                source = stage["map_over"]
                rows = PythonOperator(task_id=f"{sid}_rows", dag=dag, task_group=group, python_callable=_rows,
                                      op_args=[tasks[source].output])
                task = operator.partial(task_id=sid, dag=dag, task_group=group, **kwargs).expand_kwargs(
                    rows.output.map(_row_params(params, str(kwargs.get("kernel")))))
            else:
                task = operator(task_id=sid, dag=dag, task_group=group, **kwargs)
        except TypeError as err:
            raise TemplateError(f"{where}: {err}") from None
        if getattr(task, "template_ext", ()):
            # Values in a stage come from the manifest and the user's parameters: data, never
            # the name of a file for Airflow to load and render (a parameter "x.sh" stays "x.sh").
            task.template_ext = ()
        tasks[sid] = task
    for stage in stages:
        for dep in stage["depends_on"]:
            tasks[dep] >> tasks[stage["id"]]


def _sub_workflow(
    dag: DAG,
    stage: Mapping[str, Any],
    parent: TemplateManifest,
    instance: Mapping[str, Any],
    policy: StagePolicy | None,
    templates: Callable[[str, str], TemplateManifest] | None,
    group: Any,
) -> Any:
    """A published stage template inlined as a task group named after the stage."""
    from airflow.sdk import TaskGroup

    from airflow_provider_hpcai.templates.manifest import validate_params

    args = stage["kwargs"]
    where = f"stage {stage['id']!r} (template {args.get('name')} {args.get('version')})"
    if group is not None:
        raise TemplateValidationError(f"{where}: a sub-workflow cannot hold another sub-workflow (one level only)")
    if templates is None:
        raise TemplateError(f"{where}: sub-workflows need the template repository to build")
    sub = templates(str(args["name"]), str(args["version"]))
    if sub.entrypoint or any(s.kind == "template" for s in sub.stages):
        raise TemplateValidationError(
            f"{where}: only a template made of stages (none of them a sub-workflow) can be used as a sub-workflow"
        )
    params = validate_params(sub, args.get("params") or {})
    sub_resources = instance_resources(sub, None)
    context = stage_context(sub, {**instance, "params": params}, sub_resources)
    sub_stages = resolve_stages(sub, context, policy)
    task_group = TaskGroup(group_id=stage["id"], dag=dag)
    _add_stages(dag, sub_stages, sub, instance, sub_resources, policy, templates, task_group)
    return task_group
