"""Template manifests (``template.yaml``): parsed, checked once, then pure data.

A manifest names the template, describes it for the gallery, declares its parameters as
a JSON Schema, its default resources and the backends it supports, and says how its DAG
is built: either ``entrypoint: "package.module:function"`` (an installed, allow-listed
factory) or ``stages:`` (a declarative graph of allow-listed stage kinds).

Uploaded manifests are data: YAML is read with a safe loader that also refuses aliases,
schemas must not reference anything outside themselves, and nothing in them is executed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import yaml

from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.manifest_schema import (
    BACKENDS,
    BASH_ARGS_SCHEMA,
    ENTRYPOINT_RE,
    MANIFEST_SCHEMA,
    MAX_MANIFEST_BYTES,
    MAX_PARAMS_BYTES,
    NAME_RE,
    SEMVER_RE,
    STAGE_KINDS,
)
from airflow_provider_hpcai.templates.placeholders import find_placeholders

if TYPE_CHECKING:
    from airflow_provider_hpcai.templates.programs import StagePolicy

__all__ = [
    "BACKENDS",
    "MAX_MANIFEST_BYTES",
    "MAX_PARAMS_BYTES",
    "NAME_RE",
    "STAGE_KINDS",
    "Stage",
    "TemplateManifest",
    "check_name",
    "check_version",
    "load_yaml",
    "parse_manifest",
    "semver_key",
    "validate_params",
]

def check_name(name: Any, what: str = "template name") -> str:
    """Return ``name`` if it is a valid template name, else raise with the rule."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TemplateValidationError(
            f"{what} {name!r} is not allowed: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter (no '.', '/', '..' or spaces)"
        )
    return name


def check_version(version: Any) -> str:
    """Return ``version`` if it is a semantic version (``1.2.3``, ``1.0.0-rc.1``), else raise."""
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        raise TemplateValidationError(
            f"version {version!r} was read as a number: quote it and use three parts, e.g. '1.0.0'"
        )
    if not isinstance(version, str) or len(version) > 64 or not SEMVER_RE.match(version):
        raise TemplateValidationError(
            f"version {version!r} is not a semantic version: use MAJOR.MINOR.PATCH such as '1.2.0'"
        )
    return version


def semver_key(version: str) -> tuple[Any, ...]:
    """Sort key following semver precedence (a pre-release sorts before its release)."""
    match = SEMVER_RE.match(version)
    if not match:
        return (-1, -1, -1, 0, ())
    major, minor, patch, pre, _build = match.groups()
    pre_key: tuple[Any, ...] = ()
    if pre:
        pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre_key)


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors/aliases (no 'billion laughs')."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise TemplateValidationError(
                f"YAML aliases ('*name') are not allowed in manifests (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


def load_yaml(text: str | bytes, what: str = "manifest") -> Any:
    """Parse YAML safely, with the size limit and a clear error for malformed input."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_MANIFEST_BYTES:
        raise TemplateValidationError(
            f"{what} is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES} bytes (256 KiB)"
        )
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TemplateValidationError(f"{what} is not UTF-8 text: {err}") from None
    try:
        return yaml.load(decoded, Loader=_NoAliasLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise TemplateValidationError(f"{what} is not valid YAML: {err}") from None
    except RecursionError:
        raise TemplateValidationError(f"{what} is nested too deeply") from None


@dataclasses.dataclass(frozen=True)
class Stage:
    """One node of a declarative stage graph.

    :param id: task id, unique in the template.
    :param kind: one of :data:`STAGE_KINDS`.
    :param depends_on: ids of the stages that must finish first.
    :param args: keyword arguments for the stage (placeholders not yet resolved).
    :param map_over: the stage whose output rows this stage is mapped over (one task per row);
        it is also one of ``depends_on``.
    """

    id: str
    kind: str
    depends_on: tuple[str, ...] = ()
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    map_over: str | None = None


@dataclasses.dataclass(frozen=True)
class TemplateManifest:
    """A validated manifest; build it with :func:`parse_manifest`."""

    name: str
    version: str
    title: str
    parameters: Mapping[str, Any]
    description: str = ""
    domain: str = "general"
    tags: tuple[str, ...] = ()
    maintainer: str = ""
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    backends: tuple[str, ...] = ("local",)
    entrypoint: str | None = None
    stages: tuple[Stage, ...] = ()
    #: The container every job stage runs in (:meth:`Container.to_dict` form), or ``None``.
    image: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def summary(self) -> dict[str, Any]:
        """The fields a gallery card shows (JSON-safe)."""
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "domain": self.domain,
            "tags": list(self.tags),
            "maintainer": self.maintainer,
            "backends": list(self.backends),
            "factory": "entrypoint" if self.entrypoint else "stages",
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole manifest as JSON-safe data (what the YAML said)."""
        return json.loads(json.dumps(dict(self.raw)))


def _schema_errors(schema: Mapping[str, Any], instance: Any) -> list[dict[str, str]]:
    from airflow_provider_hpcai.utils.schema_pattern import validator_class

    validator_type = validator_class()  # `pattern: ^...$` refuses a trailing newline, as JSON Schema means
    validator = validator_type(schema, format_checker=validator_type.FORMAT_CHECKER)
    errors = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        path = "/".join(str(p) for p in error.absolute_path)
        errors.append({"path": path, "message": error.message})
    return errors


def _check_parameters_schema(schema: Mapping[str, Any]) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from airflow_provider_hpcai.utils.schema_pattern import linear_pattern_problem

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise TemplateValidationError(f"parameters is not a valid JSON Schema at {where}: {err.message}") from None
    if schema.get("type") != "object":
        raise TemplateValidationError("parameters must be a JSON Schema with 'type: object' at the top")
    for key, value in _walk(schema):
        if key == "$ref" and (not isinstance(value, str) or not value.startswith("#")):
            raise TemplateValidationError(
                f"parameters: $ref {value!r} points outside the schema; only local refs ('#/...') are allowed"
            )
        if key == "pattern" and isinstance(value, str) and (problem := linear_pattern_problem(value)):
            raise TemplateValidationError(
                f"parameters: pattern {value!r} cannot be used ({problem}); patterns run on a linear-time "
                "engine, so write them without look-around or back-references"
            )


def _walk(node: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _check_stages(
    raw_stages: list[dict[str, Any]], param_names: set[str] | None, policy: StagePolicy | None = None
) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_stages):
        stage = Stage(
            id=item["id"],
            kind=item["kind"],
            depends_on=tuple(item.get("depends_on") or ()),
            args=item.get("args") or {},
            map_over=item.get("map_over"),
        )
        where = f"stages[{index}] ({stage.id})"
        if stage.id in seen:
            raise TemplateValidationError(f"{where}: the stage id is used twice; ids must be unique")
        seen.add(stage.id)
        if stage.kind == "bash":
            errors = _schema_errors(BASH_ARGS_SCHEMA, dict(stage.args))
            if errors:
                detail = "; ".join(f"{e['path'] or 'args'}: {e['message']}" for e in errors)
                raise TemplateValidationError(
                    f"{where}: bash stages take 'argv' (a list of words, quoted for you) and optional "
                    f"'env'; {detail}"
                )
        elif stage.kind == "empty" and stage.args:
            raise TemplateValidationError(f"{where}: 'empty' stages take no args")
        elif stage.kind in ("dask_analysis", "template"):
            _check_kind_args(stage, where)
        if policy is not None:
            policy.check(stage.kind, dict(stage.args), where)
        for location, path in find_placeholders(dict(stage.args), f"{where}.args"):
            parts = path.split(".")
            if parts[0] == "params" and param_names is not None and len(parts) > 1 and parts[1] not in param_names:
                raise TemplateValidationError(
                    f"{location}: '{{{{ {path} }}}}' names no parameter; declared: {sorted(param_names)}"
                )
        stages.append(stage)
    for stage in stages:
        for dep in stage.depends_on:
            if dep not in seen:
                raise TemplateValidationError(f"stage {stage.id!r} depends on unknown stage {dep!r}")
            if dep == stage.id:
                raise TemplateValidationError(f"stage {stage.id!r} depends on itself")
        if stage.map_over is not None and stage.map_over not in stage.depends_on:
            raise TemplateValidationError(
                f"stage {stage.id!r} is mapped over {stage.map_over!r}, which it does not depend on; "
                f"add {stage.map_over!r} to its depends_on"
            )
    _check_mapping(stages)
    _check_acyclic(stages)
    return tuple(stages)


def _check_kind_args(stage: Stage, where: str) -> None:
    from airflow_provider_hpcai.templates.stage_kinds import DASK_ARGS_SCHEMA, TEMPLATE_ARGS_SCHEMA

    schema = DASK_ARGS_SCHEMA if stage.kind == "dask_analysis" else TEMPLATE_ARGS_SCHEMA
    errors = _schema_errors(schema, dict(stage.args))
    if errors:
        detail = "; ".join(f"{e['path'] or 'args'}: {e['message']}" for e in errors[:5])
        raise TemplateValidationError(f"{where}: {detail}")
    if stage.kind == "template":
        check_version(stage.args["version"])


def _check_mapping(stages: list[Stage]) -> None:
    from airflow_provider_hpcai.templates.stage_kinds import KIND_TYPES, MAPPABLE_KINDS

    kinds = {s.id: s.kind for s in stages}
    for stage in stages:
        if stage.map_over is None:
            continue
        if stage.kind not in MAPPABLE_KINDS:
            raise TemplateValidationError(
                f"stage {stage.id!r} ({stage.kind}) cannot be mapped; only {', '.join(sorted(MAPPABLE_KINDS))} "
                "stages run once per row of another stage's output"
            )
        source = kinds.get(stage.map_over)
        if source is not None and KIND_TYPES[source][0] != "rows":
            raise TemplateValidationError(
                f"stage {stage.id!r} is mapped over {stage.map_over!r}, a {source} stage, whose output is "
                f"{KIND_TYPES[source][0]}, not rows; map over a dask_analysis stage"
            )


def _check_acyclic(stages: list[Stage]) -> None:
    indegree = {s.id: len(set(s.depends_on)) for s in stages}
    children: dict[str, list[str]] = {s.id: [] for s in stages}
    for stage in stages:
        for dep in set(stage.depends_on):
            children[dep].append(stage.id)
    ready = [sid for sid, deg in indegree.items() if deg == 0]
    done = 0
    while ready:
        current = ready.pop()
        done += 1
        for child in children[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if done != len(stages):
        cycle = sorted(sid for sid, deg in indegree.items() if deg > 0)
        raise TemplateValidationError(f"the stages form a cycle through {cycle}; a DAG cannot loop")


def parse_manifest(
    source: str | bytes | Mapping[str, Any],
    *,
    factory_allowlist: Iterable[str] | None = None,
    policy: StagePolicy | None = None,
) -> TemplateManifest:
    """Parse and check a manifest.

    :param source: YAML text (or bytes), or an already-loaded mapping.
    :param factory_allowlist: module prefixes an ``entrypoint`` must start with; ``None``
        reads them from the settings.
    :param policy: when given, what stages may do (:mod:`.programs`); publishing passes the
        settings' policy, reading a published version does not (it is checked again at build time).
    :raises TemplateValidationError: naming every problem found in the manifest's shape, or
        the first deeper problem (version, schema, stage graph, factory, resources).
    """
    data = dict(source) if isinstance(source, Mapping) else load_yaml(source)
    if not isinstance(data, dict):
        raise TemplateValidationError("the manifest must be a YAML mapping (name: ..., version: ...)")
    errors = _schema_errors(MANIFEST_SCHEMA, data)
    if errors:
        detail = "; ".join(f"{e['path'] or '(top)'}: {e['message']}" for e in errors[:10])
        raise TemplateValidationError(f"the manifest is not valid: {detail}", errors)
    check_name(data["name"])
    check_version(data["version"])
    _check_parameters_schema(data["parameters"])
    has_entry, has_stages = "entrypoint" in data, "stages" in data
    if has_entry == has_stages:
        raise TemplateValidationError(
            "the manifest needs exactly one factory: 'entrypoint: package.module:function' or 'stages: [...]'"
        )
    if has_entry:
        _check_entrypoint(data["entrypoint"], factory_allowlist)
    properties = data["parameters"].get("properties")
    param_names = set(properties) if isinstance(properties, Mapping) else None
    stages = _check_stages(data["stages"], param_names, policy) if has_stages else ()
    resources = data.get("resources") or {}
    from airflow_provider_hpcai.exceptions import InvalidJobSpecError
    from airflow_provider_hpcai.resources import Resources

    try:
        Resources.from_dict(dict(resources))
    except InvalidJobSpecError as err:
        raise TemplateValidationError(f"resources: {err}") from None
    image = _check_image(data.get("image"), tuple(data.get("backends") or ("local",)))
    try:
        json.dumps(data)
    except (TypeError, ValueError) as err:
        raise TemplateValidationError(
            f"the manifest holds a value JSON cannot represent ({err}); quote dates and times"
        ) from None
    return TemplateManifest(
        name=data["name"],
        version=data["version"],
        title=data["title"],
        parameters=data["parameters"],
        description=data.get("description", ""),
        domain=data.get("domain", "general"),
        tags=tuple(data.get("tags") or ()),
        maintainer=data.get("maintainer", ""),
        resources=dict(resources),
        backends=tuple(data.get("backends") or ("local",)),
        entrypoint=data.get("entrypoint"),
        stages=stages,
        image=image,
        raw=data,
    )


def _check_image(value: Any, backends: tuple[str, ...]) -> dict[str, Any] | None:
    """``image:`` (a reference or bundle path, or the container's fields) checked like ``container=``."""
    if value is None:
        return None
    from airflow_provider_hpcai.containers.runtime import container_for_backend
    from airflow_provider_hpcai.exceptions import InvalidJobSpecError

    try:
        container = None
        for backend in backends:
            container = container_for_backend(value, backend)
    except InvalidJobSpecError as err:
        raise TemplateValidationError(f"image: {err}") from None
    return container.to_dict() if container is not None else None


def _check_entrypoint(entrypoint: str, allowlist: Iterable[str] | None) -> None:
    if not ENTRYPOINT_RE.match(entrypoint):
        raise TemplateValidationError(
            f"entrypoint {entrypoint!r} must look like 'package.module:function'"
        )
    if allowlist is None:
        from airflow_provider_hpcai.templates.settings import load_settings

        allowlist = load_settings().factory_allowlist
    prefixes = tuple(allowlist)
    module = entrypoint.split(":", 1)[0] + "."
    if not any(module.startswith(prefix if prefix.endswith(".") else prefix + ".") for prefix in prefixes):
        raise TemplateValidationError(
            f"entrypoint {entrypoint!r} is not in an allowed package; allowed prefixes: {list(prefixes)} "
            "(an administrator can extend [hpcai] template_factory_allowlist)"
        )


def _check_text_values(value: Any, path: str = "params") -> None:
    """Parameter text must be UTF-8 without NUL bytes: it reaches commands and files."""
    if isinstance(value, str):
        if "\x00" in value:
            raise TemplateValidationError(f"{path} contains a NUL byte, which no command or file can carry")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise TemplateValidationError(f"{path} is not valid UTF-8 text") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_text_values(key, f"{path} key")
            _check_text_values(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_text_values(item, f"{path}[{index}]")


def validate_params(manifest: TemplateManifest, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``params`` against the template's schema and return them with defaults filled in.

    :raises TemplateValidationError: with one ``{"path", "message"}`` entry per problem in
        ``errors`` (the form shows them beside each field).
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TemplateValidationError(f"params must be a mapping, not {type(params).__name__}")
    try:
        size = len(json.dumps(params))
    except (TypeError, ValueError) as err:
        raise TemplateValidationError(f"params must be JSON data: {err}") from None
    if size > MAX_PARAMS_BYTES:
        raise TemplateValidationError(f"params are {size} bytes as JSON; the limit is {MAX_PARAMS_BYTES}")
    _check_text_values(params)
    filled = dict(params)
    properties = manifest.parameters.get("properties")
    if isinstance(properties, Mapping):
        for key, spec in properties.items():
            if key not in filled and isinstance(spec, Mapping) and "default" in spec:
                filled[key] = json.loads(json.dumps(spec["default"]))
    errors = _schema_errors(manifest.parameters, filled)
    if errors:
        detail = "; ".join(f"{e['path'] or '(top)'}: {e['message']}" for e in errors[:10])
        raise TemplateValidationError(
            f"parameters for {manifest.name} {manifest.version} are not valid: {detail}", errors
        )
    return filled
