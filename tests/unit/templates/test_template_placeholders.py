from __future__ import annotations

import pytest

from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.placeholders import find_placeholders, resolve

CTX = {"params": {"n": 4, "name": "a b", "flag": True, "nested": {"k": "v"}}, "resources": {"memory": 1024}, "instance": {"id": "x-1"}}


def test_whole_placeholder_keeps_the_type():
    assert resolve("{{ params.n }}", CTX) == 4
    assert resolve({"a": ["{{params.flag}}"]}, CTX) == {"a": [True]}
    assert resolve("{{ params.nested.k }}", CTX) == "v"


def test_embedded_placeholders_become_text():
    assert resolve("n={{ params.n }} name={{ params.name }} f={{ params.flag }}", CTX) == "n=4 name=a b f=true"
    assert resolve("{{ instance.id }}-{{ resources.memory }}", CTX) == "x-1-1024"


def test_missing_value_is_a_clear_error():
    with pytest.raises(TemplateValidationError, match="params.missing"):
        resolve("{{ params.missing }}", CTX)


def test_values_are_not_rendered_again():
    ctx = {"params": {"evil": "{{ params.n }} {% raw %}"}}
    assert resolve("say {{ params.evil }}", ctx) == "say {{ params.n }} {% raw %}"


@pytest.mark.parametrize("text", ["{{ params.n + 1 }}", "{{ config }}", "{{ params['n'] }}", "{%- if x %}"])
def test_anything_but_a_dotted_path_is_refused(text):
    with pytest.raises(TemplateValidationError):
        resolve(text, CTX)


def test_find_placeholders_reports_locations():
    found = list(find_placeholders({"argv": ["a", "{{ params.n }}"], "env": {"X": "{{ instance.id }}"}}))
    assert found == [("args.argv[1]", "params.n"), ("args.env.X", "instance.id")]
