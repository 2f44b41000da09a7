"""Stages in the stage image on the local Slurm cluster, through Slurm's own OCI support (runc).

Checked from inside the job: the image's marker file and ``/etc/os-release``; sacct's record; an
out-of-memory kill inside the container; and a 2-rank seismic run in the container whose fields
equal the bare-metal 2-rank run's. The image comes from ``scripts/build-image`` (about 100 s
cold, under a second cached); the session builds it once when it is missing.

Slurm 22.05 refuses more than one task per node in a container step (slurmstepd's
``_modify_config``: "unexpected number of tasks 2 > 1"), so on this one-node cluster the two
ranks start inside one container step with the image's own ``mpiexec`` (hydra, fork launcher);
the bare-metal reference runs under ``srun --mpi=pmi2``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.containers import (
    Container,
    image_env_exports,
    oci_launch,
    oci_sbatch_directives,
    read_bundle_config,
    write_job_bundle,
)
from airflow_provider_hpcai.containers.oci import remove_job_bundle
from airflow_provider_hpcai.jobs.classify import classify_failure
from airflow_provider_hpcai.slurm.commands import parse_size_bytes
from tests.conftest import need_service

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

ROOT = Path(__file__).resolve().parents[2]
SEISMIC = {"nx": 64, "nz": 48, "steps": 120, "sponge_cells": 10, "f0_hz": 25.0, "receiver_depth_m": 30.0,
           "source_x_m": 200.0, "source_z_m": 250.0, "velocity_model": "basin", "basin_width_m": 300.0,
           "basin_depth_m": 100.0, "progress_lines": 4, "boundary": "absorbing"}


@pytest.fixture()
def workdir() -> Iterator[Path]:
    path = Path("/tmp") / f"hpcai-ct-{uuid.uuid4().hex[:10]}"
    path.mkdir(mode=0o755)
    yield path
    remove_job_bundle(path)


def _oci_conf_present(slurm_env: dict[str, str]) -> None:
    conf = Path(slurm_env["SLURM_CONF"]).parent / "oci.conf"
    need_service(conf.is_file(), f"{conf} (scripts/local-slurm up writes it)")


def _sbatch(script: str, workdir: Path, *, timeout: float = 240,
            user: str | None = None) -> tuple[str, dict[str, dict[str, str]], str]:
    """Submit ``script`` (as ``user``), wait for the end; job id, sacct rows by JobID, and the output."""
    path = workdir / "job.sh"
    path.write_text(script)
    path.chmod(0o644)
    as_user = ["runuser", "-u", user, "--"] if user else []
    job = subprocess.run([*as_user, "sbatch", "--parsable", "--chdir", str(workdir), "--output", str(workdir / "out.txt"),
                          str(path)], capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    fields = "JobID,State,ExitCode,Elapsed,MaxRSS,ReqMem,NodeList"
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-j", job, "-n", "-P", f"--format={fields}"], capture_output=True,
                             text=True).stdout
        rows = {r.split("|")[0]: dict(zip(fields.split(","), r.split("|"))) for r in out.splitlines() if r}
        ended = rows.get(job, {}).get("State", "PENDING").split()[0] not in ("PENDING", "RUNNING", "REQUEUED")
        if ended and all(r["State"].split()[0] != "RUNNING" for r in rows.values()):
            break
        assert time.monotonic() < deadline, f"job {job} did not end in {timeout} s: {rows}"
        time.sleep(1)
    text = (workdir / "out.txt").read_text(errors="replace") if (workdir / "out.txt").exists() else ""
    return job, rows, text


def _step_script(launch_argv: list[str], env: dict[str, str], directives: str = "") -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return f"#!/bin/bash\n{directives}set -e\n{exports}{shlex.join(launch_argv)}\n"


def test_step_in_the_image_sees_its_marker_and_os_release(slurm_env, stage_image: Path, workdir: Path) -> None:
    _oci_conf_present(slurm_env)
    marker = (stage_image / "bundle/rootfs/etc/hpcai-image").read_text()
    hostile = "it's $(touch /tmp/hpcai-ct-pwned) `id`"
    c = Container(image=str(stage_image / "bundle"), env={"STAGE_NOTE": hostile})
    launch = oci_launch(c, ["sh", "-c", ('cat /etc/hpcai-image; grep ^PRETTY_NAME /etc/os-release; '
                                        'echo "note=[$STAGE_NOTE]"; command -v python; sleep 3')])
    job, rows, out = _sbatch(_step_script(launch.argv, launch.env, "#SBATCH --mem=256M\n#SBATCH --time=2\n"), workdir)
    assert marker in out and marker.startswith("HPCAI_IMAGE_NAME=hpcai-stage")
    assert 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' in out
    assert f"note=[{hostile}]" in out and not Path("/tmp/hpcai-ct-pwned").exists()
    assert "/opt/hpcai/bin/python" in out  # the image's PATH, not the host's
    step = rows[f"{job}.0"]
    assert rows[job]["State"] == "COMPLETED" and step["State"] == "COMPLETED" and step["ExitCode"] == "0:0"
    assert rows[job]["Elapsed"] and rows[job]["NodeList"] == slurm_env["HPCAI_SLURM_NODE"]
    assert parse_size_bytes(step["MaxRSS"]) is not None


def test_batch_script_in_the_image(slurm_env, stage_image: Path, workdir: Path) -> None:
    """``#SBATCH --container``: the whole batch script runs in the image."""
    _oci_conf_present(slurm_env)
    c = Container(image=str(stage_image / "bundle"), env={"STAGE": "batch"})
    directives = "".join(f"#SBATCH --{k}={shlex.quote(v)}\n" for k, v in oci_sbatch_directives(c))
    exports = "\n".join(image_env_exports(read_bundle_config(c.image), c))
    body = "cat /etc/hpcai-image\necho \"stage=$STAGE\"\npython -c 'import numpy; print(\"numpy\", numpy.__version__)'\n"
    job, rows, out = _sbatch(f"#!/bin/bash\n{directives}#SBATCH --mem=256M\n{exports}\n{body}", workdir)
    assert rows[job]["State"] == "COMPLETED", (rows, out)
    assert "HPCAI_IMAGE_NAME=hpcai-stage" in out and "numpy 2.4.6" in out and "stage=batch" in out


def test_out_of_memory_in_the_container_is_classified(slurm_env, stage_image: Path, workdir: Path) -> None:
    _oci_conf_present(slurm_env)
    c = Container(image=str(stage_image / "bundle"))
    hog = "import time\nb = []\nfor _ in range(40):\n    b.append(bytearray(50 << 20)); time.sleep(0.2)\nprint('survived')"
    launch = oci_launch(c, ["python", "-c", hog])
    script = _step_script(launch.argv, launch.env, "#SBATCH --mem=200M\n#SBATCH --time=2\n")
    job, rows, out = _sbatch(script, workdir)
    step = rows[f"{job}.0"]
    sys.stderr.write(f"\nOOM in a container, sacct: {json.dumps(rows)}\n")
    assert "survived" not in out and "Exceeded job memory limit" in out
    assert rows[job]["State"] == "FAILED"
    assert parse_size_bytes(step["MaxRSS"]) > 200 * 2**20  # OverMemoryKill saw the container's RSS
    exit_code, signal = (int(x) for x in rows[job]["ExitCode"].split(":"))
    steps = [{"state": r["State"], "max_rss_bytes": parse_size_bytes(r["MaxRSS"])} for k, r in rows.items() if k != job]
    assert classify_failure(rows[job]["State"], exit_code=exit_code, signal=signal, steps=steps,
                            requested_memory_bytes=200 * 2**20, output_text=out) is exc.JobOutOfMemory


def _run_seismic_bare(workdir: Path) -> Path:
    cfg, out = workdir / "seismic.json", workdir / "bare"
    cfg.write_text(json.dumps(SEISMIC))
    python = shlex.quote(sys.executable)
    script = textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --ntasks=2 --mem=1G --time=5
        export PYTHONPATH={shlex.quote(str(ROOT))} NUMBA_NUM_THREADS=1
        srun --mpi=pmi2 {python} -m mpi4py -m simulation_kernels.seismic --config {cfg} --output {out}
        """)
    job, rows, text = _sbatch(script, workdir, timeout=300)
    assert rows[job]["State"] == "COMPLETED", text[-3000:]
    return out


@pytest.mark.slow
def test_two_rank_seismic_in_the_container_equals_bare_metal(slurm_env, stage_image: Path, workdir: Path) -> None:
    _oci_conf_present(slurm_env)
    bare = _run_seismic_bare(workdir)
    (workdir / "c").mkdir()
    cfg = workdir / "seismic.json"
    c = Container(image=str(stage_image / "bundle"),
                  mounts=[f"{ROOT}:/opt/hpcai-src", f"{workdir / 'c'}:/out:rw", f"{cfg}:/in/seismic.json"],
                  workdir="/out", env={"PYTHONPATH": "/opt/hpcai-src", "NUMBA_NUM_THREADS": "1"})
    bundle = write_job_bundle(c, workdir / "bundle")
    launch = oci_launch(c, ["mpiexec", "-launcher", "fork", "-n", "2", "python", "-m", "mpi4py", "-m",
                            "simulation_kernels.seismic", "--config", "/in/seismic.json", "--output", "/out/run"],
                        bundle=str(bundle))
    job, rows, out = _sbatch(_step_script(launch.argv, launch.env, "#SBATCH --ntasks=1 --cpus-per-task=2 "
                                                                  "--mem=1G --time=5\n"), workdir, timeout=300)
    assert rows[job]["State"] == "COMPLETED", out[-3000:]
    summary = json.loads((workdir / "c/run/summary.json").read_text())
    assert summary["ranks"] == 2
    for name in ("seismograms.npy", "pgv_map.npy", "wavefield.npy", "pgv_surface.npy"):
        a, b = np.load(bare / name), np.load(workdir / "c/run" / name)
        assert np.array_equal(a, b), name  # bit for bit
    assert np.abs(np.load(bare / "seismograms.npy")).max() > 0


def test_unprivileged_user_runs_in_the_rootless_bundle(slurm_env, stage_image: Path, workdir: Path) -> None:
    """Jobs of the REST transport run as an ordinary user: Slurm runs runc as that user, which
    needs a user namespace; scripts/build-image writes bundle-<user> for it."""
    _oci_conf_present(slurm_env)
    user = slurm_env["HPCAI_SLURM_REST_USER"]
    bundle = stage_image / f"bundle-{user}"
    need_service(bundle.is_dir(), f"{bundle} (scripts/build-image writes it when the user {user} exists)")
    workdir.chmod(0o1777)
    c = Container(image=str(bundle), workdir="/tmp")
    launch = oci_launch(c, ["sh", "-c", "cat /etc/hpcai-image; echo uid=$(id -u); cat /proc/self/uid_map"])
    job, rows, out = _sbatch(_step_script(launch.argv, launch.env, "#SBATCH --mem=256M\n#SBATCH --time=2\n"),
                             workdir, user=user)
    assert rows[job]["State"] == "COMPLETED", out[-2000:]
    assert "HPCAI_IMAGE_NAME=hpcai-stage" in out
    host_uid = subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout.strip()
    assert "uid=0" in out and f"0 {host_uid} 1" in " ".join(out.split())  # root inside = the user outside
    # The root bundle (not rootless) is refused for this user by runc, with a message that says why.
    root_launch = oci_launch(Container(image=str(stage_image / "bundle")), ["true"])
    job, rows, out = _sbatch(_step_script(root_launch.argv, {}, "#SBATCH --time=1\n"), workdir, user=user)
    assert rows[job]["State"] == "FAILED" and "rootless container requires user namespaces" in out


def test_scancel_stops_the_container(slurm_env, stage_image: Path, workdir: Path) -> None:
    """Cancel works unchanged: scancel ends the step, runc's container and its processes."""
    _oci_conf_present(slurm_env)
    seconds = f"307.{uuid.uuid4().int % 1000:03d}"  # a number no other process sleeps
    launch = oci_launch(Container(image=str(stage_image / "bundle")), ["sleep", seconds])
    (workdir / "job.sh").write_text(_step_script(launch.argv, launch.env, "#SBATCH --time=5\n"))
    job = subprocess.run(["sbatch", "--parsable", "--chdir", str(workdir), "--output", str(workdir / "out.txt"),
                          str(workdir / "job.sh")], capture_output=True, text=True, check=True).stdout.strip()
    pattern = f"^sleep {seconds}$"
    deadline = time.monotonic() + 60
    while not subprocess.run(["pgrep", "-f", pattern], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.5)
    subprocess.run(["scancel", job], check=True)
    # With a PID namespace in the bundle it took 62 s (the stage, PID 1 there, ignored SIGTERM).
    deadline = time.monotonic() + 15
    while subprocess.run(["pgrep", "-f", pattern], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the container's process outlived scancel"
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while True:
        state = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "--format=State"], capture_output=True,
                               text=True).stdout.strip()
        if state and not state.startswith(("RUNNING", "PENDING")):
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state.startswith("CANCELLED")
    left = subprocess.run(["runc", f"--root={Path(slurm_env['SLURM_CONF']).parent.parent / 'run/oci/root'}", "list",
                           "-q"], capture_output=True, text=True).stdout.split()
    assert not [c for c in left if f".{job}." in c], left
