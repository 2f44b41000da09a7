"""Hostile input to the Kubernetes manifest builders and the workflow-template repository.

Manifests carry the job's script and environment as data (one argv element, ``env[].value``);
names, labels, images and namespaces are refused unless they are valid Kubernetes values.
Template manifests are data: YAML tags, aliases, non-UTF-8 text and Jinja are refused; a
parameter reaches a bash stage's program as one literal word (run here in bash); and the
repository's files do not change when anything is refused.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.kubernetes.manifests import (
    KubernetesSettings,
    check_image,
    job_manifest,
    workload_name,
)
from airflow_provider_hpcai.kubernetes.mpijob import mpijob_manifest
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from airflow_provider_hpcai.templates.bash_stage import QuotedBashOperator, build_bash_command
from airflow_provider_hpcai.templates.errors import TemplateError, TemplateValidationError
from airflow_provider_hpcai.templates.manifest import check_name, check_version, load_yaml, parse_manifest
from airflow_provider_hpcai.templates.placeholders import resolve
from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import DEFAULT_FACTORY_ALLOWLIST, TemplateSettings
from tests.hostile.payloads import (
    HOSTILE,
    SENTINEL,
    assert_no_sentinel,
    hostile_names,
    hostile_text,
    injection,
    newline_bypass,
)

TAG = make_tag("dag", "k8s", "run")
SETTINGS = KubernetesSettings(namespace="hpc", image="registry.example/sim:1.0")
ROOT = Path(__file__).resolve().parents[2]

MANIFEST = """\
name: echoer
version: 1.0.0
title: Echo
parameters:
  type: object
  additionalProperties: false
  properties:
    word: {type: string, maxLength: 100000}
stages:
  - id: say
    kind: bash
    args:
      argv: [printf, "%s\\\\0", "{{ params.word }}", "prefix-{{ params.word }}-suffix"]
      env: {WORD: "{{ params.word }}"}
"""


def _tree(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture()
def repo(tmp_path: Path) -> TemplateRepository:
    settings = TemplateSettings(root=tmp_path / "repo", factory_allowlist=DEFAULT_FACTORY_ALLOWLIST)
    repository = TemplateRepository(settings.root, settings)
    repository.publish(MANIFEST, publisher="seed")
    return repository


# ------------------------------------------------------------------------------- Kubernetes
@HOSTILE
@given(script=injection(), value=hostile_text(long=False), nodes=st.sampled_from([1, 2]))
def test_manifests_carry_script_and_environment_as_data(script: str, value: str, nodes: int) -> None:
    assume("\x00" not in value and "\x00" not in script)
    try:
        spec = JobSpec(name="k8s-" + str(nodes), script=script, tag=TAG, environment={"HOSTILE": value},
                       resources=Resources(nodes=nodes, ntasks=nodes))
    except InvalidJobSpecError:
        return  # refused with the provider's clear error: also an acceptable outcome
    name = workload_name(spec.name, suffix="abcd1234", max_len=45)
    manifest = (job_manifest if nodes == 1 else mpijob_manifest)(spec, SETTINGS, name=name)
    text = json.dumps(manifest)
    back = json.loads(text)
    containers = ([back["spec"]["template"]["spec"]["containers"][0]] if nodes == 1 else
                  [back["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]])
    for container in containers:
        assert container["command"] == ["/bin/bash", "-c", script]
        assert {"name": "HOSTILE", "value": value} in container["env"]
    assert back["metadata"]["annotations"]["hpcai.io/job-name"] == spec.name


@HOSTILE
@given(name=hostile_names())
def test_workload_names_are_always_dns_labels(name: str) -> None:
    import re

    made = workload_name(name, suffix="zz9")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", made) and len(made) <= 63


@HOSTILE
@given(field=st.sampled_from(["namespace", "service_account", "priority_class", "gpu_priority_class", "image",
                              "node_selector_key", "node_selector_value", "image_pull_secret"]),
       value=hostile_names())
def test_kubernetes_settings_refuse_hostile_names(field: str, value: str) -> None:
    assume(not newline_bypass(value))
    kwargs: dict[str, Any] = {"namespace": "hpc"}
    if field == "node_selector_key":
        kwargs["node_selector"] = {value: "x"}
    elif field == "node_selector_value":
        kwargs["node_selector"] = {"pool": value}
    elif field == "image_pull_secret":
        kwargs["image_pull_secrets"] = (value,)
    else:
        kwargs[field] = value
    try:
        KubernetesSettings(**kwargs)
    except InvalidJobSpecError:
        return
    assert not any(c in value for c in " \n\r\x00`$;'\"<>|&()\\"), value


@HOSTILE
@given(image=hostile_names())
def test_images_are_refused_unless_references(image: str) -> None:
    assume(not newline_bypass(image))
    try:
        check_image(image)
    except InvalidJobSpecError:
        return
    assert not any(c in image for c in " \n\x00`$;'\"<>|&()\\")


def test_kubernetes_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(InvalidJobSpecError):
        KubernetesSettings(namespace="hpc\n")


# ------------------------------------------------------------------------------- manifests and YAML
YAML_ATTACKS = [
    "!!python/object/apply:os.system ['touch {s}']",
    "name: !!python/object/apply:subprocess.check_output [['touch', '{s}']]",
    "a: &x [1]\nb: *x",
    "name: !!binary dG91Y2g=",
    "? !!python/name:os.system\n: x",
]


@pytest.mark.parametrize("text", YAML_ATTACKS)
def test_yaml_tags_and_aliases_are_refused_and_never_run(text: str) -> None:
    with pytest.raises(TemplateValidationError):
        parse_manifest(text.format(s=SENTINEL))
    assert not SENTINEL.exists()


@pytest.mark.parametrize("raw", [b"\xff\xfe name: x", b"name: caf\xe9", "x" * 300_000, b"[" * 100_000])
def test_bad_bytes_and_huge_manifests_are_refused(raw: bytes | str) -> None:
    with pytest.raises(TemplateValidationError):
        load_yaml(raw)


@HOSTILE
@given(name=hostile_names(), version=hostile_names())
def test_template_names_and_versions_cannot_name_other_paths(name: str, version: str) -> None:
    assume(not newline_bypass(name) and not newline_bypass(version))
    for check, value in ((check_name, name), (check_version, version)):
        try:
            checked = check(value)
        except TemplateValidationError:
            continue
        assert "/" not in checked and ".." not in checked and "\x00" not in checked and "\n" not in checked


@HOSTILE
@given(field=st.sampled_from(["entrypoint", "stage_id", "argv_jinja", "env_name", "ref", "kind", "depends_on"]),
       value=hostile_names())
def test_hostile_manifests_are_refused_and_the_repository_is_unchanged(field: str, value: str,
                                                                        tmp_path_factory) -> None:
    assume(not newline_bypass(value))
    root = tmp_path_factory.mktemp("r")
    repository = TemplateRepository(root, TemplateSettings(root=root, factory_allowlist=DEFAULT_FACTORY_ALLOWLIST))
    repository.publish(MANIFEST, publisher="seed")
    before = _tree(root)
    data = load_yaml(MANIFEST)
    data["version"] = "2.0.0"
    stage = data["stages"][0]
    if field == "entrypoint":
        data.pop("stages")
        data["entrypoint"] = value
    elif field == "stage_id":
        stage["id"] = value
    elif field == "argv_jinja":
        stage["args"]["argv"].append("{{ " + value + " }}")
    elif field == "env_name":
        stage["args"]["env"] = {value: "x"}
    elif field == "ref":
        data["parameters"]["properties"]["word"] = {"$ref": "file:///etc/passwd#" + value}
    elif field == "kind":
        stage["kind"] = value
    else:
        stage["depends_on"] = [value]
    try:
        repository.publish(json.dumps(data))
    except TemplateValidationError:
        assert _tree(root) == before
        return
    # accepted: the hostile value was harmless data (a valid stage id, env name...)
    assert field in ("stage_id", "env_name")


# ------------------------------------------------------------------------------- placeholders and bash stages
@HOSTILE
@given(word=hostile_text(long=False))
def test_parameters_reach_the_bash_program_as_literal_words(word: str, repo: TemplateRepository,
                                                             tmp_path_factory) -> None:
    from airflow_provider_hpcai.templates.stages import build_dag

    assume("\x00" not in word)  # see test_a_nul_byte_parameter_is_refused_when_instantiating
    before = _tree(repo.root)
    try:
        record = repo.instantiate("echoer", None, {"word": word}, "alice")
    except TemplateError:
        assert _tree(repo.root) == before
        return
    template = repo.get("echoer")
    dag = build_dag(template.manifest, record)
    task = dag.get_task("say")
    assert isinstance(task, QuotedBashOperator) and task.template_fields == ()
    proc = subprocess.run(["bash", "-c", task.bash_command], capture_output=True, cwd=tmp_path_factory.mktemp("b"),
                          env={"PATH": "/usr/bin:/bin", **task.env}, timeout=20, check=False)
    assert_no_sentinel(task.bash_command)
    assert proc.stdout.split(b"\x00")[:-1] == [w.encode("utf-8", "surrogateescape")
                                                for w in (word, f"prefix-{word}-suffix")]
    assert task.env["WORD"] == word


def test_a_nul_byte_parameter_is_refused_when_instantiating(repo: TemplateRepository) -> None:
    from airflow_provider_hpcai.templates.stages import build_dag

    before = _tree(repo.root)
    try:
        record = repo.instantiate("echoer", None, {"word": "a\x00b"}, "alice")
    except TemplateValidationError:
        assert _tree(repo.root) == before
        return
    build_dag(repo.get("echoer").manifest, record)  # what the loader does at the next parse


@HOSTILE
@given(value=hostile_text(long=False))
def test_placeholder_values_are_never_re_expanded(value: str) -> None:
    context = {"params": {"a": value + "{{ params.b }}", "b": "$(touch " + str(SENTINEL) + ")"},
               "resources": {}, "instance": {"id": "x"}}
    assert resolve("<{{ params.a }}>", context) == f"<{value}{{{{ params.b }}}}>"


@pytest.mark.parametrize("text", ["{{ params.a | attr('x') }}", "{% for x in y %}", "{# c #}", "{{ config }}",
                                  "{{ params.__class__ }}", "{{params.a()}}", "{{ lipsum.__globals__ }}"])
def test_placeholders_refuse_anything_but_a_dotted_path(text: str) -> None:
    with pytest.raises(TemplateValidationError):
        resolve(text, {"params": {"a": 1}, "resources": {}, "instance": {}})


@pytest.mark.parametrize("words", [["echo", "a\x00b"], [""], []])
def test_bash_commands_refuse_nul_and_empty_programs(words: list[str]) -> None:
    with pytest.raises(ValueError):
        build_bash_command(words)


def test_jinja_in_parameters_is_refused_for_operators_that_render_it(tmp_path: Path) -> None:
    """A slurm_job stage renders Jinja in its fields: a parameter holding '{{' is refused."""
    text = MANIFEST.replace("kind: bash", "kind: slurm_job").replace(
        '      argv: [printf, "%s\\\\0", "{{ params.word }}", "prefix-{{ params.word }}-suffix"]\n'
        '      env: {WORD: "{{ params.word }}"}\n',
        '      script: "echo hi"\n      environment: {WORD: "{{ params.word }}"}\n')
    repository = TemplateRepository(tmp_path / "r", TemplateSettings(root=tmp_path / "r", job_scripts=True))
    repository.publish(text)
    before = _tree(tmp_path / "r")
    with pytest.raises(TemplateValidationError, match="template syntax"):
        repository.instantiate("echoer", None, {"word": "{{ conf.get('secret') }}"}, "alice")
    assert _tree(tmp_path / "r") == before


# ------------------------------------------------------------------------------- repository paths
@HOSTILE
@given(name=hostile_names(), version=hostile_names(), instance_id=hostile_names())
def test_repository_lookups_refuse_paths_and_change_nothing(name: str, version: str, instance_id: str,
                                                           repo: TemplateRepository) -> None:
    assume(not any(newline_bypass(v) for v in (name, version, instance_id)))
    before = _tree(repo.root)
    calls = [lambda: repo.get(name, version), lambda: repo.versions(name),
             lambda: repo.deprecate(name, version, reason="x"), lambda: repo.get_instance(instance_id),
             lambda: repo.delete_instance(instance_id),
             lambda: repo.instantiate("echoer", version, {"word": "w"}, "alice", dag_id=name)]
    for call in calls:
        try:
            call()
        except TemplateError:
            continue
    after = _tree(repo.root)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert all(k.startswith("instances/") for k in changed), changed  # only a valid instantiate may add one
    assert all(not k.startswith(("..", "/")) for k in after)


@HOSTILE
@given(field=st.sampled_from(["partition", "account", "memory", "time_limit", "nodes", "constraint", "$(x)"]),
       value=st.one_of(hostile_names(), st.integers(-5, 0)))
def test_instance_resource_overrides_are_validated(field: str, value: Any, repo: TemplateRepository) -> None:
    assume(not newline_bypass(value))
    before = _tree(repo.root)
    try:
        record = repo.instantiate("echoer", None, {"word": "w"}, "alice", resources={field: value})
    except TemplateValidationError:
        assert _tree(repo.root) == before
        return
    assert record["resources"] == {field: value}
    Resources.from_dict(record["resources"])  # what the DAG will use is a valid request
    assert not any(c in str(value) for c in "\n\r\x00`$;'\"<> \\")


def test_instance_resource_overrides_refuse_a_trailing_newline(repo: TemplateRepository) -> None:
    before = _tree(repo.root)
    with pytest.raises(TemplateValidationError):
        repo.instantiate("echoer", None, {"word": "w"}, "alice", resources={"partition": "debug\n"})
    assert _tree(repo.root) == before


def test_quoted_bash_command_equals_shlex_join() -> None:
    words = ["printf", "%s", "$(touch x)", "a'b", "\n"]
    assert build_bash_command(words) == shlex.join(words)
