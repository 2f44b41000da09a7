"""``container=`` through the job operators on the real local Slurm cluster (every transport) and the
local backend: the stage runs in the stage image, checked from inside the job.

The image comes from ``scripts/build-image`` (the session fixture of test_containers_slurm builds it
once when missing). REST jobs run as the unprivileged user ``hpcai``: the batch script then picks
the image's rootless twin ``bundle-hpcai`` by itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.containers import Container, RuntimeNotOfferedError
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from tests.conftest import need_service
from tests.support import FakeStore, make_context

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
log = logging.getLogger(__name__)

TRANSPORTS = ["slurm_local", "slurm_ssh", "slurm_rest"]
PROBE = ('cat /etc/hpcai-image; grep ^PRETTY_NAME= /etc/os-release; echo "note=[$NOTE]"; echo "job=[$JOBVAR]"; '
         'echo "python=$(command -v python)"; echo "pwd=$(pwd)"; echo written-inside > from-the-image.txt')


def _operator(conn_id: str, workdir: str, script: str, container: object, **kwargs: object) -> SlurmJobOperator:
    with DAG(dag_id="it_containers", schedule=None):
        return SlurmJobOperator(task_id=f"ct_{uuid.uuid4().hex[:8]}", slurm_conn_id=conn_id, workdir=workdir,
                                script=script, container=container, deferrable=False, poll_interval=1,
                                **{"job_resources": Resources(memory="256M", time_limit=300), **kwargs})


def _oci_conf(slurm_env: dict[str, str]) -> None:
    conf = Path(slurm_env["SLURM_CONF"]).parent / "oci.conf"
    need_service(conf.is_file(), f"{conf} (scripts/local-slurm up writes it)")


@pytest.mark.parametrize("conn_id", TRANSPORTS)
def test_stage_runs_in_the_image_through_every_transport(conn_id: str, slurm_env, ssh_env, stage_image: Path,
                                                         shared_workdir: str) -> None:
    _oci_conf(slurm_env)
    marker = (stage_image / "bundle/rootfs/etc/hpcai-image").read_text()
    hostile = "it's $(touch /tmp/hpcai-ctj-pwned) `id` ;"
    container = {"image": str(stage_image / "bundle"), "env": {"NOTE": hostile}}
    op = _operator(conn_id, shared_workdir, PROBE, container, environment={"JOBVAR": "a b'c"})
    result = op.execute(make_context(store=FakeStore()))
    out = op.get_backend().hook.read_output(result["stdout_path"]).decode()
    assert result["state"] == "COMPLETED" and result["failure"] is None, (result, out)
    assert marker in out and 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' in out
    assert f"note=[{hostile}]" in out and "job=[a b'c]" in out and not Path("/tmp/hpcai-ctj-pwned").exists()
    assert "python=/opt/hpcai/bin/python" in out  # the image's PATH, not the node's
    assert f"pwd={shared_workdir}" in out and Path(shared_workdir, "from-the-image.txt").read_text() == "written-inside\n"
    # Accounting filled as for a bare job.
    assert result["elapsed_seconds"] is not None and result["node_list"] == slurm_env["HPCAI_SLURM_NODE"]
    assert result["job_id"] and result["transport"]
    assert not [p for p in os.listdir(shared_workdir) if p.startswith(".hpcai-ct-")]  # the job bundle is gone


@pytest.mark.parametrize("conn_id", ["slurm_local", "slurm_rest"])
def test_out_of_memory_in_the_container_is_classified(conn_id: str, slurm_env, stage_image: Path,
                                                      shared_workdir: str) -> None:
    _oci_conf(slurm_env)
    hog = ("python -c 'import time\nb = []\nfor _ in range(40):\n    b.append(bytearray(50 << 20)); time.sleep(0.2)\n"
           "print(\"survived\")'")
    op = _operator(conn_id, shared_workdir, hog, str(stage_image / "bundle"), escalate_on_retry=False,
                   job_resources=Resources(memory="200M", time_limit=300))
    store = FakeStore()
    with pytest.raises(exc.JobOutOfMemory) as err:
        op.execute(make_context(store=store))
    assert store.data["hpcai_job"]["failure"] == "oom"
    assert "memory" in str(err.value)


def test_a_runtime_the_cluster_does_not_offer_fails_before_submission(slurm_env, stage_image: Path,
                                                                      shared_workdir: str, monkeypatch) -> None:
    from airflow_provider_hpcai.backends.slurm import SlurmBackend

    backend = SlurmBackend("slurm_local")
    monkeypatch.setattr(type(backend.hook), "extras", property(lambda self: {"container_runtimes": "oci"}))
    submitted = []
    monkeypatch.setattr(type(backend.hook), "submit", lambda self, *a, **k: submitted.append(a))
    from airflow_provider_hpcai.spec import JobSpec

    spec = JobSpec(name="ct-pyxis", script="true", container=Container(image="docker.io/library/python:3.11",
                                                                       runtime="pyxis"))
    with pytest.raises(RuntimeNotOfferedError, match="not offered.*it offers: oci"):
        backend.submit(spec, workdir=shared_workdir)
    assert not submitted


def test_local_backend_runs_the_stage_in_the_bundle(stage_image: Path, tmp_path: Path) -> None:
    need_service(shutil.which("runc") is not None, "runc")
    from airflow_provider_hpcai.operators.slurm import SlurmJobOperator  # noqa: F401 - same DAG file works

    marker = (stage_image / "bundle/rootfs/etc/hpcai-image").read_text()
    with DAG(dag_id="it_containers_local", schedule=None):
        from airflow_provider_hpcai.operators.base import BaseJobOperator

        class Script(BaseJobOperator):
            def build_script(self, context: object) -> str:
                return PROBE

        op = Script(task_id="probe", backend="local", workdir=str(tmp_path), environment={"JOBVAR": "a b'c"},
                    container={"image": str(stage_image / "bundle"), "env": {"NOTE": "$(id)"}},
                    job_resources=Resources(memory="256M", time_limit=120), poll_interval=0.2)
    start = time.monotonic()
    result = op.execute(make_context(store=FakeStore()))
    out = Path(result["stdout_path"]).read_text()
    assert result["state"] == "COMPLETED", (result, out, Path(result["stderr_path"]).read_text())
    assert marker in out and "note=[$(id)]" in out and "job=[a b'c]" in out
    assert "python=/opt/hpcai/bin/python" in out
    folder = Path(result["stdout_path"]).parent
    assert (folder / "from-the-image.txt").read_text() == "written-inside\n"
    assert result["elapsed_seconds"] is not None and time.monotonic() - start < 120


def _local_op(stage_image: Path, workdir: Path, script: str, **kwargs: object):
    from airflow_provider_hpcai.operators.base import BaseJobOperator

    class Script(BaseJobOperator):
        def build_script(self, context: object) -> str:
            return script

    with DAG(dag_id="it_containers_local", schedule=None):
        return Script(task_id=f"ct_{uuid.uuid4().hex[:8]}", backend="local", workdir=str(workdir),
                      container=str(stage_image / "bundle"), poll_interval=0.2, escalate_on_retry=False,
                      **{"job_resources": Resources(memory="200M", time_limit=120), **kwargs})


def test_local_backend_out_of_memory_in_the_container(stage_image: Path, tmp_path: Path) -> None:
    """The container's processes are in the job's process tree: the memory limit sees and stops them."""
    need_service(shutil.which("runc") is not None, "runc")
    hog = ("python -c 'import time\nb = []\nfor _ in range(40):\n    b.append(bytearray(50 << 20)); time.sleep(0.2)\n"
           "print(\"survived\")'")
    store = FakeStore()
    with pytest.raises(exc.JobOutOfMemory):
        _local_op(stage_image, tmp_path, hog).execute(make_context(store=store))
    assert store.data["hpcai_job"]["failure"] == "oom"
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert "survived" not in "".join(p.read_text() for p in folder.glob("*.out"))
    assert not list(folder.glob(".hpcai-ct-*"))  # bundle and runc state removed


@pytest.mark.parametrize("grace", [5, 0], ids=["trap-stops-it", "no-time-for-the-trap"])
def test_local_backend_cancel_stops_the_container(stage_image: Path, tmp_path: Path, grace: int) -> None:
    """Grace 0 is a loaded machine where the wrapper is SIGKILLed before its trap ran ``runc kill``
    (seen once in make test): the container's processes are in their own session, so cancel
    itself must stop the container."""
    need_service(shutil.which("runc") is not None, "runc")
    from airflow_provider_hpcai.backends.local import LocalBackend
    from airflow_provider_hpcai.spec import JobSpec

    seconds = f"301.{uuid.uuid4().int % 1000:03d}"
    backend = LocalBackend(kill_grace_seconds=grace)
    ref = backend.submit(JobSpec(name="ct-cancel", script=f"sleep {seconds}", container=str(stage_image / "bundle")),
                         workdir=str(tmp_path))
    deadline = time.monotonic() + 30
    import subprocess

    while not subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.3)
    backend.cancel(ref)
    deadline = time.monotonic() + 15
    while subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the container's process outlived the cancel"
        time.sleep(0.3)
    assert backend.status(ref).state == "CANCELLED"
