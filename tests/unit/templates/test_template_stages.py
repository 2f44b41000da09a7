from __future__ import annotations

import subprocess

import pytest

from airflow_provider_hpcai.templates.bash_stage import QuotedBashOperator, build_bash_command
from airflow_provider_hpcai.templates.errors import TemplateError, TemplateValidationError
from airflow_provider_hpcai.templates.manifest import parse_manifest
from airflow_provider_hpcai.templates.programs import StagePolicy
from airflow_provider_hpcai.templates.stages import build_dag

HOSTILE = "$(touch /tmp/hpcai-pwned) `id` ; rm -rf / \n#SBATCH --mem=1T {{ conf }} {% raw %} 'quote\""


def _instance(params, **extra):
    return {"id": "mini-0123abcd", "dag_id": "tpl_mini_0123abcd", "owner": "alice", "created": "2026-01-01T00:00:00+00:00",
            "params": params, **extra}


def test_declarative_stages_become_tasks_in_order(minimal):
    dag = build_dag(parse_manifest(minimal()), _instance({"word": "hi", "count": 2}))
    assert dag.dag_id == "tpl_mini_0123abcd" and dag.schedule is None
    assert {t.task_id for t in dag.tasks} == {"say", "end"}
    say = dag.get_task("say")
    assert isinstance(say, QuotedBashOperator)
    assert say.bash_command == "echo hi 2"
    assert dag.get_task("end").upstream_task_ids == {"say"}
    assert "hpcai-template" in dag.tags and dag.owner == "alice"


def test_hostile_parameter_reaches_the_program_as_one_literal_word(minimal, tmp_path):
    dag = build_dag(parse_manifest(minimal()), _instance({"word": HOSTILE, "count": 1}))
    task = dag.get_task("say")
    assert task.template_fields == ()  # Airflow's Jinja never sees the value
    out = subprocess.run(["bash", "-c", task.bash_command], capture_output=True, text=True, check=True).stdout
    assert out == f"{HOSTILE} 1\n"


def test_build_bash_command_quotes_every_word():
    assert build_bash_command(["echo", "a b", "$(id)"]) == "echo 'a b' '$(id)'"
    with pytest.raises(ValueError):
        build_bash_command([])


def test_missing_operator_kind_gives_a_clear_error(minimal, monkeypatch):
    from airflow_provider_hpcai.templates import stages

    monkeypatch.setitem(stages.STAGE_OPERATORS, "simulation", "airflow_provider_hpcai.no_such_module:Nope")
    text = minimal().replace("kind: empty", "kind: simulation\n    args: {kernel: heat}")
    with pytest.raises(TemplateError, match="cannot be imported"):
        build_dag(parse_manifest(text), _instance({"word": "x", "count": 1}))


def test_jinja_in_values_for_templated_operators_is_refused(minimal):
    text = minimal().replace("kind: empty", 'kind: slurm_job\n    args: {job_name: "{{ params.word }}"}')
    with pytest.raises(TemplateValidationError, match="template syntax"):
        build_dag(parse_manifest(text), _instance({"word": "{{ var.value.secret }}", "count": 1}),
                  policy=StagePolicy(bash_programs=("echo",), job_scripts=True))


def test_entrypoint_factory_builds_the_dag():
    text = (__import__("pathlib").Path(__file__).resolve().parents[3] / "airflow_provider_hpcai/templates/builtin/param-sweep/template.yaml").read_text()
    dag = build_dag(parse_manifest(text), _instance({"points": 2, "label": "run"}))
    assert sorted(t.task_id for t in dag.tasks) == ["gather", "point_0", "point_1"]


def test_entrypoint_allow_list_is_checked_again_at_build_time():
    text = (__import__("pathlib").Path(__file__).resolve().parents[3] / "airflow_provider_hpcai/templates/builtin/param-sweep/template.yaml").read_text()
    manifest = parse_manifest(text)
    with pytest.raises(TemplateValidationError, match="not in an allowed package"):
        build_dag(manifest, _instance({"points": 1, "label": "x"}), factory_allowlist=["dags_templates."])


def test_the_built_in_hello_template_runs_with_the_workers_python(tmp_path):
    """`python3 -m ...` in a bash stage runs the worker's own interpreter, whatever PATH says."""
    import os
    import sys

    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    repo = TemplateRepository(tmp_path, TemplateSettings(root=tmp_path, builtin=True))
    record = repo.instantiate("hello-local", None, {"greeting": "--machine $(id) {{ x }}", "repeats": 2}, "ann")
    dag = build_dag(repo.get("hello-local").manifest, record)
    greet, machine = dag.get_task("greet"), dag.get_task("machine")
    assert greet.worker_command().startswith(sys.executable)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    said = subprocess.run(["bash", "-c", greet.worker_command()], capture_output=True, text=True, env=env, check=True)
    assert said.stdout == "--machine $(id) {{ x }}\n" * 2
    told = subprocess.run(["bash", "-c", machine.worker_command()], capture_output=True, text=True,
                          env={**env, **machine.env}, check=True)
    assert told.stdout.startswith("cpus ") and record["id"] in told.stdout
