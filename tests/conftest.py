"""Shared test fixtures: real-service discovery and small Airflow stand-ins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: `make test` sets this: missing services are then failures, never silent skips.
REQUIRE_SERVICES = os.environ.get("HPCAI_REQUIRE_SERVICES") == "1"


def need_service(available: bool, what: str) -> None:
    """Skip (locally) or fail (under `make test`) when a real service is missing."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is not available, but make test requires it")
    pytest.skip(f"{what} is not available (run `make cluster`)")


def _script_env(script: str) -> dict[str, str]:
    """The variables ``scripts/<script> env`` exports, set in this process too."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / script), "env"], capture_output=True, text=True,
                         check=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True, text=True).stdout
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """The local cluster's environment (scripts/local-slurm env), or a skip/fail."""
    ok = shutil.which("sbatch") is not None and subprocess.run(
        ["bash", str(ROOT / "scripts/local-slurm"), "status"], capture_output=True
    ).returncode == 0
    need_service(ok, "the local Slurm cluster")
    return _script_env("local-slurm")


@pytest.fixture(scope="session")
def ssh_env(slurm_env: dict[str, str]) -> dict[str, str]:
    ok = subprocess.run(["bash", str(ROOT / "scripts/local-sshd"), "status"], capture_output=True).returncode == 0
    need_service(ok, "the loopback sshd")
    return _script_env("local-sshd")


@pytest.fixture()
def shared_workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A job working directory every local user (root, hpcai) can write."""
    path = Path("/tmp") / f"hpcai-it-{uuid.uuid4().hex[:10]}"
    path.mkdir(mode=0o1777)
    path.chmod(0o1777)
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stage_image() -> Path:
    """The stage image folder (``scripts/build-image``), built once when missing: about 100 s on 2 cores.

    Every suite that runs a stage in the image asks for it, so whichever comes first on a fresh
    machine builds it (the fault suite runs before the integration suite).
    """
    script = str(ROOT / "scripts/build-image")
    found = subprocess.run(["bash", script, "path"], capture_output=True, text=True)
    if found.returncode != 0:
        need_service(os.geteuid() == 0, "root (scripts/build-image debootstraps the stage image)")
        start = time.monotonic()
        built = subprocess.run(["bash", script], capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stderr[-3000:]
        sys.stderr.write(f"\nbuilt the stage image in {time.monotonic() - start:.0f} s\n")
        found = subprocess.run(["bash", script, "path"], capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated Airflow home on SQLite, shared by the session's `airflow dags test` runs."""
    import sys

    from tests.support import airflow_env

    home = str(tmp_path_factory.mktemp("airflow-home"))
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=airflow_env(home), check=True, capture_output=True, timeout=300)
    return home


@pytest.fixture(autouse=True)
def _fresh_shared_slurm_hooks():
    """Triggers share one hook per connection in a process; a test must not inherit another's."""
    from airflow_provider_hpcai.hooks.slurm import AsyncSlurmHook

    AsyncSlurmHook.reset_shared()
    yield
    AsyncSlurmHook.reset_shared()
