"""``image`` in template.yaml: validated with the manifest (strict schema, Container's checks), and
every job stage of the built DAG runs in it."""

from __future__ import annotations

import json

import pytest

from airflow_provider_hpcai.templates.errors import TemplateValidationError
from airflow_provider_hpcai.templates.manifest import parse_manifest
from airflow_provider_hpcai.templates.programs import StagePolicy
from airflow_provider_hpcai.templates.stages import build_dag

MANIFEST = """\
name: ct
version: 1.0.0
title: In a container
parameters:
  type: object
  properties:
    word: {{type: string, maxLength: 50}}
backends: [{backends}]
{image}
stages:
  - id: job
    kind: slurm_job
    args: {{script: "echo hi"}}
  - id: say
    kind: bash
    args: {{argv: [echo, hi]}}
"""

INSTANCE = {"id": "ct-0123abcd", "dag_id": "tpl_ct_0123abcd", "owner": "alice", "created": "2026-01-01T00:00:00+00:00",
            "params": {"word": "x"}}


def _text(image: object, backends: str = "slurm, local") -> str:
    return MANIFEST.format(image=f"image: {json.dumps(image)}" if image is not None else "", backends=backends)


def test_job_stages_run_in_the_templates_image() -> None:
    image = {"image": "/var/cache/hpcai-image/abc/bundle", "mounts": ["/data:/in"], "env": {"A": "1"}}
    manifest = parse_manifest(_text(image))
    assert manifest.image["image"] == image["image"] and manifest.image["mounts"][0]["target"] == "/in"
    dag = build_dag(manifest, INSTANCE, policy=StagePolicy(bash_programs=("echo",), job_scripts=True))
    job = dag.get_task("job")
    assert job.container.image == image["image"] and job.container.env == {"A": "1"}
    assert not hasattr(dag.get_task("say"), "container")  # a bash stage runs on the worker, as before
    assert build_dag(parse_manifest(_text(None)), INSTANCE,
                     policy=StagePolicy(bash_programs=("echo",), job_scripts=True)).get_task("job").container is None


def test_an_image_reference_alone_is_accepted() -> None:
    assert parse_manifest(_text("python:3.11")).image["image"] == "python:3.11"


@pytest.mark.parametrize(("image", "backends", "message"), [
    ({"image": "/b", "mounts": ["rel:/in"]}, "slurm", "image: .*relative"),
    ({"image": "/b", "privileged": True}, "slurm", "privileged|Additional properties"),  # the strict schema
    ({"image": "/b", "mounts": ["/a/../etc:/in"]}, "slurm", r"image: .*'\.\.'"),
    ("/img/bundle", "slurm, gridengine", "image: .*gridengine backend runs no containers"),
    ("/img/bundle", "kubernetes", "image: .*pulls images from a registry"),
    ({"image": "/b", "runtime": "docker"}, "slurm", "runtime|docker"),
])
def test_bad_images_are_refused_with_the_manifest(image: object, backends: str, message: str) -> None:
    with pytest.raises(TemplateValidationError, match=message):
        parse_manifest(_text(image, backends))
