"""Hostile text in every field of ``container=``, through the operators: refused at parse time with
an :class:`InvalidJobSpecError`, or carried as data into the batch script (run here under bash with
a stand-in ``srun`` and the real job-bundle writer), the bundle's ``config.json``, the local
backend's launcher and the Kubernetes manifest, never creating the sentinel.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from airflow.sdk import DAG
from hypothesis import assume, event, given
from hypothesis import strategies as st

from airflow_provider_hpcai.containers import Container
from airflow_provider_hpcai.containers.local import local_job_launcher
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.kubernetes.manifests import KubernetesSettings, job_manifest
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.slurm.script import build_sbatch_script
from airflow_provider_hpcai.spec import JobSpec
from tests.hostile.payloads import HOSTILE, assert_no_sentinel, hostile_text, newline_bypass

FIELDS = ("image", "mount_source", "mount_target", "mount_string", "workdir", "env_name", "env_value", "runtime")
SRUN = """#!/bin/bash
printf '%s\\0' "$@" > "$CAPTURE/args"
for a in "$@"; do case "$a" in --container=*) cp "${a#--container=}/config.json" "$CAPTURE/config.json";; esac; done
env -0 > "$CAPTURE/env"
"""


def _image(root: Path) -> Path:
    bundle = root / "image" / "bundle"
    for folder in ("usr/bin", "etc", "proc"):
        (bundle / "rootfs" / folder).mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps({"process": {"env": ["PATH=/usr/bin"]}, "root": {"path": "rootfs"},
                                                    "mounts": [{"destination": "/proc", "type": "proc"}]}))
    return bundle


def _container(field: str, value: str, image: str) -> Any:
    c: dict[str, Any] = {"image": image}
    if field == "image":
        c["image"] = value
    elif field == "mount_source":
        c["mounts"] = [{"source": value, "target": "/in"}]
    elif field == "mount_target":
        c["mounts"] = [{"source": "/etc", "target": value}]
    elif field == "mount_string":
        c["mounts"] = [value]
    elif field == "env_name":
        c["env"] = {value: "x"}
    elif field == "env_value":
        c["env"] = {"HOSTILE": value}
    else:
        c[field] = value
    return c


def _operator(container: Any) -> SlurmJobOperator | None:
    try:
        with DAG("hostile_ct", schedule=None):
            return SlurmJobOperator(task_id="t", script="echo ran", container=container)
    except InvalidJobSpecError as err:
        assert "task t" in str(err) and len(str(err)) > 20, "the error says nothing useful"
        return None


@HOSTILE
@given(field=st.sampled_from(FIELDS), value=hostile_text(long=False))
def test_container_fields_are_refused_or_data(field: str, value: str, tmp_path_factory) -> None:
    assume(not newline_bypass(value))
    event(f"{field}: {'accepted, built and run' if _check(field, value, tmp_path_factory) else 'refused'}")


def _check(field: str, value: str, tmp_path_factory: Any) -> bool:
    """Build and run what ``container=`` with ``value`` in ``field`` gives; ``False`` when it is refused."""
    tmp = tmp_path_factory.mktemp("ct")
    image = _image(tmp)
    op = _operator(_container(field, value, str(image)))
    if op is None:
        return False
    spec = JobSpec(name="hostile", script="echo ran\n", container=op.container)
    workdir, capture, bin_dir = tmp / "work", tmp / "capture", tmp / "bin"
    for folder in (workdir, capture, bin_dir):
        folder.mkdir()
    for program in ("srun", "apptainer"):
        (bin_dir / program).write_text(SRUN)
        (bin_dir / program).chmod(0o755)
    try:
        script = build_sbatch_script(spec, str(workdir))
    except InvalidJobSpecError:
        return False  # e.g. a runtime of another backend: refused before anything is built
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "7", "CAPTURE": str(capture)}
    subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, timeout=60, check=False)
    assert_no_sentinel(f"the batch script of {field}={value!r}:\n{script[:3000]}")
    if (capture / "env").exists() and field == "env_value":
        seen = dict(e.split("=", 1) for e in (capture / "env").read_text().split("\0") if "=" in e)
        assert seen.get("HOSTILE") == value  # verbatim, by name through --export / the environment
    if (capture / "config.json").exists():
        config = json.loads((capture / "config.json").read_text())
        for m in op.container.mounts:  # mounts arrive as data in the bundle, unchanged
            assert {"destination": m.target, "source": m.source} in [
                {"destination": x["destination"], "source": x.get("source")} for x in config["mounts"]]
    # The local backend's launcher and the Kubernetes manifest carry the same values as data.
    if op.container.runtime in ("auto", "oci") and op.container.image == str(image):
        job = tmp / "job"
        job.mkdir()
        text = local_job_launcher(op.container, runtime="oci", job_id="abc123", folder=str(job),
                                  script=str(job / "s.sh"), env=dict(op.container.env), python="python3")
        subprocess.run(["bash", "-n", "-c", text], check=True, timeout=30)
        config = json.loads((job / ".hpcai-ct-abc123/bundle/config.json").read_text())
        assert [e for e in config["process"]["env"] if not e.startswith("PATH=")] == [
            f"{k}={v}" for k, v in op.container.env.items()]
    if field in ("env_value", "env_name", "mount_source", "mount_target"):
        k8s = Container.from_dict({**op.container.to_dict(), "image": "registry.example.org/stage:1"})
        manifest = job_manifest(JobSpec(name="h", script="true", container=k8s), KubernetesSettings(namespace="hpc"),
                                name="h-abc12345")
        assert json.loads(json.dumps(manifest)) == manifest
    assert not os.path.exists(workdir / ".hpcai-ct-7")
    return True


def test_accepted_tricky_values_reach_the_job_as_data(tmp_path_factory) -> None:
    """Values the model accepts that still mean something to a shell: they must arrive unchanged."""
    for field, value in (("env_value", "$(touch /tmp/x) `id` ; 'q\" #SBATCH --mem=1"),
                         ("mount_source", "/tmp/a=b@c+d"), ("workdir", "/srv/-rf"), ("env_name", "_A1")):
        assert _check(field, value, tmp_path_factory), f"{field}={value!r} was refused"
