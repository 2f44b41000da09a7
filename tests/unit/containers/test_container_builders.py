"""The builders against command lines recorded from each tool's documentation.

Sources (each documented line is copied below with its page):

* Slurm 22.05 ``doc/html/containers.shtml`` ("Requesting container jobs or steps"),
  https://slurm.schedmd.com/containers.html
* Pyxis README (``srun --help`` and Examples), https://github.com/NVIDIA/pyxis
* Apptainer ``exec`` page and bind-path docs,
  https://apptainer.org/docs/user/main/cli/apptainer_exec.html,
  https://apptainer.org/docs/user/main/bind_paths_and_mounts.html
* podman-run(1) 4.3, https://docs.podman.io/en/v4.3/markdown/podman-run.1.html, and NVIDIA's
  CDI page, https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html
"""

from __future__ import annotations

import shlex

import pytest

from airflow_provider_hpcai.containers import (
    Container,
    ContainerRuntimeNotFoundError,
    RuntimeNotOfferedError,
    apptainer_launch,
    find_local_runtime,
    job_bundle_config,
    kubernetes_container,
    oci_launch,
    oci_sbatch_directives,
    podman_launch,
    pyxis_launch,
    resolve_runtime,
    runc_launch,
)
from airflow_provider_hpcai.exceptions import InvalidJobSpecError


def _long_options(argv: list[str], with_value: set[str]) -> list[str]:
    """``--opt value`` -> ``--opt=value`` for the options named (getopt reads both the same)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in with_value:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


# ----------------------------------------------------------------------------- Slurm OCI
def test_slurm_oci_matches_the_documented_step() -> None:
    # containers.shtml: srun --container $ABS_PATH_TO_BUNDLE bash -c "cat /etc/*rel*"
    documented = _long_options(shlex.split('srun --container /abs/bundle bash -c "cat /etc/*rel*"'), {"--container"})
    launch = oci_launch(Container(image="/abs/bundle"), ["bash", "-c", "cat /etc/*rel*"])
    # --export=NONE keeps the host's PATH from replacing the image's (Slurm appends the step's
    # environment to config.json, later entries winning: seen on the local cluster).
    assert launch.argv == documented[:2] + ["--export=NONE"] + documented[2:]


def test_slurm_oci_batch_directives_match_the_documented_batch_step() -> None:
    # containers.shtml: sbatch --container $ABS_PATH_TO_BUNDLE --wrap 'bash -c "cat /etc/*rel*"'
    pairs = oci_sbatch_directives(Container(image="/abs/bundle", env={"OMP_NUM_THREADS": "1"}))
    assert pairs == [("container", "/abs/bundle")]


def test_slurm_oci_workdir_env_and_job_bundle() -> None:
    c = Container(image="/img/bundle", mounts=["/data:/in"], workdir="/in", env={"A": "x y", "B": "$(z)"})
    with pytest.raises(InvalidJobSpecError, match="write_job_bundle"):
        oci_launch(c, ["python", "-m", "stage"])
    launch = oci_launch(c, ["python", "-m", "stage"], bundle="/jobs/42/bundle")
    assert launch.options == ("--container=/jobs/42/bundle", "--export=A,B")
    assert launch.command == ("/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "hpcai-workdir", "/in",
                              "python", "-m", "stage")
    assert launch.env == {"A": "x y", "B": "$(z)"} and launch.srun
    with pytest.raises(InvalidJobSpecError, match="starts with '-'"):
        oci_launch(Container(image="/img/bundle"), ["--wrap=touch /tmp/x"])


def test_job_bundle_config_adds_mounts_workdir_env_and_keeps_the_image_root() -> None:
    base = {
        "process": {"args": ["/bin/bash"], "cwd": "/", "env": ["PATH=/opt/hpcai/bin:/usr/bin", "LANG=C.UTF-8"]},
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []},
                   {"destination": "/in", "type": "bind", "source": "/old", "options": ["rbind"]}],
    }
    c = Container(image="/img/bundle", mounts=["/data:/in", "/out:/out:rw"], workdir="/out", env={"LANG": "C"})
    spec = job_bundle_config(base, c, command=["python", "-V"])
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["process"]["cwd"] == "/out" and spec["process"]["args"] == ["python", "-V"]
    assert spec["process"]["env"] == ["PATH=/opt/hpcai/bin:/usr/bin", "LANG=C"]
    assert spec["mounts"] == [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []},
        {"destination": "/in", "type": "bind", "source": "/data", "options": ["rbind", "ro", "nosuid", "nodev"]},
        {"destination": "/out", "type": "bind", "source": "/out", "options": ["rbind", "rw", "nosuid", "nodev"]},
    ]
    assert base["process"]["cwd"] == "/" and len(base["mounts"]) == 2  # pure: the input is unchanged


# ----------------------------------------------------------------------------- Pyxis
@pytest.mark.parametrize(
    ("documented", "container", "command"),
    [
        # README Examples: srun --container-image=centos grep PRETTY /etc/os-release
        ("srun --container-image=centos grep PRETTY /etc/os-release", Container(image="centos"),
         ["grep", "PRETTY", "/etc/os-release"]),
        # README Examples: mount a file from the host and run the command on it
        (("srun --container-image=centos --container-mounts=/etc/os-release:/host/os-release grep PRETTY "
         "/host/os-release"), Container(image="centos", mounts=["/etc/os-release:/host/os-release:rw"]),
         ["grep", "PRETTY", "/host/os-release"]),
        # README usage: --container-image=[USER@][REGISTRY#]IMAGE[:TAG]; flags after a third ':'
        (("srun --container-image=nvcr.io#nvidia/pytorch:21.12-py3 --container-mounts=/data:/data:ro "
         "--container-workdir=/data python train.py"),
         Container(image="nvcr.io/nvidia/pytorch:21.12-py3", mounts=["/data:/data:ro"], workdir="/data"),
         ["python", "train.py"]),
        # srun --help: --container-image=...|PATH (a squashfs file)
        ("srun --container-image=/shared/stage.sqsh --container-env=OMP_NUM_THREADS hostname",
         Container(image="/shared/stage.sqsh", env={"OMP_NUM_THREADS": "2"}), ["hostname"]),
    ],
)
def test_pyxis_matches_documented_lines(documented: str, container: Container, command: list[str]) -> None:
    assert pyxis_launch(container, command).argv == shlex.split(documented)


def test_pyxis_refuses_a_bundle_folder_and_passes_env_by_name() -> None:
    with pytest.raises(InvalidJobSpecError, match="squashfs"):
        pyxis_launch(Container(image="/img/bundle"), ["true"])
    launch = pyxis_launch(Container(image="python", env={"SECRET": "s3cr3t"}), ["true"])
    assert "s3cr3t" not in " ".join(launch.argv) and launch.env == {"SECRET": "s3cr3t"}


# ----------------------------------------------------------------------------- Apptainer
@pytest.mark.parametrize(
    ("documented", "container", "command"),
    [
        # apptainer exec page: apptainer exec /tmp/debian.sif cat /etc/debian_version
        ("apptainer exec /tmp/debian.sif cat /etc/debian_version", Container(image="/tmp/debian.sif"),
         ["cat", "/etc/debian_version"]),
        # exec synopsis with --nv, -B/--bind src[:dest[:opts]] ('ro'; 'rw' is the default), --pwd
        (("apptainer exec --nv --bind /data:/mnt:ro --bind /scratch:/scratch --pwd /mnt "
         "docker://ubuntu:24.04 ls /mnt"),
         Container(image="ubuntu:24.04", gpus=True, mounts=["/data:/mnt:ro", "/scratch:/scratch:rw"], workdir="/mnt"),
         ["ls", "/mnt"]),
    ],
)
def test_apptainer_matches_documented_lines(documented: str, container: Container, command: list[str]) -> None:
    assert apptainer_launch(container, command).argv == shlex.split(documented)


def test_apptainer_environment_goes_through_apptainerenv() -> None:
    launch = apptainer_launch(Container(image="/i.sif", env={"A": "1; rm"}), ["env"])
    assert launch.env == {"APPTAINERENV_A": "1; rm"} and "1; rm" not in launch.argv
    assert apptainer_launch(Container(image="/i.sif", env={"A": "1"}), ["env"], program="singularity").env == {
        "SINGULARITYENV_A": "1"}


# ----------------------------------------------------------------------------- podman, runc
def test_podman_matches_the_documented_cdi_line() -> None:
    # NVIDIA CDI page: podman run --rm --device nvidia.com/gpu=all ubuntu nvidia-smi -L
    launch = podman_launch(Container(image="ubuntu", gpus=True), ["nvidia-smi", "-L"])
    assert launch.argv == shlex.split("podman run --rm --device nvidia.com/gpu=all ubuntu nvidia-smi -L")


def test_podman_mounts_workdir_env_runtime_and_limits() -> None:
    c = Container(image="localhost/hpcai-stage:1", mounts=["/data:/in", "/out:/out:rw"], workdir="/out",
                  env={"TOKEN": "not-on-the-command-line"})
    launch = podman_launch(c, ["python", "-V"], oci_runtime="runc", ulimits={"nofile": (4096, 4096)})
    # podman-run(1): -v SRC:DST[:OPTIONS], -w DIR, --env NAME (value from podman's environment)
    assert launch.argv == ["podman", "--runtime=runc", "run", "--rm", "--ulimit=nofile=4096:4096",
                           "-v", "/data:/in:ro", "-v", "/out:/out:rw", "-w", "/out", "--env", "TOKEN",
                           "localhost/hpcai-stage:1", "python", "-V"]
    assert launch.env == {"TOKEN": "not-on-the-command-line"}
    bundle = podman_launch(Container(image="/img/bundle"), ["true"]).argv
    assert bundle[-4:] == ["--read-only", "--rootfs", "/img/bundle/rootfs", "true"]
    with pytest.raises(InvalidJobSpecError):
        podman_launch(c, ["true"], ulimits={"fsize": (1, 1)})
    with pytest.raises(InvalidJobSpecError):
        podman_launch(c, ["true"], name="x; rm")


def test_runc_run_line() -> None:
    # runc(8): runc run [ -b bundle ] <container-id>
    assert runc_launch("/jobs/b", container_id="c1", root="/run/x").argv == [
        "runc", "--root=/run/x", "run", "--bundle", "/jobs/b", "c1"]


def test_no_local_runtime_is_a_clear_error() -> None:
    with pytest.raises(ContainerRuntimeNotFoundError, match="apt-get install podman runc"):
        find_local_runtime(Container(image="/img/bundle"), which=lambda _: None)
    with pytest.raises(ContainerRuntimeNotFoundError, match="podman is not on PATH"):
        find_local_runtime(Container(image="python"), which=lambda _: None)
    with pytest.raises(ContainerRuntimeNotFoundError, match="does not run on this machine"):
        find_local_runtime(Container(image="python", runtime="pyxis"), which=lambda _: "/usr/bin/x")
    only_runc = {"runc": "/usr/sbin/runc"}.get
    assert find_local_runtime(Container(image="/img/bundle"), which=only_runc) == "oci"


# ----------------------------------------------------------------------------- runtime choice
def test_resolve_runtime_picks_what_fits_and_refuses_what_is_not_offered() -> None:
    bundle, sif, sqsh, ref = "/img/bundle", "/img/s.sif", "/img/s.sqsh", "registry.example.org/t/s:1"
    assert resolve_runtime(Container(image=bundle), "slurm") == "oci"
    assert resolve_runtime(Container(image=sif), "slurm") == "apptainer"
    assert resolve_runtime(Container(image=sqsh), "slurm") == "pyxis"
    assert resolve_runtime(Container(image=ref), "slurm") == "pyxis"
    assert resolve_runtime(Container(image=ref), "slurm", offered=["apptainer"]) == "apptainer"
    assert resolve_runtime(Container(image=ref), "kubernetes") == "kubernetes"
    assert resolve_runtime(Container(image=bundle), "local") == "podman"
    with pytest.raises(RuntimeNotOfferedError, match="not offered on this slurm connection"):
        resolve_runtime(Container(image=ref, runtime="pyxis"), "slurm", offered=["oci"])
    with pytest.raises(RuntimeNotOfferedError, match="no container runtime offered"):
        resolve_runtime(Container(image=ref), "slurm", offered=["oci"])
    with pytest.raises(RuntimeNotOfferedError, match="cannot run"):
        resolve_runtime(Container(image=sif, runtime="pyxis"), "slurm")
    with pytest.raises(RuntimeNotOfferedError, match="unknown container runtimes"):
        resolve_runtime(Container(image=ref), "slurm", offered=["docker"])


# ----------------------------------------------------------------------------- Kubernetes
def test_kubernetes_container_and_volumes() -> None:
    c = Container(image="registry.example.org/t/stage:1", mounts=["/shared/runs/42:/out:rw", "/ref:/ref"],
                  workdir="/out", env={"A": "1"})
    out = kubernetes_container(c, command=["python", "-m", "stage"], claims={"/shared": "shared-data"})
    assert out["container"] == {
        "name": "stage", "image": "registry.example.org/t/stage:1", "command": ["python", "-m", "stage"],
        "workingDir": "/out", "env": [{"name": "A", "value": "1"}],
        "volumeMounts": [{"name": "hpcai-mount-0", "mountPath": "/out", "readOnly": False, "subPath": "runs/42"},
                         {"name": "hpcai-mount-1", "mountPath": "/ref", "readOnly": True}],
    }
    assert out["volumes"] == [{"name": "hpcai-mount-0", "persistentVolumeClaim": {"claimName": "shared-data"}},
                              {"name": "hpcai-mount-1", "hostPath": {"path": "/ref"}}]
    with pytest.raises(InvalidJobSpecError, match="DNS label"):
        kubernetes_container(c, name="Stage_1")
    with pytest.raises(InvalidJobSpecError, match="DNS subdomain"):
        kubernetes_container(c, claims={"/shared": "Bad Claim"})
