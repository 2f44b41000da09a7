"""Containers on the machine the task runs on: podman, or runc with an OCI bundle.

* podman: ``podman run --rm [--device nvidia.com/gpu=all] [-v SRC:DST:ro] [-w DIR] [--env NAME]
  IMAGE CMD...`` (https://docs.podman.io/en/v4.3/markdown/podman-run.1.html; GPUs through CDI:
  https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html).
  ``--env NAME`` without a value copies the variable from podman's own environment, so values
  never appear on the command line. An OCI bundle folder runs with ``--rootfs <bundle>/rootfs``.
* runc: ``runc run --bundle <job bundle> <id>`` on a bundle from :func:`~.oci.write_job_bundle`.

:func:`run_in_container` ties them together for the local backend and tests.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from airflow_provider_hpcai.containers.errors import ContainerRuntimeNotFoundError
from airflow_provider_hpcai.containers.launch import Launch
from airflow_provider_hpcai.containers.model import Container, image_kind
from airflow_provider_hpcai.containers.oci import read_bundle_config, remove_job_bundle, write_job_bundle
from airflow_provider_hpcai.containers.slurm import _command
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["LOCAL_RUNTIMES", "find_local_runtime", "podman_launch", "run_in_container", "runc_launch"]

#: Local runtimes in the order ``auto`` tries them, with the program each needs.
LOCAL_RUNTIMES: dict[str, str] = {"podman": "podman", "oci": "runc"}
#: What the launching process passes on besides the container's own variables.
#: Limits run_in_container gives podman containers (capped by this process's own).
PODMAN_ULIMITS = {"nofile": 4096, "nproc": 16384}
_ULIMITS = frozenset({"nofile", "nproc", "memlock", "stack", "core"})
_BASE_ENV = ("PATH", "HOME", "LANG", "XDG_RUNTIME_DIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")


def podman_launch(
    container: Container,
    command: Sequence[str],
    *,
    name: str | None = None,
    oci_runtime: str | None = None,
    ulimits: Mapping[str, tuple[int, int]] | None = None,
) -> Launch:
    """``podman run --rm ...`` for ``command`` in the container.

    :param name: a container name (``--name``).
    :param oci_runtime: podman's global ``--runtime`` (``"runc"`` or ``"crun"``; default: podman's own).
    :param ulimits: ``{"nofile": (soft, hard)}`` and the like (``--ulimit``): podman's defaults
        (nofile 1048576) fail where the caller may not raise its limits (no CAP_SYS_RESOURCE).
    """
    options = ["podman"]
    if oci_runtime is not None:
        if oci_runtime not in ("runc", "crun"):
            raise InvalidJobSpecError(f"podman's OCI runtime must be 'runc' or 'crun', not {oci_runtime!r}")
        options.append(f"--runtime={oci_runtime}")
    options += ["run", "--rm"]
    for limit, (soft, hard) in (ulimits or {}).items():
        if limit not in _ULIMITS or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (soft, hard)):
            raise InvalidJobSpecError(f"ulimit {limit!r}={soft!r}:{hard!r} is not allowed; one of {sorted(_ULIMITS)}, whole numbers")
        options.append(f"--ulimit={limit}={soft}:{hard}")
    if name is not None:
        if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64 or name.startswith("-"):
            raise InvalidJobSpecError(f"container name {name!r} is not allowed: letters, digits, '-' and '_'")
        options.append(f"--name={name}")
    if container.gpus:
        options += ["--device", "nvidia.com/gpu=all"]
    for m in container.mounts:
        options += ["-v", f"{m.source}:{m.target}:" + ("ro" if m.read_only else "rw")]
    if container.workdir is not None:
        options += ["-w", container.workdir]
    for var in container.env:
        options += ["--env", var]
    if image_kind(container.image) == "path":
        options += ["--read-only", "--rootfs", f"{container.image}/rootfs"]
    else:
        options.append(container.image.removeprefix("docker://"))
    return Launch(options=tuple(options), command=_command(command), env=dict(container.env))


def runc_launch(bundle: str | os.PathLike[str], *, container_id: str | None = None, root: str | None = None) -> Launch:
    """``runc run --bundle BUNDLE ID`` (the command and variables are in the bundle's config.json)."""
    cid = container_id or f"hpcai-{uuid.uuid4().hex[:12]}"
    options = ["runc"] + ([f"--root={root}"] if root else []) + ["run", "--bundle", str(bundle), cid]
    return Launch(options=tuple(options), command=())


def find_local_runtime(container: Container, *, which: object = shutil.which) -> str:
    """The runtime ``run_in_container`` will use: the container's own, or the first one installed.

    :raises ContainerRuntimeNotFoundError: none installed (with what to install).
    """
    lookup = which if callable(which) else shutil.which
    wanted = container.runtime
    if wanted not in ("auto", *LOCAL_RUNTIMES):
        raise ContainerRuntimeNotFoundError(
            f"runtime {wanted!r} does not run on this machine; locally a container runs with podman or runc "
            "(runtime 'podman', 'oci' or 'auto')"
        )
    candidates = list(LOCAL_RUNTIMES) if wanted == "auto" else [wanted]
    if wanted == "auto" and image_kind(container.image) == "reference":
        candidates = ["podman"]  # runc runs bundles, not registry references
    for runtime in candidates:
        if lookup(LOCAL_RUNTIMES[runtime]):
            return runtime
    programs = " or ".join(LOCAL_RUNTIMES[r] for r in candidates)
    raise ContainerRuntimeNotFoundError(
        f"no container runtime on this machine: {programs} is not on PATH. Install one "
        f"(Debian: apt-get install {' '.join(LOCAL_RUNTIMES[r] for r in candidates)}), or run the stage "
        "without container= / on a connection whose cluster has one"
    )


def lookup_runc(which: object = shutil.which) -> bool:
    """Whether runc is installed."""
    return bool((which if callable(which) else shutil.which)("runc"))


def _finite(value: int) -> int:
    return value if value != resource.RLIM_INFINITY and value >= 0 else 1 << 20


def run_in_container(
    container: Container,
    command: Sequence[str],
    *,
    timeout: float | None = None,
    workspace: str | os.PathLike[str] | None = None,
    which: object = shutil.which,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``container`` on this machine and wait for it.

    An OCI bundle image runs from a hard-linked copy of its root file system (a job bundle), so
    the mount points a runtime creates, and podman's ``/etc/hosts``, never land in the shared image.

    :param container: the container (runtime ``auto``, ``podman`` or ``oci``).
    :param command: what to run inside.
    :param timeout: seconds before the run is stopped (:class:`subprocess.TimeoutExpired`; the
        container is killed and removed too).
    :param workspace: where the job bundle goes (default: a temporary folder next to the image
        bundle, since hard links need the same file system).
    :return: the finished process (``returncode``, ``stdout``, ``stderr`` as text).
    :raises ContainerRuntimeNotFoundError: no runtime installed.
    """
    runtime = find_local_runtime(container, which=which)
    cmd = _command(command)
    if runtime == "podman" and image_kind(container.image) == "reference":
        return _run_podman(container, cmd, timeout=timeout, which=which)
    if image_kind(container.image) != "path":
        raise InvalidJobSpecError("runc runs an OCI bundle folder; give the bundle's absolute path as image")
    parent = Path(workspace) if workspace is not None else Path(container.image).parent
    folder = Path(tempfile.mkdtemp(prefix=".job-", dir=parent))
    try:
        bundle = write_job_bundle(container, folder / "bundle", command=cmd)
        if runtime == "podman":
            # `--rootfs` knows nothing of config.json: carry the image's environment (PATH...).
            image_env = dict(e.split("=", 1) for e in read_bundle_config(bundle)["process"].get("env", []) if "=" in e)
            image_env.pop("TERM", None)
            copy = container.replace(image=str(bundle), env={**image_env, **container.env})
            return _run_podman(copy, cmd, timeout=timeout, which=which)
        return _run_runc(bundle, folder / "state", timeout=timeout)
    finally:
        remove_job_bundle(folder)


def _run_podman(container: Container, command: tuple[str, ...], *, timeout: float | None,
                which: object) -> subprocess.CompletedProcess[str]:
    # runc where installed (crun 1.8 refuses this machine's hybrid cgroup v1 layout). Podman's
    # default limits (nofile 1048576...) fail where conmon's own are lower and cannot be raised:
    # modest limits, never above this process's, start everywhere.
    limits = {
        "nofile": min(_finite(resource.getrlimit(resource.RLIMIT_NOFILE)[1]), PODMAN_ULIMITS["nofile"]),
        "nproc": min(_finite(resource.getrlimit(resource.RLIMIT_NPROC)[1]), PODMAN_ULIMITS["nproc"]),
    }
    name = f"hpcai-{uuid.uuid4().hex[:12]}"
    launch = podman_launch(container, command, name=name, oci_runtime="runc" if lookup_runc(which) else None,
                           ulimits={k: (v, v) for k, v in limits.items()})
    env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
    try:
        return subprocess.run(launch.argv, env={**env, **launch.env}, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        subprocess.run(["podman", "rm", "--force", "--time=0", name], capture_output=True, check=False, timeout=60)
        raise


def _run_runc(bundle: Path, state: Path, *, timeout: float | None) -> subprocess.CompletedProcess[str]:
    cid = f"hpcai-{uuid.uuid4().hex[:12]}"
    launch = runc_launch(bundle, container_id=cid, root=str(state))
    env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
    try:
        return subprocess.run(launch.argv, env=env, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        # runc was killed, its container was not: stop every process in it, then forget it.
        for args in (["kill", "-a", cid, "KILL"], ["delete", "--force", cid]):
            subprocess.run(["runc", f"--root={state}", *args], capture_output=True, check=False, timeout=30)
        raise


def local_runtime(container: Container, *, which: object = None) -> str:
    """The local backend's runtime for ``container``: runc (``oci``) for a bundle folder when installed
    (its processes stay in the job's process tree, so memory limits and kills work as for a bare job),
    podman for a registry reference or an image tag.

    :raises ContainerRuntimeNotFoundError: the runtime it needs is not installed (with what to install).
    """
    lookup = which if callable(which) else shutil.which
    if container.runtime == "auto" and image_kind(container.image) == "path":
        if lookup("runc"):
            return "oci"
        raise ContainerRuntimeNotFoundError(
            f"no container runtime on this machine for the bundle {container.image!r}: runc is not on PATH "
            "(Debian: apt-get install runc), or run the stage without container="
        )
    runtime = find_local_runtime(container, which=lookup)
    if runtime == "podman" and image_kind(container.image) == "path":
        raise ContainerRuntimeNotFoundError(
            f"the local backend runs a bundle folder ({container.image!r}) with runc (runtime 'oci' or 'auto'); "
            "give podman an image reference or tag (e.g. localhost/hpcai-stage:<digest>)"
        )
    return runtime


def local_job_launcher(container: Container, *, runtime: str, job_id: str, folder: str, script: str,
                       env: Mapping[str, str], python: str) -> str:
    """The bash script the local backend runs for a containerised job (pure but for writing the bundle).

    ``oci``: writes the job bundle (:data:`~.wrap.BUNDLE_PROGRAM`, run by ``python``) into
    ``<folder>/.hpcai-ct-<job_id>``, then ``runc run`` in the foreground; ``podman``: ``podman run
    --rm``. A SIGTERM (cancel, time or memory limit) kills the container; the bundle is removed
    at the end. Variables travel in the bundle's ``config.json`` (runc) or by name (podman
    ``--env NAME``), never on the command line.

    :param container: the container (already with the job's folder mounted: :func:`~.wrap.job_container`).
    :param runtime: ``"oci"`` or ``"podman"``.
    :param job_id: the local job's id (hex).
    :param folder: the job's folder (absolute).
    :param script: the user script's path (inside the job's folder).
    :param env: every variable the job gets inside the container.
    :param python: the interpreter that writes the bundle.
    """
    import json
    import shlex

    from airflow_provider_hpcai.containers.wrap import BUNDLE_PROGRAM, bundle_overlay

    if not job_id.isalnum():
        raise InvalidJobSpecError(f"job id {job_id!r} must be letters and digits")
    cid = f"hpcai-{job_id}"
    work = f"{folder.rstrip('/')}/.hpcai-ct-{job_id}"
    q = shlex.quote
    if runtime == "oci":
        Path(work).mkdir(mode=0o700)
        overlay = bundle_overlay(container, env=env, args=["/bin/bash", script])
        proc = subprocess.run([python, "-c", BUNDLE_PROGRAM, container.image, f"{work}/bundle"],
                              input=json.dumps(overlay), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise ContainerRuntimeNotFoundError(f"could not prepare the job bundle from {container.image!r}: "
                                                f"{proc.stderr.strip()[-500:]}")
        runc = f"runc --root {q(work + '/state')}"
        start = f"{runc} run --bundle {q(work + '/bundle')} {cid} </dev/null &"
        stop = f"{runc} kill --all {cid} KILL >/dev/null 2>&1"
        clean = f"{runc} delete --force {cid} >/dev/null 2>&1; rm -rf -- {q(work)}"
    elif runtime == "podman":
        launch = podman_launch(container.replace(env=dict.fromkeys(env, "")), ["/bin/bash", script], name=cid,
                               oci_runtime="runc" if lookup_runc() else None,
                               ulimits={k: (v, v) for k, v in PODMAN_ULIMITS.items()})
        start = shlex.join(launch.argv) + " </dev/null &"
        stop = f"podman kill {cid} >/dev/null 2>&1"
        clean = f"podman rm --force --time=0 {cid} >/dev/null 2>&1"
    else:
        raise ContainerRuntimeNotFoundError(f"runtime {runtime!r} does not run on this machine; use 'oci' or 'podman'")
    return "\n".join([
        f"trap {q(stop)} TERM INT HUP",
        start,
        "child=$!",
        'wait "$child"; rc=$?',
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done',
        clean,
        'exit "$rc"',
        "",
    ])


def cleanup_local_job(folder: str | os.PathLike[str], job_id: str) -> None:
    """Kill what is left of a containerised local job's runc container, then remove its bundle.

    The local backend kills a finished job's whole process group, which can stop
    :func:`local_job_launcher`'s own clean-up half-way: this finishes it (no-op for other jobs).
    """
    work = Path(folder) / f".hpcai-ct-{job_id}"
    if not work.is_dir():
        return
    if (work / "state").is_dir():
        root = f"--root={work / 'state'}"
        for args in (["kill", "--all", f"hpcai-{job_id}", "KILL"], ["delete", "--force", f"hpcai-{job_id}"]):
            subprocess.run(["runc", root, *args], capture_output=True, check=False, timeout=30)
    shutil.rmtree(work, ignore_errors=True)
