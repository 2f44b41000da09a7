"""Each registered backend with a stateful stand-in for its scheduler, behind one harness.

A harness starts jobs that end in a chosen way (``completed``, ``failed``, ``oom``, ``timeout``,
``node_fail``, ``preempted``) after printing chosen output, or jobs that keep running and print
more on demand; everything above the scheduler's seam is the real code (backend, hook, poller,
trigger). Adding a backend: one harness class here and one line in :data:`HARNESSES`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from airflow_provider_hpcai.backends import BACKENDS
from airflow_provider_hpcai.backends.base import JobBackend, JobRef
from airflow_provider_hpcai.jobs.poller import reset_pollers
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec
from airflow_provider_hpcai.triggers.job import JobTrigger

#: Every way a job can end, and the kinds of failure the operator then reports.
ENDINGS = ("completed", "failed", "oom", "timeout", "node_fail", "preempted")


class Harness:
    """A backend and the means to make its jobs behave."""

    name: str
    #: The endings this backend's scheduler can produce.
    endings: tuple[str, ...] = ENDINGS
    backend: JobBackend

    def submit(self, ending: str, output: str = "", *, tag: str | None = None) -> JobRef:
        raise NotImplementedError

    def start(self, output: str, *, tag: str | None = None) -> JobRef:
        """A job that printed ``output`` and keeps running until :meth:`finish`."""
        raise NotImplementedError

    def write(self, ref: JobRef, text: str) -> None:
        """The running job prints ``text``."""
        raise NotImplementedError

    def finish(self, ref: JobRef) -> None:
        """The running job ends successfully."""
        raise NotImplementedError

    def spec(self, name: str, script: str = "true", tag: str | None = None, **resources: Any) -> JobSpec:
        return JobSpec(name=name, script=script, tag=tag, resources=Resources(**resources))


# ------------------------------------------------------------------------------------ Slurm
class SlurmHarness(Harness):
    """The fake Slurm cluster (:class:`tests.fakes.slurm.FakeSlurmTransport`) behind the real hook."""

    name = "slurm"

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from airflow_provider_hpcai.backends.slurm import SlurmBackend
        from airflow_provider_hpcai.hooks.slurm import SlurmHook
        from tests.fakes.slurm import FakeSlurmTransport

        monkeypatch.setattr(SlurmHook, "sleep", staticmethod(lambda seconds: None))
        self.cluster = FakeSlurmTransport()
        self.held: set[str] = set()
        real = self.cluster.statuses

        def statuses(job_ids: Any) -> Any:  # each status query moves every job that is not held one step
            for job in self.cluster.jobs.values():
                if job.job_id not in self.held:
                    self.cluster._step(job)
            return real(job_ids)

        self.cluster.statuses = statuses  # type: ignore[method-assign]
        self.backend = SlurmBackend("slurm_default", hook=SlurmHook(transport=self.cluster))

    def submit(self, ending: str, output: str = "", *, tag: str | None = None) -> JobRef:
        from tests.fakes.slurm import outcome

        kind = {"node_fail": "node_fail", "timeout": "timeout"}.get(ending, ending)
        self.cluster.script_outcomes(dataclasses.replace(outcome(kind, requested_memory_bytes=2**30), stdout=output))
        return self.backend.submit(self.spec(f"c.{ending}", tag=tag, memory="1G"), workdir="/w")

    def start(self, output: str, *, tag: str | None = None) -> JobRef:
        ref = self.backend.submit(self.spec("c.running", tag=tag), workdir="/w")
        self.held.add(ref.job_id)
        self.cluster.advance(ref.job_id)  # RUNNING
        self.cluster.emit(ref.job_id, output)
        return ref

    def write(self, ref: JobRef, text: str) -> None:
        self.cluster.emit(ref.job_id, text)

    def finish(self, ref: JobRef) -> None:
        from tests.fakes.slurm import Outcome

        self.held.discard(ref.job_id)
        self.cluster.finish(ref.job_id, Outcome("COMPLETED"))


# ------------------------------------------------------------------------------------ Kubernetes
class KubernetesHarness(Harness):
    """The fake API server at the cncf hooks' client seam (:mod:`tests.unit.kubernetes.fake_k8s`)."""

    name = "kubernetes"
    _KINDS: ClassVar[dict[str, str]] = {"completed": "succeed", "failed": "fail", "oom": "oom", "timeout": "deadline",
              "node_fail": "node_lost", "preempted": "preempted"}

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from airflow_provider_hpcai.backends.kubernetes import KubernetesBackend
        from tests.unit.kubernetes.fake_k8s import FakeCluster, install

        self.cluster = FakeCluster()
        install(monkeypatch, self.cluster, namespace="hpc")
        monkeypatch.setenv("AIRFLOW__HPCAI__KUBERNETES_IMAGE", "registry.example/hpcai:1.0")
        self.backend = KubernetesBackend()

    def submit(self, ending: str, output: str = "", *, tag: str | None = None) -> JobRef:
        from tests.unit.kubernetes.fake_k8s import Outcome

        self.cluster.plan(Outcome(self._KINDS[ending], log=output or "\n", running_reads=2))
        return self.backend.submit(self.spec(f"c.{ending}", tag=tag, memory="1G"))

    def start(self, output: str, *, tag: str | None = None) -> JobRef:
        from tests.unit.kubernetes.fake_k8s import Outcome

        self.cluster.plan(Outcome("hang", log=output))
        ref = self.backend.submit(self.spec("c.running", tag=tag))
        for _ in range(output.count("\n") + 3):  # each read moves it on: running, its log grown to all of it
            self.backend.status(ref)
        return ref

    def write(self, ref: JobRef, text: str) -> None:
        work = self.cluster.workload(ref.job_id)
        work.outcome.log += text
        self.backend.status(ref)

    def finish(self, ref: JobRef) -> None:
        work = self.cluster.workload(ref.job_id)
        work.outcome.kind, work.outcome.running_reads = "succeed", 0


# ------------------------------------------------------------------------------------ local
class LocalHarness(Harness):
    """Real bash jobs in a temporary folder (the local backend's scheduler is the machine itself)."""

    name = "local"
    endings = ("completed", "failed", "oom", "timeout")  # no nodes to lose, nobody to preempt

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from airflow_provider_hpcai.backends.local import LocalBackend

        self.backend = LocalBackend(base_dir=str(tmp_path), sample_interval=0.05, kill_grace_seconds=2)

    def submit(self, ending: str, output: str = "", *, tag: str | None = None) -> JobRef:
        show = f"printf %s {shlex.quote(output)}"
        py = shlex.quote(sys.executable)
        scripts = {
            "completed": (show, {}),
            "failed": (f"{show}; echo 'ValueError: bad input' >&2; exit 3", {}),
            "oom": (f"{show}; {py} -c 'import time; x = b\"a\" * (300 * 2**20); time.sleep(20)'",
                    {"memory": "100M", "time_limit": 60}),
            "timeout": (f"{show}; sleep 30", {"time_limit": 2}),
        }
        script, resources = scripts[ending]
        return self.backend.submit(self.spec(f"c.{ending}", script, tag=tag, **resources))

    def start(self, output: str, *, tag: str | None = None) -> JobRef:
        script = (f"printf %s {shlex.quote(output)}\n"
                  'while [ ! -e done ]; do if [ -e more ]; then cat more; rm -f more; fi; sleep 0.02; done\n'
                  'if [ -e more ]; then cat more; fi\n')
        ref = self.backend.submit(self.spec("c.running", script, tag=tag))
        out = Path(ref.stdout_path or "")
        for _ in range(500):  # until it printed what it was asked to
            if out.exists() and out.read_bytes() == output.encode():
                break
            import time

            time.sleep(0.01)
        return ref

    def _folder(self, ref: JobRef) -> Path:
        return Path(ref.extra["workdir"])

    def write(self, ref: JobRef, text: str) -> None:
        import time

        folder = self._folder(ref)
        while (folder / "more").exists():
            time.sleep(0.01)
        (folder / "more.tmp").write_text(text)
        os.replace(folder / "more.tmp", folder / "more")
        while (folder / "more").exists():
            time.sleep(0.01)

    def finish(self, ref: JobRef) -> None:
        (self._folder(ref) / "done").touch()


# ------------------------------------------------------------------------------------ Grid Engine
def _gridengine_up() -> bool:
    import subprocess

    env = {**os.environ, "SGE_ROOT": os.environ.get("SGE_ROOT", "/var/lib/gridengine"),
           "SGE_CELL": os.environ.get("SGE_CELL", "default")}
    try:
        return subprocess.run(["qstat", "-f"], capture_output=True, env=env, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class GridEngineHarness(LocalHarness):
    """The real one-node Grid Engine of ``scripts/local-gridengine up`` (``make test`` starts it)."""

    name = "gridengine"
    endings = ("completed", "failed", "oom", "timeout")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from airflow_provider_hpcai.backends.gridengine import GridEngineBackend
        from tests.conftest import need_service

        # make test starts it (scripts/run-tests) and fails here without it; elsewhere a skip
        need_service(_gridengine_up(), "the one-node Grid Engine (scripts/local-gridengine up)")
        self.backend = GridEngineBackend(base_dir=str(tmp_path))

    def submit(self, ending: str, output: str = "", *, tag: str | None = None) -> JobRef:
        if ending != "oom":
            return super().submit(ending, output, tag=tag)
        py = shlex.quote(sys.executable)  # h_vmem caps the address space: the allocation fails
        script = f"printf %s {shlex.quote(output)}; {py} -c 'x = b\"a\" * (600 * 2**20)'"
        return self.backend.submit(self.spec("c.oom", script, tag=tag, memory="300M", time_limit=60))


#: Backend name -> its harness. A new backend adds one line here (and its harness above).
HARNESSES: dict[str, type[Harness]] = {
    "slurm": SlurmHarness,
    "kubernetes": KubernetesHarness,
    "local": LocalHarness,
    "gridengine": GridEngineHarness,
}


def _registered() -> list[str]:
    return sorted(BACKENDS)


@pytest.fixture(params=_registered())
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Harness]:
    """Every registered backend in turn (a backend without a harness fails: add one)."""
    name = request.param
    if name not in HARNESSES:
        pytest.fail(f"backend {name!r} is registered but has no contract harness: add one to "
                    "tests/contract/conftest.py:HARNESSES")
    made = HARNESSES[name](monkeypatch, tmp_path)
    monkeypatch.setattr(JobTrigger, "_backend", lambda self: made.backend)  # the trigger rebuilds it from a name
    monkeypatch.setenv("AIRFLOW__HPCAI__MAX_POLL_INTERVAL", "0.05")
    reset_pollers()
    yield made
    reset_pollers()
