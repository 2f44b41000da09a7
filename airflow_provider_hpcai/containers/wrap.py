"""A job's whole script in a container: the wrap every backend puts around :attr:`JobSpec.script`.

The job's working folder is always mounted read-write at the same path and is the working
directory inside (unless the container names its own), so a stage reads and writes the same
relative paths with or without a container, and the worker reads its files the same way.

OCI bundles for one job (Slurm's ``--container`` and local runc) are written on the node by
:data:`BUNDLE_PROGRAM`, a fixed Python program (never built from input) that reads the image
bundle's ``config.json`` and an overlay (mounts, working directory, environment, arguments)
computed here by :func:`bundle_overlay` (pure, JSON data). The job bundle holds a
``config.json`` and a ``rootfs/`` of empty folders and symbolic links: each top-level entry of
the image's root file system is bind-mounted read-only into it (Slurm 22.05 points
``root.path`` at ``<bundle>/rootfs`` whatever the config says, and runc refuses a symbolic link
there). When a mount's target does not exist in the image, its existing parents are recreated
the same way one level deeper (their entries bound one by one), so the runtime creates the mount
point in the job's own folder, never in the shared image. That costs no copy, works for an
unprivileged user with a rootless bundle (hard links of root's files do not:
``fs.protected_hardlinks``), and the root is read-only once the mounts are in place.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_hpcai.containers.model import Container, Mount, check_path
from airflow_provider_hpcai.containers.runtime import resolve_runtime
from airflow_provider_hpcai.containers.slurm import apptainer_launch, pyxis_launch
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["BUNDLE_PROGRAM", "bundle_overlay", "heredoc", "job_container", "slurm_container_lines"]

#: Writes a job bundle: ``python3 -c BUNDLE_PROGRAM <image bundle> <dest>`` with the overlay JSON on stdin.
BUNDLE_PROGRAM = r"""
import json, os, sys
image, dest = sys.argv[1], sys.argv[2]
overlay = json.load(sys.stdin)
with open(os.path.join(image, "config.json")) as handle:
    spec = json.load(handle)
root = spec.get("root", {}).get("path", "rootfs")
rootfs = root if root.startswith("/") else os.path.join(image, root)
if not os.path.isdir(rootfs):
    sys.exit("hpcai: the image bundle %s has no root file system at %s" % (image, rootfs))
targets = set(m["destination"] for m in overlay["mounts"])
def conf_value(path, key, default=None):
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.split("#", 1)[0].strip().partition("=")
                if name.strip().lower() == key:
                    default = value.strip()
    except OSError:
        pass
    return default
# Slurm 25.05+ bind-mounts the step's spool folder (oci.conf ContainerPath, else SlurmdSpoolDir)
# at the same path inside the container: its parents must be creatable in the job's root.
slurm = []
conf = os.environ.get("SLURM_CONF", "")
if os.path.isfile(conf):
    spool = conf_value(os.path.join(os.path.dirname(conf), "oci.conf"), "containerpath") \
        or conf_value(conf, "slurmdspooldir", "/var/spool/slurmd")
    if spool.startswith("/") and "%" not in spool:
        slurm.append(spool.rstrip("/") + "/oci-job")
# Folders of the image recreated in the job's root (the "spine"): "/" and the existing parents of
# a mount target the image lacks, so the runtime can create that mount point there.
spine = set(["/"])
for target in targets | set(slurm):
    parts = target.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        folder = "/" + "/".join(parts[:i])
        if not os.path.lexists(rootfs + folder):
            spine.update("/" + "/".join(parts[:j]) for j in range(1, i))
            break
        if os.path.islink(rootfs + folder) or not os.path.isdir(rootfs + folder):
            break
spine.discard("")
base = [m for m in spec.get("mounts", []) if m.get("destination") not in targets]
# A private /run (as podman gives one): Slurm 24.11+ mounts its step folder at /var/run/slurm.
if "/run" not in targets and not any(m.get("destination") == "/run" for m in base):
    base.append({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "mode=755"]})
mounted = set(m.get("destination") for m in base) | targets
new_root = os.path.join(dest, "rootfs")
binds = []
def expand(folder):
    os.makedirs(new_root + folder, exist_ok=True)
    for entry in sorted(os.listdir(rootfs + folder)):
        path = folder.rstrip("/") + "/" + entry
        if os.path.islink(rootfs + path):
            os.symlink(os.readlink(rootfs + path), new_root + path)
        elif path in spine:
            expand(path)
        elif path in mounted and os.path.isdir(rootfs + path):
            os.makedirs(new_root + path)  # a mount point only (runc mounts /proc, /dev... on a plain folder)
        else:
            binds.append({"destination": path, "type": "bind", "source": rootfs + path,
                          "options": ["rbind", "ro", "nosuid", "nodev"]})
expand("/")
spec["mounts"] = binds + base + overlay["mounts"]
spec["root"] = {"path": "rootfs", "readonly": True}
process = spec.setdefault("process", {})
process["terminal"] = False
if overlay.get("cwd"):
    process["cwd"] = overlay["cwd"]
if overlay.get("env") is not None:
    names = set(e.split("=", 1)[0] for e in overlay["env"])
    process["env"] = [e for e in process.get("env", []) if e.split("=", 1)[0] not in names] + overlay["env"]
if overlay.get("args"):
    process["args"] = overlay["args"]
with open(os.path.join(dest, "config.json"), "w") as handle:
    json.dump(spec, handle, indent=1, sort_keys=True)
"""


def job_container(container: Container, workdir: str) -> Container:
    """``container`` with the job's folder mounted read-write at its own path, and entered.

    :raises InvalidJobSpecError: the folder's path has characters a container path may not.
    """
    folder = check_path("job folder (workdir)", workdir)
    mounts: list[Mount] = list(container.mounts)
    if not any(m.target == folder for m in mounts):
        mounts.append(Mount(folder, folder, read_only=False))
    return container.replace(mounts=tuple(mounts), workdir=container.workdir or folder)


def bundle_overlay(container: Container, *, env: Mapping[str, str] | None = None,
                   args: Sequence[str] | None = None) -> dict[str, Any]:
    """What :data:`BUNDLE_PROGRAM` adds to the image's ``config.json`` (pure JSON data).

    :param container: the container (mounts and working directory; see :func:`job_container`).
    :param env: ``process.env`` entries to set (``None``: leave the image's; Slurm adds the step's).
    :param args: ``process.args`` (runtimes run directly; Slurm replaces them with the step's).
    """
    mounts = [{"destination": m.target, "type": "bind", "source": m.source,
               "options": ["rbind", "ro" if m.read_only else "rw", "nosuid", "nodev"]} for m in container.mounts]
    overlay: dict[str, Any] = {"mounts": mounts, "cwd": container.workdir}
    if env is not None:
        overlay["env"] = [f"{k}={v}" for k, v in env.items()]
    if args is not None:
        overlay["args"] = list(args)
    return overlay


def heredoc(target: str, body: str, kind: str) -> list[str]:
    """``cat > target <<'DELIM'`` lines copying ``body`` verbatim (``target`` is shell text, already quoted).

    The delimiter carries a digest of the body, so no line of the body can equal it.
    """
    delimiter = f"HPCAI_{kind}_" + hashlib.sha256(body.encode()).hexdigest()[:20]
    return [f"cat > {target} <<'{delimiter}'", body.rstrip("\n"), delimiter]


def _require(program: str, why: str) -> str:
    return (f"command -v {program} >/dev/null 2>&1 || {{ echo {shlex.quote(f'hpcai: {why}')} >&2; exit 127; }}")


def slurm_container_lines(container: Container, script: str, workdir: str, *, name: str, nodes: int,
                          cpus: int, env_names: Sequence[str] = ()) -> list[str]:
    """The end of a batch script that runs a job's ``script`` in its ``container`` (pure; all quoted).

    The script is written into ``<workdir>/.hpcai-ct-<job id>/`` by a quoted heredoc and run by
    ``/bin/bash`` in the container: one ``srun`` step (``oci``: Slurm's ``--container`` on a job
    bundle; ``pyxis``: ``--container-image``), or ``apptainer exec`` in the batch step. The
    job's variables reach the container by name (``--export``, ``--container-env``, Apptainer's
    own passing); the folder is removed when the batch script exits.

    :param container: the job's container; :param script: the user's script (verbatim);
    :param workdir: the job's folder; :param name: the job's name (for errors);
    :param nodes: the job's node count; :param cpus: CPUs of the container step;
    :param env_names: the job's own variables, passed into the container by name.
    :raises InvalidJobSpecError: a multi-node job with ``oci`` (Slurm 22.05 runs one task per
        node in a container step), or paths a container cannot take.
    """
    runtime = container.runtime if container.runtime != "auto" else resolve_runtime(container, "slurm")
    inside = job_container(container, workdir)
    folder = f'{shlex.quote(workdir.rstrip("/") or "/")}/.hpcai-ct-"${{SLURM_JOB_ID}}"'
    lines = [
        "# ---- container: the user script below runs in the image ----",
        f"hpcai_ct={folder}",
        'rm -rf -- "$hpcai_ct" && mkdir -p -- "$hpcai_ct" || exit 1',
        "trap 'rm -rf -- \"$hpcai_ct\"' EXIT",
        *heredoc('"$hpcai_ct/script.sh"', script, "SCRIPT"),
    ]
    for key, value in container.env.items():
        lines.append(f"export {key}={shlex.quote(value)}")
    names = sorted({*env_names, *container.env})
    command = ["/bin/bash"]
    if runtime == "oci":
        if nodes != 1:
            raise InvalidJobSpecError(
                f"job {name}: Slurm's --container (runtime 'oci') runs one container step on one node here "
                "(22.05 refuses more than one task per node in it): ask for nodes=1 and start the ranks inside with "
                "the image's mpiexec, or use runtime 'pyxis' on a cluster with Pyxis"
            )
        overlay = json.dumps(bundle_overlay(inside), sort_keys=True)
        lines += [
            _require("python3", "runtime 'oci' prepares the job's bundle with python3 on the node; install it"),
            # An unprivileged user runs the image's rootless twin (scripts/build-image writes <bundle>-<user>).
            f"hpcai_image={shlex.quote(container.image)}",
            ('if [ "$(id -u)" != 0 ] && [ -f "$hpcai_image-$(id -un)/config.json" ]; then '
             'hpcai_image="$hpcai_image-$(id -un)"; fi'),
            (f'python3 -c {shlex.quote(BUNDLE_PROGRAM)} "$hpcai_image" "$hpcai_ct/bundle" '
             "<<'HPCAI_OVERLAY' || exit 1"),
            overlay,
            "HPCAI_OVERLAY",
            "srun --nodes=1 --ntasks=1 " + shlex.quote(f"--cpus-per-task={cpus}")
            + ' --container="$hpcai_ct/bundle" ' + shlex.quote("--export=" + (",".join(names) or "NONE"))
            + " " + shlex.join(command) + ' "$hpcai_ct/script.sh"',
        ]
    elif runtime == "pyxis":
        launch = pyxis_launch(inside.replace(env=dict.fromkeys(names, "")), command)
        lines.append("srun --nodes=1 --ntasks=1 " + shlex.quote(f"--cpus-per-task={cpus}") + " "
                     + shlex.join([*launch.options, *launch.command]) + ' "$hpcai_ct/script.sh"')
    elif runtime == "apptainer":
        launch = apptainer_launch(inside, command)
        lines += [_require("apptainer", "runtime 'apptainer' needs apptainer on the node; install it")]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in launch.env.items()]
        lines.append(shlex.join([*launch.options, *launch.command]) + ' "$hpcai_ct/script.sh"')
    else:
        raise InvalidJobSpecError(f"job {name}: runtime {runtime!r} does not run on Slurm; use oci, pyxis, "
                                  "apptainer or auto")
    return lines

