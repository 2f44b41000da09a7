"""Container options for Slurm: its own OCI support, Pyxis/enroot, and Apptainer.

Each builder is pure: a validated :class:`~.model.Container` and a command in, a
:class:`~.launch.Launch` out. The documented forms they follow:

* Slurm OCI: ``srun --container=<bundle>`` / ``sbatch --container=<bundle>``
  (https://slurm.schedmd.com/containers.html, ``man oci.conf`` of 22.05). Slurm 22.05 takes the
  mounts and working directory from the bundle's ``config.json`` and appends the step's
  environment to it, later entries winning, so the host's ``PATH`` would replace the image's:
  ``--export=NAMES`` passes only the container's variables (plus Slurm's own), and a working
  directory is entered by a fixed ``sh -c 'cd "$1" && shift && exec "$@"'`` wrapper.
* Pyxis: ``--container-image=[USER@][REGISTRY#]IMAGE[:TAG]|PATH``,
  ``--container-mounts=SRC:DST[:FLAGS][,SRC:DST...]``, ``--container-workdir=PATH``,
  ``--container-env=NAME[,NAME...]`` (https://github.com/NVIDIA/pyxis, README and ``srun --help``).
* Apptainer: ``apptainer exec [--nv] [--bind src:dst[:ro]] [--pwd DIR] IMAGE CMD...``, variables
  as ``APPTAINERENV_<NAME>`` in the launching environment
  (https://apptainer.org/docs/user/main/cli/apptainer_exec.html,
  https://apptainer.org/docs/user/main/environment_and_metadata.html).
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_hpcai.containers.launch import Launch
from airflow_provider_hpcai.containers.model import Container, image_kind
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = [
    "WORKDIR_WRAPPER",
    "apptainer_launch",
    "oci_launch",
    "oci_sbatch_directives",
    "pyxis_image",
    "pyxis_launch",
    "with_workdir",
]

#: A fixed script (never built from input): enter "$1", then run the rest of the arguments.
WORKDIR_WRAPPER = ("/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "hpcai-workdir")


def _command(command: Sequence[str]) -> tuple[str, ...]:
    if isinstance(command, str) or not command:
        raise InvalidJobSpecError("the command to run in a container must be a non-empty list of arguments")
    for arg in command:
        if not isinstance(arg, str) or "\x00" in arg:
            raise InvalidJobSpecError(f"command argument {arg!r} is not text without NUL bytes")
    if command[0].startswith("-"):
        raise InvalidJobSpecError(
            f"the command {command[0]!r} starts with '-': srun and the runtimes would read it as an option; "
            "start the command with the program to run"
        )
    return tuple(command)


def with_workdir(command: Sequence[str], workdir: str | None) -> tuple[str, ...]:
    """``command`` run from ``workdir`` (through :data:`WORKDIR_WRAPPER`), or unchanged."""
    cmd = _command(command)
    return cmd if workdir is None else (*WORKDIR_WRAPPER, workdir, *cmd)


def _export(container: Container) -> str:
    return "--export=" + (",".join(container.env) if container.env else "NONE")


def oci_launch(container: Container, command: Sequence[str], *, bundle: str | None = None) -> Launch:
    """``srun`` options for Slurm's OCI support (runc/crun named in ``oci.conf``).

    :param container: the container; its image is the bundle unless ``bundle`` is given.
    :param command: what to run inside.
    :param bundle: a bundle prepared for this job (:func:`~.oci.write_job_bundle`: the image's
        root file system plus this container's mounts); default: ``container.image``.
    """
    path = bundle or container.image
    if image_kind(path) != "path":
        raise InvalidJobSpecError(
            f"Slurm's --container runs an OCI bundle folder; {container.image!r} is a reference: build a bundle "
            "(scripts/build-image) or pick runtime 'pyxis' or 'apptainer'"
        )
    if bundle is None and container.mounts:
        raise InvalidJobSpecError(
            "Slurm 22.05's --container takes mounts from the bundle's config.json, not from the command line: "
            "prepare a job bundle with containers.oci.write_job_bundle() and pass it as bundle="
        )
    return Launch(
        options=(f"--container={path}", _export(container)),
        command=with_workdir(command, container.workdir),
        env=dict(container.env),
        srun=True,
    )


def oci_sbatch_directives(container: Container, *, bundle: str | None = None) -> list[tuple[str, str]]:
    """``#SBATCH`` pairs that run the whole batch script in the bundle (``--container``).

    In the same ``(option, value)`` form as :func:`~airflow_provider_hpcai.slurm.script.sbatch_directives`,
    so the script builder quotes them. The batch step always receives sbatch's ``PATH`` (even
    with ``--export=NIL``, seen on 22.05), which replaces the image's: a script that runs in the
    container starts with :func:`~.oci.image_env_exports` of the bundle, then the container's
    own variables.
    """
    path = bundle or container.image
    if image_kind(path) != "path":
        raise InvalidJobSpecError(f"sbatch --container needs an OCI bundle folder, not the reference {path!r}")
    return [("container", path)]


def pyxis_image(image: str) -> str:
    """An image for ``--container-image``: a squashfs path as is; a reference in enroot's URI form.

    ``registry.example.org:5000/team/stage:1.2`` becomes ``registry.example.org:5000#team/stage:1.2``
    (enroot separates the registry with ``#``); a Docker Hub name stays as it is.
    """
    if image_kind(image) == "path":
        if not image.endswith((".sqsh", ".squashfs")):
            raise InvalidJobSpecError(
                f"Pyxis runs a registry image or a squashfs file (.sqsh); {image!r} is neither: "
                "HPCAI_IMAGE_SQUASHFS=1 scripts/build-image writes one, or use runtime 'oci' for a bundle"
            )
        return image
    ref = image.removeprefix("docker://")
    first, slash, rest = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return ref


def pyxis_launch(container: Container, command: Sequence[str]) -> Launch:
    """``srun`` options for Pyxis/enroot."""
    options = [f"--container-image={pyxis_image(container.image)}"]
    if container.mounts:
        options.append(
            "--container-mounts="
            + ",".join(f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in container.mounts)
        )
    if container.workdir is not None:
        options.append(f"--container-workdir={container.workdir}")
    if container.env:
        options.append("--container-env=" + ",".join(container.env))
    return Launch(options=tuple(options), command=_command(command), env=dict(container.env), srun=True)


def apptainer_image(image: str) -> str:
    """A path (``.sif``, a sandbox folder) as is; a registry reference as ``docker://...``."""
    if image_kind(image) == "path" or image.startswith("docker://"):
        return image
    return "docker://" + image


def apptainer_launch(container: Container, command: Sequence[str], *, program: str = "apptainer") -> Launch:
    """``apptainer exec`` (also for ``singularity``: pass ``program="singularity"``)."""
    if program not in ("apptainer", "singularity"):
        raise InvalidJobSpecError(f"program must be 'apptainer' or 'singularity', not {program!r}")
    options = [program, "exec"]
    if container.gpus:
        options.append("--nv")
    for m in container.mounts:
        options += ["--bind", f"{m.source}:{m.target}" + (":ro" if m.read_only else "")]
    if container.workdir is not None:
        options += ["--pwd", container.workdir]
    options.append(apptainer_image(container.image))
    prefix = "SINGULARITYENV_" if program == "singularity" else "APPTAINERENV_"
    return Launch(
        options=tuple(options),
        command=_command(command),
        env={prefix + name: value for name, value in container.env.items()},
    )
