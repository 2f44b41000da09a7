from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.manifest import (
    MAX_MANIFEST_BYTES,
    check_name,
    parse_manifest,
    semver_key,
    validate_params,
)

BUILTIN = Path(__file__).resolve().parents[3] / "airflow_provider_hpcai/templates/builtin"


@pytest.mark.parametrize("folder", sorted(p.name for p in BUILTIN.iterdir() if (p / "template.yaml").exists()))
def test_builtin_templates_are_valid(folder):
    manifest = parse_manifest((BUILTIN / folder / "template.yaml").read_bytes())
    assert manifest.name == folder
    assert manifest.title and manifest.description


def test_minimal_manifest_fields(minimal):
    m = parse_manifest(minimal())
    assert (m.name, m.version, m.domain, m.backends) == ("mini", "1.0.0", "general", ("local",))
    assert [s.id for s in m.stages] == ["say", "end"]
    assert m.stages[1].depends_on == ("say",)


@pytest.mark.parametrize("name", ["..", "a/b", "../etc", "Upper", "1abc", "a" * 65, "", "a b", "a.b"])
def test_bad_names_are_refused(name, minimal):
    with pytest.raises(TemplateValidationError, match="not allowed"):
        check_name(name)
    with pytest.raises(TemplateValidationError):
        parse_manifest(minimal().replace("name: mini", f"name: {name!r}"))


@pytest.mark.parametrize("version,hint", [("1.0", "number"), ("1", "number"), ("'1.0'", "semantic"), ("v1.0.0", "semantic"), ("01.0.0", "semantic")])
def test_versions_must_be_semver(version, hint, minimal):
    with pytest.raises(TemplateValidationError, match=hint):
        parse_manifest(minimal(version=version))


def test_semver_ordering():
    versions = ["1.0.0", "1.0.0-rc.1", "1.10.0", "1.2.0", "1.0.0-alpha", "1.0.0-rc.2", "2.0.0-beta.11", "2.0.0-beta.2"]
    assert sorted(versions, key=semver_key) == [
        "1.0.0-alpha", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.2.0", "1.10.0", "2.0.0-beta.2", "2.0.0-beta.11",
    ]


def test_malformed_yaml_is_a_clear_error():
    with pytest.raises(TemplateValidationError, match="not valid YAML"):
        parse_manifest("name: [unclosed\n")


def test_yaml_aliases_are_refused():
    bomb = 'a: &a ["x", "x"]\nb: &b [*a, *a]\nname: mini\n'
    with pytest.raises(TemplateValidationError, match="aliases"):
        parse_manifest(bomb)


def test_python_tags_are_not_executed():
    with pytest.raises(TemplateValidationError, match="not valid YAML"):
        parse_manifest("name: !!python/object/apply:os.system ['touch /tmp/pwned']\n")


def test_oversized_manifest(minimal):
    text = minimal() + "description: " + "x" * MAX_MANIFEST_BYTES + "\n"
    with pytest.raises(TemplateValidationError, match="limit is"):
        parse_manifest(text)


def test_unknown_top_level_key_is_named(minimal):
    with pytest.raises(TemplateValidationError, match="stagez"):
        parse_manifest(minimal() + "stagez: []\n")


def test_bad_parameter_schema(minimal):
    text = minimal().replace("maxLength: 50", "maxLength: -3")
    with pytest.raises(TemplateValidationError, match="not a valid JSON Schema"):
        parse_manifest(text)


def test_parameters_must_be_an_object_schema():
    with pytest.raises(TemplateValidationError):
        parse_manifest("name: x\nversion: 1.0.0\ntitle: t\nparameters: {type: string}\nstages: [{id: a, kind: empty}]\n")


def test_remote_refs_are_refused(minimal):
    text = minimal().replace("{type: string, maxLength: 50}", "{$ref: 'https://example.com/schema.json'}")
    with pytest.raises(TemplateValidationError, match="outside the schema"):
        parse_manifest(text)


def test_exactly_one_factory(minimal):
    both = minimal() + "entrypoint: airflow_provider_hpcai.templates.examples:parameter_sweep\n"
    with pytest.raises(TemplateValidationError, match="exactly one factory"):
        parse_manifest(both)


def test_entrypoint_must_be_allow_listed(minimal):
    text = minimal().split("stages:")[0] + "entrypoint: os:system\n"
    with pytest.raises(TemplateValidationError, match="not in an allowed package"):
        parse_manifest(text, factory_allowlist=["airflow_provider_hpcai."])
    # a prefix must match whole module path parts
    text = minimal().split("stages:")[0] + "entrypoint: airflow_provider_hpcai_evil.x:f\n"
    with pytest.raises(TemplateValidationError, match="not in an allowed package"):
        parse_manifest(text, factory_allowlist=["airflow_provider_hpcai."])


def test_stage_graph_checks(minimal):
    with pytest.raises(TemplateValidationError, match="unknown stage"):
        parse_manifest(minimal().replace("depends_on: [say]", "depends_on: [nope]"))
    cyclic = minimal().replace("      argv: [echo", "    depends_on: [end]\n    args:\n      argv: [echo").replace(
        "  - id: say\n    kind: bash\n    args:\n", "  - id: say\n    kind: bash\n"
    )
    with pytest.raises(TemplateValidationError, match="cycle"):
        parse_manifest(cyclic)
    with pytest.raises(TemplateValidationError, match="used twice"):
        parse_manifest(minimal().replace("id: end", "id: say"))


def test_unknown_stage_kind(minimal):
    with pytest.raises(TemplateValidationError, match="kind"):
        parse_manifest(minimal().replace("kind: empty", "kind: python_callable"))


def test_bash_stage_needs_an_argv_list(minimal):
    text = minimal().replace('argv: [echo, "{{ params.word }}", "{{ params.count }}"]', 'bash_command: "echo hi; rm -rf /"')
    with pytest.raises(TemplateValidationError, match="argv"):
        parse_manifest(text)


def test_placeholders_must_name_declared_parameters(minimal):
    with pytest.raises(TemplateValidationError, match="names no parameter"):
        parse_manifest(minimal().replace("params.count", "params.cuont"))


@pytest.mark.parametrize("text", ["{{ params.word | upper }}", "{% for x in y %}", "{{ ''.__class__ }}", "{# c #}"])
def test_jinja_in_args_is_refused(text, minimal):
    with pytest.raises(TemplateValidationError, match="not a placeholder"):
        parse_manifest(minimal().replace('"{{ params.word }}"', repr(text)))


def test_resources_are_checked(minimal):
    with pytest.raises(TemplateValidationError, match="resources"):
        parse_manifest(minimal() + "resources: {memory: lots}\n")
    with pytest.raises(TemplateValidationError, match="unknown resource"):
        parse_manifest(minimal() + "resources: {ram: 4G}\n")


def test_validate_params_fills_defaults_and_lists_every_error(minimal):
    m = parse_manifest(minimal())
    assert validate_params(m, {"word": "hi"}) == {"word": "hi", "count": 1}
    with pytest.raises(TemplateValidationError) as info:
        validate_params(m, {"count": 9, "extra": 1})
    paths = {e["path"] for e in info.value.errors}
    messages = " ".join(e["message"] for e in info.value.errors)
    assert "count" in paths and "'word' is a required property" in messages and "extra" in messages


def test_params_must_be_json_and_small(minimal):
    m = parse_manifest(minimal())
    with pytest.raises(TemplateValidationError, match="JSON"):
        validate_params(m, {"word": object()})
    with pytest.raises(TemplateValidationError, match="limit"):
        validate_params(m, {"word": "x" * 70_000})
