"""The composer's palette and its live validation, run on the server (the browser is never trusted).

:func:`palette` lists what can be dragged onto the canvas, each entry with the JSON Schema its
form is generated from. :func:`check_document` returns every problem of a document, each on the
node (and field) it concerns: a cycle, an input left unconnected, an output that does not fit the
input it feeds, resources a partition (or the local machine) cannot give, a kernel parameter out
of range, and whatever the manifest checks and the stage policy refuse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_hpcai.templates.compose import DOCUMENT_SCHEMA, dump_manifest, manifest_data
from airflow_provider_hpcai.templates.errors import TemplateError, TemplateValidationError
from airflow_provider_hpcai.templates.manifest import _schema_errors, parse_manifest
from airflow_provider_hpcai.templates.manifest_schema import BACKENDS, BASH_ARGS_SCHEMA
from airflow_provider_hpcai.templates.stage_kinds import (
    DASK_ARGS_SCHEMA,
    KIND_TYPES,
    MAPPABLE_KINDS,
    RESOURCES_SCHEMA,
    TEMPLATE_ARGS_SCHEMA,
    accepts,
)

__all__ = ["Problem", "check_document", "palette", "partition_problems"]

Problem = dict[str, Any]
_PLACEHOLDER = re.compile(r"\{\{.*\}\}", re.DOTALL)
_CONN = {"type": "string", "maxLength": 250, "pattern": r"^[A-Za-z0-9_.-]*\Z"}
_ENV = {"type": "object", "maxProperties": 64, "title": "Environment",
        "additionalProperties": {"type": "string", "maxLength": 4096}}
_SIZE = re.compile(r"^([0-9]+)([KMGT]?)\Z")
_UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}  # Slurm: a bare number is MB


def _simulation_schema(kernel: str) -> dict[str, Any]:
    from airflow_provider_hpcai.kernel_params import schema

    kernel_schema = {k: v for k, v in schema(kernel).items() if k != "$schema"}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["kernel"],
        "properties": {
            "kernel": {"const": kernel, "title": "Kernel"},
            "backend": {"enum": list(BACKENDS), "title": "Backend", "default": "local"},
            "conn_id": {**_CONN, "title": "Connection (empty: the backend's default)"},
            "ranks": {"type": "integer", "minimum": 1, "maximum": 4096, "title": "MPI ranks", "default": 1},
            "kernel_params": {**kernel_schema, "title": "Kernel parameters"},
            "job_resources": RESOURCES_SCHEMA,
        },
    }


_SLURM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["script"],
    "properties": {
        "script": {"type": "string", "minLength": 1, "maxLength": 65536, "title": "Batch script (bash)",
                   "format": "textarea"},
        "slurm_conn_id": {**_CONN, "title": "Slurm connection"},
        "job_resources": RESOURCES_SCHEMA,
        "environment": _ENV,
    },
}
_KUBERNETES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1, "maxLength": 512, "title": "Container image",
                  "pattern": r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}\Z"},
        "cmds": {"type": "array", "maxItems": 256, "title": "Command (argv)", "items": {"type": "string", "maxLength": 4096}},
        "kubernetes_conn_id": {**_CONN, "title": "Kubernetes connection"},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z", "title": "Namespace"},
        "job_resources": RESOURCES_SCHEMA,
        "environment": _ENV,
    },
}


def _entry(entry_id: str, kind: str, label: str, schema: Mapping[str, Any], *, preset: Mapping[str, Any] | None = None,
           description: str = "", disabled: str | None = None) -> dict[str, Any]:
    output, inputs = KIND_TYPES[kind]
    return {"id": entry_id, "kind": kind, "label": label, "description": description, "schema": dict(schema),
            "preset": dict(preset or {}), "output": output, "inputs": list(inputs), "mappable": kind in MAPPABLE_KINDS,
            "disabled": disabled}


def kind_schema(kind: str, args: Mapping[str, Any], repo: Any | None = None) -> dict[str, Any] | None:
    """The args schema of a node of ``kind`` (a simulation's depends on its kernel)."""
    if kind == "simulation":
        from airflow_provider_hpcai.kernel_params import KERNELS

        kernel = args.get("kernel")
        return _simulation_schema(kernel) if isinstance(kernel, str) and kernel in KERNELS else None
    if kind == "template" and repo is not None:
        schema = dict(TEMPLATE_ARGS_SCHEMA)
        try:
            found = repo.get(str(args.get("name")), str(args.get("version")))
        except (TemplateError, TypeError, ValueError):
            return schema
        return {**schema, "properties": {**schema["properties"], "params": {**dict(found.manifest.parameters),
                                                                            "title": "Its parameters"}}}
    return {"slurm_job": _SLURM_SCHEMA, "kubernetes_job": _KUBERNETES_SCHEMA, "dask_analysis": DASK_ARGS_SCHEMA,
            "template": TEMPLATE_ARGS_SCHEMA, "bash": BASH_ARGS_SCHEMA, "empty": {"type": "object", "maxProperties": 0}
            }.get(kind)


def palette(repo: Any) -> list[dict[str, Any]]:
    """What can be dragged onto the canvas, with the schema of each entry's form.

    Kinds the site's stage policy refuses are listed with ``disabled`` saying why.
    """
    from airflow_provider_hpcai.kernel_params import KERNELS

    policy = repo.settings.stage_policy
    code = None if policy.job_scripts else (
        "this site does not allow publisher code in templates ([hpcai] template_job_scripts = False)")
    entries = [
        _entry(f"simulation:{kernel}", "simulation", f"Simulation: {kernel}", _simulation_schema(kernel),
               preset={"kernel": kernel, "backend": "local"}, description=text)
        for kernel, text in sorted(KERNELS.items())
    ]
    entries += [
        _entry("slurm_job", "slurm_job", "Slurm job", _SLURM_SCHEMA, preset={"script": "srun hostname\n"},
               description="a batch script on the Slurm cluster", disabled=code),
        _entry("kubernetes_job", "kubernetes_job", "Kubernetes job", _KUBERNETES_SCHEMA,
               preset={"image": "python:3.11-slim", "cmds": ["python3", "-c", "print('hello')"]},
               description="a container on Kubernetes", disabled=code),
        _entry("dask_analysis", "dask_analysis", "Dask analysis", DASK_ARGS_SCHEMA, preset={"analysis": "summary_table"},
               description="a table (CSV) of the upstream stages' summaries and usage, computed on Dask"),
        _entry("bash", "bash", "Command", BASH_ARGS_SCHEMA,
               preset={"argv": ["python3", "-m", "airflow_provider_hpcai.templates.greet", "--machine"]},
               description=f"an allowed program: {', '.join(policy.bash_programs) or '(none allowed)'}"),
        _entry("empty", "empty", "Join", {"type": "object", "properties": {}}, description="waits for its inputs"),
    ]
    for item in repo.list_templates():
        if item.get("factory") != "stages":
            continue
        try:
            found = repo.get(item["name"], item["version"])
        except TemplateError:
            continue
        if any(s.kind == "template" for s in found.manifest.stages):
            continue  # one level of sub-workflows
        schema = kind_schema("template", {"name": item["name"], "version": item["version"]}, repo)
        entries.append(_entry(f"template:{item['name']}", "template", f"Template: {item['title']}", schema or {},
                              preset={"name": item["name"], "version": item["version"]},
                              description=f"{item['name']} {item['version']} as a sub-workflow"))
    return entries


# --------------------------------------------------------------------------- validation
def _problem(message: str, node: str | None = None, field: str | None = None, severity: str = "error") -> Problem:
    return {"node": node, "field": field, "message": message, "severity": severity}


def _literal(value: Any) -> bool:
    return not (isinstance(value, str) and _PLACEHOLDER.search(value))


def _cycle_nodes(ids: list[str], edges: list[tuple[str, str]]) -> set[str]:
    indegree = dict.fromkeys(ids, 0)
    children: dict[str, list[str]] = {i: [] for i in ids}
    for source, target in set(edges):
        indegree[target] += 1
        children[source].append(target)
    ready = [i for i, d in indegree.items() if d == 0]
    while ready:
        current = ready.pop()
        for child in children[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return {i for i, d in indegree.items() if d > 0}


def _bytes(memory: Any) -> int | None:
    match = _SIZE.match(str(memory).strip().upper()) if memory is not None else None
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def _local_capacity() -> dict[str, Any]:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            total_kb = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        total_kb = None
    return {"cpus": os.cpu_count() or 1, "memory_bytes": total_kb * 1024 if total_kb else None}


def partition_problems(node: str, backend: str, resources: Mapping[str, Any], cluster: Mapping[str, Any] | None,
                       ranks: int | None = None) -> list[Problem]:
    """What ``resources`` ask for that the backend cannot give.

    :param backend: ``local``, ``slurm`` or ``kubernetes`` (not checked).
    :param cluster: the Slurm status (partitions, nodes) or ``None`` when unknown.
    """
    found: list[Problem] = []
    ntasks = int(resources.get("ntasks") or ranks or 1)
    nodes = int(resources.get("nodes") or 1)
    cpus = int(resources.get("cpus_per_task") or 1)
    memory = _bytes(resources.get("memory"))
    field = "job_resources"
    if backend == "local":
        local = _local_capacity()
        if ntasks * cpus > local["cpus"]:
            found.append(_problem(f"asks for {ntasks * cpus} CPUs; the local machine has {local['cpus']}: lower "
                                  "tasks or CPUs per task, or run on Slurm", node, f"{field}/cpus_per_task"))
        if memory and local["memory_bytes"] and memory > local["memory_bytes"]:
            found.append(_problem(f"asks for {resources['memory']} of memory; the local machine has "
                                  f"{local['memory_bytes'] >> 20} MB", node, f"{field}/memory"))
        if nodes > 1:
            found.append(_problem("the local backend runs on one machine; ask for 1 node", node, f"{field}/nodes"))
        return found
    if backend != "slurm" or not cluster:
        return found
    partitions = {str(p.get("name")): p for p in cluster.get("partitions") or []}
    name = resources.get("partition")
    if name is not None and not _literal(name):
        return found
    default = next((p for p in partitions.values() if p.get("default")), next(iter(partitions.values()), None))
    partition = partitions.get(str(name)) if name else default
    if name and partition is None:
        found.append(_problem(f"partition {name!r} does not exist; the cluster has {', '.join(sorted(partitions))}",
                              node, f"{field}/partition"))
        return found
    if partition is None:
        return found
    pname = partition["name"]
    members = [n for n in cluster.get("nodes") or [] if str(n.get("partition")) == pname]
    node_cpus = max((int(n.get("cpus_total") or 0) for n in members), default=0)
    node_mem = partition.get("max_memory_per_node_mb") or max((int(n.get("memory_mb") or 0) for n in members), default=0)
    per_node = -(-ntasks // nodes) * cpus
    if members and nodes > len({n.get("name") for n in members}):
        found.append(_problem(f"asks for {nodes} nodes; partition {pname} has {len({n.get('name') for n in members})}",
                              node, f"{field}/nodes"))
    if node_cpus and per_node > node_cpus:
        found.append(_problem(f"asks for {per_node} CPUs on a node; the nodes of partition {pname} have {node_cpus}",
                              node, f"{field}/cpus_per_task"))
    if memory and node_mem and memory > int(node_mem) << 20:
        found.append(_problem(f"asks for {resources['memory']} per node; partition {pname} gives at most {node_mem} MB",
                              node, f"{field}/memory"))
    limit = partition.get("max_time_seconds")
    if limit and resources.get("time_limit"):
        from airflow_provider_hpcai.resources import Resources

        try:
            seconds = Resources.from_dict({"time_limit": resources["time_limit"]}).time_limit_seconds or 0
        except Exception:
            seconds = 0
        if seconds > float(limit):
            found.append(_problem(f"asks for {resources['time_limit']}; partition {pname} allows at most "
                                  f"{int(limit) // 60} minutes", node, f"{field}/time_limit"))
    return found


def _kernel_problems(node: str, args: Mapping[str, Any]) -> list[Problem]:
    from airflow_provider_hpcai.kernel_params import validate

    params = {k: v for k, v in (args.get("kernel_params") or {}).items() if _literal(v)}
    ranks = args.get("ranks", 1)
    if not isinstance(ranks, int) or isinstance(ranks, bool):
        return []
    try:
        validate(str(args["kernel"]), params, ranks)
    except (ValueError, TypeError, KeyError) as err:
        return [_problem(str(err), node, "kernel_params")]
    return []


def _node_problems(node: Mapping[str, Any], repo: Any, cluster: Callable[[], Mapping[str, Any] | None]) -> list[Problem]:
    nid, kind, args = node["id"], node["kind"], dict(node.get("args") or {})
    schema = kind_schema(kind, args, repo)
    if schema is None:
        if kind == "simulation":
            from airflow_provider_hpcai.kernel_params import KERNELS

            return [_problem(f"kernel {args.get('kernel')!r} is unknown; choose one of {', '.join(sorted(KERNELS))}",
                             nid, "kernel")]
        return [_problem(f"kind {kind!r} is unknown; use a kind from the palette", nid)]
    literal_args = _strip_placeholders(args)
    if kind == "template":  # its parameters are checked below, with their defaults filled in
        schema = TEMPLATE_ARGS_SCHEMA
    found = [_problem(e["message"], nid, e["path"] or None) for e in _schema_errors(schema, literal_args)]
    if found:
        return found
    if kind == "simulation":
        found += _kernel_problems(nid, literal_args)
    resources = args.get("job_resources")
    if isinstance(resources, Mapping):
        from airflow_provider_hpcai.exceptions import InvalidJobSpecError
        from airflow_provider_hpcai.resources import Resources

        try:
            Resources.from_dict({k: v for k, v in resources.items() if _literal(v)})
        except (InvalidJobSpecError, TypeError, ValueError) as err:
            found.append(_problem(str(err), nid, "job_resources"))
        else:
            backend = {"slurm_job": "slurm", "kubernetes_job": "kubernetes"}.get(kind, args.get("backend") or "local")
            if _literal(backend):
                status = cluster() if backend == "slurm" else None
                found += partition_problems(nid, str(backend), resources, status,
                                            args.get("ranks") if isinstance(args.get("ranks"), int) else None)
    if kind == "template":
        try:
            sub = repo.get(str(args["name"]), str(args["version"]))
        except TemplateError as err:
            return [*found, _problem(str(err), nid, "name")]
        if sub.manifest.entrypoint or any(s.kind == "template" for s in sub.manifest.stages):
            found.append(_problem(f"{args['name']} {args['version']} is built by a Python factory or holds "
                                  "sub-workflows; only a template made of stages can be a sub-workflow", nid, "name"))
        else:
            from airflow_provider_hpcai.templates.manifest import validate_params

            try:
                validate_params(sub.manifest, args.get("params") or {})
            except TemplateValidationError as err:
                errors = getattr(err, "errors", None) or [{"path": "", "message": str(err)}]
                found += [_problem(e["message"], nid, f"params/{e['path']}".rstrip("/")) for e in errors]
    if kind in ("bash", "slurm_job", "kubernetes_job", "simulation"):
        try:
            repo.settings.stage_policy.check(kind, args, f"stage {nid!r}")
        except TemplateValidationError as err:
            found.append(_problem(str(err), nid))
    return found


def _strip_placeholders(value: Any) -> Any:
    """``value`` without the entries whose value is a placeholder (they are checked at build time)."""
    if isinstance(value, Mapping):
        return {k: _strip_placeholders(v) for k, v in value.items() if _literal(v)}
    if isinstance(value, list):
        return [_strip_placeholders(v) for v in value]
    return value


def _which_node(message: str, ids: list[str]) -> str | None:
    for nid in ids:
        if f"'{nid}'" in message or f"({nid})" in message:
            return nid
    return None


def check_document(
    document: Any,
    repo: Any,
    *,
    cluster: Callable[[], Mapping[str, Any] | None] = lambda: None,
) -> dict[str, Any]:
    """Every problem of a composer document, and the manifest it makes when there is none.

    :param document: the document as sent by the page (untrusted).
    :param repo: the template repository (palette, sub-workflows, published versions, policy).
    :param cluster: returns the Slurm cluster's status for the partition checks, or ``None``.
    :return: ``{"valid", "problems": [{"node", "field", "message", "severity"}], "manifest"}``.
    """
    errors = _schema_errors(DOCUMENT_SCHEMA, document)
    if errors:
        return {"valid": False, "manifest": None,
                "problems": [_problem(f"{e['path'] or 'document'}: {e['message']}") for e in errors[:20]]}
    nodes = document["nodes"]
    ids = [n["id"] for n in nodes]
    problems: list[Problem] = []
    seen: set[str] = set()
    for nid in ids:
        if nid in seen:
            problems.append(_problem(f"two stages are named {nid!r}; rename one", nid, "id"))
        seen.add(nid)
    kinds = {n["id"]: n["kind"] for n in nodes}
    edges: list[tuple[str, str]] = []
    for edge in document["edges"]:
        source, target = edge["source"], edge["target"]
        if source not in kinds or target not in kinds:
            problems.append(_problem(f"an edge joins {source!r} to {target!r}, which is not on the canvas",
                                     target if target in kinds else None))
        elif source == target:
            problems.append(_problem("a stage cannot feed itself", target))
        else:
            edges.append((source, target))
    for nid in sorted(_cycle_nodes(list(kinds), edges)):
        problems.append(_problem("this stage is part of a cycle; a workflow cannot loop: remove one of its edges", nid))
    inputs: dict[str, list[str]] = {nid: [] for nid in kinds}
    for source, target in edges:
        inputs[target].append(source)
    status = _once(cluster)
    for node in nodes:
        nid, kind = node["id"], node["kind"]
        if kind not in KIND_TYPES:
            problems.append(_problem(f"kind {kind!r} is unknown; use a kind from the palette", nid))
            continue
        accepted = KIND_TYPES[kind][1]
        if "any" not in accepted and not inputs[nid]:
            problems.append(_problem(f"this input is not connected: connect a stage that gives "
                                     f"{' or '.join(accepted)}", nid, "input"))
        for source in inputs[nid]:
            if not accepts(kind, kinds[source]):
                given = KIND_TYPES[kinds[source]][0]
                problems.append(_problem(f"{source} gives {given}, but a {kind} stage takes "
                                         f"{' or '.join(accepted)}", nid, "input"))
        mapped = node.get("map_over")
        if mapped:
            if kind not in MAPPABLE_KINDS:
                problems.append(_problem(f"a {kind} stage cannot be mapped", nid, "map_over"))
            elif mapped not in inputs[nid]:
                problems.append(_problem(f"mapped over {mapped}, which does not feed this stage: connect it",
                                         nid, "map_over"))
            elif KIND_TYPES[kinds[mapped]][0] != "rows":
                problems.append(_problem(f"mapped over {mapped}, whose output is {KIND_TYPES[kinds[mapped]][0]}, "
                                         "not rows: map over a Dask analysis", nid, "map_over"))
        problems += _node_problems(node, repo, status)
    manifest = None
    if not problems:
        try:
            data = manifest_data(document)
            manifest = dump_manifest(data)
            parse_manifest(data, factory_allowlist=repo.settings.factory_allowlist, policy=repo.settings.stage_policy)
        except TemplateValidationError as err:
            message = str(err)
            node = _which_node(message, ids)
            problems.append(_problem(message, node, None if node else _template_field(message)))
            manifest = None
    return {"valid": not any(p["severity"] == "error" for p in problems), "problems": problems, "manifest": manifest}


def _template_field(message: str) -> str | None:
    for key in ("name", "version", "title", "parameters", "resources", "backends", "entrypoint"):
        if message.startswith((key, f"template {key}", f"{key} ")):
            return key
    if message.startswith("template name"):
        return "name"
    return None


def _once(func: Callable[[], Any]) -> Callable[[], Any]:
    cache: list[Any] = []

    def call() -> Any:
        if not cache:
            try:
                cache.append(func())
            except Exception:
                cache.append(None)
        return cache[0]

    return call
