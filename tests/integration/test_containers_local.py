"""The stage image on this machine: podman (the imported image and the bundle's rootfs) and runc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_hpcai.containers import Container, run_in_container
from tests.conftest import need_service

pytestmark = [pytest.mark.integration]

PROBE = ["sh", "-c", ('cat /etc/hpcai-image; pwd; echo "note=[$NOTE]"; '
                     'python -c "import numpy, numba, mpi4py; print(\'kernels deps ok\', numpy.__version__)"; '
                     'echo written > /out/result.txt')]


@pytest.fixture()
def out_dir() -> Iterator[Path]:
    path = Path("/tmp") / f"hpcai-ctl-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _tag(image: Path) -> str:
    return "localhost/hpcai-stage:" + image.name


@pytest.mark.parametrize("how", ["podman-image", "podman-bundle", "runc-bundle"])
def test_stage_image_runs_locally(how: str, stage_image: Path, out_dir: Path) -> None:
    runtime = "oci" if how.startswith("runc") else "podman"
    need_service(shutil.which("runc" if runtime == "oci" else "podman") is not None, runtime)
    image = _tag(stage_image) if how == "podman-image" else str(stage_image / "bundle")
    hostile = "$(touch /tmp/hpcai-ctl-pwned) `id` it's"
    c = Container(image=image, mounts=[f"{out_dir}:/out:rw", "/etc/hostname:/host/hostname"], workdir="/out",
                  env={"NOTE": hostile}, runtime=runtime)  # type: ignore[arg-type]
    proc = run_in_container(c, PROBE, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    marker = (stage_image / "bundle/rootfs/etc/hpcai-image").read_text()
    assert proc.stdout.startswith(marker)
    assert "/out\n" in proc.stdout and f"note=[{hostile}]" in proc.stdout
    assert "kernels deps ok 2.4.6" in proc.stdout
    assert (out_dir / "result.txt").read_text() == "written\n"
    assert not Path("/tmp/hpcai-ctl-pwned").exists()


def test_read_only_mounts_stay_read_only(stage_image: Path, out_dir: Path) -> None:
    need_service(shutil.which("runc") is not None, "runc")
    c = Container(image=str(stage_image / "bundle"), mounts=[f"{out_dir}:/ro"], runtime="oci")
    proc = run_in_container(c, ["sh", "-c", "touch /ro/x || echo refused; touch /etc/x || echo root-refused"],
                            timeout=60)
    assert proc.stdout.split() == ["refused", "root-refused"] and not (out_dir / "x").exists()


@pytest.mark.parametrize("runtime", ["podman", "oci"])
def test_a_run_past_its_timeout_is_stopped_and_leaves_nothing(runtime: str, stage_image: Path) -> None:
    need_service(shutil.which("runc" if runtime == "oci" else "podman") is not None, runtime)
    c = Container(image=str(stage_image / "bundle"), mounts=["/etc/hostname:/probe/hostname"], runtime=runtime)  # type: ignore[arg-type]
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_container(c, ["sleep", "61.7"], timeout=3)
    if runtime == "podman":
        left = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
        assert not [n for n in left.split() if n.startswith("hpcai-")]
    assert not list(stage_image.glob(".job-*")), "the job bundle was not removed"
    # Mount points and podman's /etc/hosts went into the job's copy, never into the shared image.
    assert not (stage_image / "bundle/rootfs/probe").exists()
    time.sleep(1)
    assert not subprocess.run(["pgrep", "-f", "^sleep 61.7$"], capture_output=True).stdout, "the container kept running"


CLIMATE = {"nx": 32, "ny": 32, "dx_km": 30.0, "steps": 40, "feature_radius_km": 150.0, "progress_lines": 4}
CLIMATE_FIELDS = ["rain_accum.npy", "rain_peak_rate.npy", "temperature.npy", "moisture.npy", "storm_labels.npy"]


@pytest.mark.slow
def test_climate_kernel_in_the_container_equals_bare_metal(stage_image: Path, out_dir: Path) -> None:
    """The kernel a case study runs, in the image (runc, repository mounted read-only) and on the
    host's venv: the same fields, bit for bit (same numpy and numba versions inside and out)."""
    need_service(shutil.which("runc") is not None, "runc")
    repo = Path(__file__).resolve().parents[2]
    (out_dir / "climate.json").write_text(json.dumps(CLIMATE))
    env = dict(os.environ, PYTHONPATH=str(repo), NUMBA_NUM_THREADS="1")
    bare = subprocess.run([sys.executable, "-m", "simulation_kernels.climate", "--config", str(out_dir / "climate.json"),
                           "--output", str(out_dir / "bare")], env=env, capture_output=True, text=True, timeout=300)
    assert bare.returncode == 0, bare.stderr[-2000:]
    c = Container(image=str(stage_image / "bundle"), mounts=[f"{repo}:/opt/hpcai-src", f"{out_dir}:/out:rw"],
                  workdir="/out", env={"PYTHONPATH": "/opt/hpcai-src", "NUMBA_NUM_THREADS": "1"}, runtime="oci")
    proc = run_in_container(c, ["python", "-m", "simulation_kernels.climate", "--config", "/out/climate.json",
                                "--output", "/out/contained"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "progress: step 40/40 (100%)" in proc.stdout + proc.stderr
    for name in CLIMATE_FIELDS:
        assert np.array_equal(np.load(out_dir / "bare" / name), np.load(out_dir / "contained" / name)), name
    inside = json.loads((out_dir / "contained/summary.json").read_text())
    assert inside["storms"] == json.loads((out_dir / "bare/summary.json").read_text())["storms"]
