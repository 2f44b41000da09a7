"""Run a simulation kernel (seismic, climate, assembly line...) as a job on any backend.

The kernel runs as a command (``python -m simulation_kernels.<kernel>``), never as an
import: numba and mpi4py stay off Airflow's import path. Its parameters are checked with
:func:`airflow_provider_hpcai.kernel_params.validate` (the provider's copy of
``simulation_kernels.params``) when the task runs, before anything is submitted,
and reach the job as a JSON file written by a quoted heredoc (data, never code).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from airflow.sdk import Asset

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends import BACKENDS, backend_class
from airflow_provider_hpcai.exceptions import HpcAiError, InvalidJobSpecError
from airflow_provider_hpcai.launchers import (
    LAUNCHERS,
    Launcher,
    MpiexecLauncher,
    NoLauncher,
    default_mpiexec,
    get_launcher,
)
from airflow_provider_hpcai.operators.base import BaseJobOperator, coerce_resources
from airflow_provider_hpcai.resources import Resources

__all__ = ["INPUT_FILE", "SUMMARY_FILE", "SimulationOperator", "kernel_argv", "simulation_script"]

#: The parameter file the script writes into the output folder (the kernel's ``--config``).
INPUT_FILE = "hpcai-input.json"
SUMMARY_FILE = "summary.json"
#: Marks the output line that carries the summary as JSON.
SUMMARY_MARKER = "hpcai-summary-json: "
_KERNEL_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
_PATH_CLEAN = re.compile(r"[^A-Za-z0-9_.\-]+")
_DEVICES = ("cpu", "cuda", "auto")
_MAX_SUMMARY = 16 * 1024 * 1024


def kernel_argv(kernel: str, *, python: str, config_path: str, output_dir: str, mpi: bool) -> list[str]:
    """One rank's command line: ``python [-m mpi4py] -m simulation_kernels.<kernel> --config C --output D``.

    ``-m mpi4py`` makes an exception on one rank abort the whole run instead of hanging it.
    """
    wrap = ["-m", "mpi4py"] if mpi else []
    return [python, *wrap, "-m", f"simulation_kernels.{kernel}", "--config", config_path, "--output", output_dir]


def simulation_script(kernel: str, params: dict[str, Any], *, ranks: int, launcher: Launcher, python: str,
                      output_dir: str) -> str:
    """The bash script that runs ``kernel`` on ``ranks`` ranks (pure; every value shell-quoted).

    The parameters go through a heredoc with a quoted delimiter: the shell copies them
    verbatim, so no parameter value (quotes, ``$(...)``, backticks, ``EOF``) can run as code.

    :param kernel: the kernel's name.
    :param params: its parameters (JSON-serialisable).
    :param ranks: MPI ranks.
    :param launcher: what starts the ranks.
    :param python: the interpreter on the machine the job runs on.
    :param output_dir: the kernel's output folder (relative paths: the job's working directory).
    """
    try:
        payload = json.dumps(params, sort_keys=True, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidJobSpecError(f"kernel parameters must be plain JSON (numbers, text, lists, maps): {err}") from err
    # One line, starting with "{": it can never equal the delimiter line, which is unique anyway.
    delimiter = "HPCAI_CONFIG_" + hashlib.sha256(payload.encode()).hexdigest()[:16]
    config_path = f"{output_dir.rstrip('/')}/{INPUT_FILE}"
    argv = kernel_argv(kernel, python=python, config_path=config_path, output_dir=output_dir,
                       mpi=not isinstance(launcher, NoLauncher))
    command = command_line(launcher.command(argv, ranks))
    return "\n".join([
        "set -euo pipefail",
        "export PYTHONUNBUFFERED=1",
        f"mkdir -p -- {shlex.quote(output_dir)}",
        f"cat > {shlex.quote(config_path)} <<'{delimiter}'",
        payload,
        delimiter,
        f"printf 'hpcai: running %s on %s rank(s): %s\\n' {shlex.quote(kernel)} {ranks} {shlex.quote(command)}",
        command,
        # The summary also travels as one line of output, for backends without file access (Kubernetes).
        command_line([python, "-c", _SUMMARY_PRINTER, output_dir.rstrip("/") + "/" + SUMMARY_FILE]),
        "",
    ])


#: Words bash reads as syntax, not as a command, when they come first (shlex leaves them unquoted).
_SHELL_WORDS = frozenset({"!", "[[", "]]", "{", "}", "case", "coproc", "do", "done", "elif", "else", "esac", "fi",
                          "for", "function", "if", "in", "select", "then", "time", "until", "while"})


def command_line(argv: list[str]) -> str:
    """``argv`` as one shell command line whose first word is always looked up as a program.

    ``shlex.join`` quotes what the shell would expand, but bash still gives a first word a
    meaning of its own: ``%1`` (quoted or not, even after ``command``) resumes a job, ``if``
    opens a statement, ``A=b`` assigns. Such a first word goes behind ``env --``, which looks it
    up as a program: it runs, or is not found (127), and is never interpreted.
    """
    first = argv[0] if argv else ""
    line = shlex.join(argv)
    if first.startswith("%") or first in _SHELL_WORDS or "=" in first:
        return "env -- " + line
    return line


#: Prints summary.json as one marked line (no-op when the kernel wrote none).
_SUMMARY_PRINTER = (
    "import json, os, sys\n"
    "p = sys.argv[1]\n"
    "if os.path.exists(p):\n"
    f"    print({SUMMARY_MARKER!r} + json.dumps(json.load(open(p)), separators=(',', ':')))\n"
)


def summary_from_output(text: str) -> dict[str, Any] | None:
    """The summary a job printed with :data:`SUMMARY_MARKER` (the last one wins), or ``None``."""
    found = None
    for line in text.splitlines():
        _, marker, payload = line.partition(SUMMARY_MARKER)
        if marker:
            try:
                found = json.loads(payload)
            except ValueError:
                continue
    return found


class SimulationOperator(BaseJobOperator):
    """Run a simulation kernel on the local machine, Slurm or Kubernetes, and return its summary.

    Returns (XCom) ``{"kernel", "output_dir", "summary", "job"}``: the absolute output folder,
    the kernel's ``summary.json`` and the job's result (state, elapsed time, peak memory...);
    with ``container=``, also ``"container"`` (its fields), so later stages can run in the same image.
    Bad input (unknown kernel, invalid parameters, a rank count that does not divide the grid)
    fails before anything is submitted, with the validator's message.

    :param kernel: the kernel's name (``seismic``, ``climate``, ``assembly_line``...).
    :param kernel_params: its parameters (templated). Not ``params``: Airflow's BaseOperator
        owns that name.
    :param ranks: MPI ranks; ``job_resources.ntasks`` follows it when not given.
    :param job_resources: :class:`~airflow_provider_hpcai.resources.Resources` (or a mapping).
    :param backend: a backend of :data:`~airflow_provider_hpcai.backends.BACKENDS` (``"local"``,
        ``"slurm"``, ``"kubernetes"``...; default ``[hpcai] default_backend``).
    :param conn_id: the backend's connection.
    :param launcher: ``"auto"`` (no launcher for 1 rank; else ``mpiexec`` next to ``python``, or
        the Slurm connection's ``launcher`` extra), ``"none"``, ``"mpiexec"``, ``"mpirun"``, ``"srun"``.
    :param output_dir: the kernel's output folder (templated); default
        ``hpcai-sim/<dag_id>/<run_id>/<task_id>`` under the job's working directory. A fixed
        absolute folder is declared as the task's ``file://`` asset outlet.
    :param python: the interpreter on the machine the job runs on (default: the backend's, see
        :meth:`~airflow_provider_hpcai.backends.base.JobBackend.python`).
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (default: the parameters' own). On Slurm
        and Kubernetes, ``"cuda"`` asks for one GPU unless ``job_resources`` names some.
    :param container: run the kernel in this image (see :class:`~airflow_provider_hpcai.operators.base.BaseJobOperator`):
        ``python`` is then the image's, and several ranks start inside the container with the image's
        ``mpiexec`` (``-launcher fork``: one container per job, as Slurm 22.05's ``--container`` allows).
        The image needs the kernels' dependencies and the ``simulation_kernels`` package (installed, or
        mounted with ``PYTHONPATH`` in the container's ``env``).
    """

    template_fields: Sequence[str] = ("kernel_params", "output_dir", "environment", "job_name", "workdir")
    template_fields_renderers: ClassVar[dict[str, str]] = {"kernel_params": "json", "environment": "json"}
    ui_color = "#e3f0d6"

    def __init__(
        self,
        *,
        kernel: str,
        kernel_params: dict[str, Any] | None = None,
        ranks: int = 1,
        job_resources: Resources | dict[str, Any] | None = None,
        backend: str | None = None,
        conn_id: str | None = None,
        launcher: str = "auto",
        output_dir: str | None = None,
        python: str | None = None,
        device: Literal["cpu", "cuda", "auto"] | None = None,
        **kwargs: Any,
    ) -> None:
        backend = backend or config.get("default_backend") or "local"
        if backend not in BACKENDS:
            raise InvalidJobSpecError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
        if not isinstance(kernel, str) or not _KERNEL_RE.match(kernel):
            raise InvalidJobSpecError(f"kernel {kernel!r} is not a kernel name (e.g. 'seismic', 'climate')")
        if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
            raise InvalidJobSpecError(f"ranks must be a whole number of at least 1, got {ranks!r}")
        if launcher != "auto" and launcher not in LAUNCHERS:
            raise InvalidJobSpecError(f"unknown launcher {launcher!r}; choose 'auto' or one of {sorted(LAUNCHERS)}")
        if device is not None and device not in _DEVICES:
            raise InvalidJobSpecError(f"device {device!r} is not allowed; choose one of {', '.join(_DEVICES)}")
        if output_dir is not None and (not isinstance(output_dir, str) or not output_dir.strip()
                                       or any(c in output_dir for c in "\x00\n\r")):
            raise InvalidJobSpecError(f"output_dir {output_dir!r} must be a folder path on one line")
        if output_dir and "{{" not in output_dir and os.path.isabs(output_dir) and "outlets" not in kwargs:
            kwargs["outlets"] = [Asset("file://" + quote(output_dir))]
        super().__init__(job_resources=_job_resources(job_resources, ranks, device, backend), backend=backend,
                         conn_id=conn_id, **kwargs)
        if self.container is not None and launcher in ("srun",):
            raise InvalidJobSpecError(f"task {kwargs.get('task_id')}: launcher 'srun' cannot start ranks inside a "
                                      "container (the image has no srun): use launcher 'auto' or 'mpiexec'")
        self.kernel = kernel
        self.kernel_params = kernel_params if kernel_params is not None else {}
        self.ranks = ranks
        self.launcher = launcher
        self.output_dir = output_dir
        self.python = python
        self.device = device

    # ------------------------------------------------------------------ lifecycle
    def execute(self, context: Any) -> Any:
        self._validate()  # before any backend call: bad input never reaches a cluster
        self._check_kernels_installed()
        out = super().execute(context)
        if isinstance(out, dict) and "job_id" in out and "summary" not in out:
            # An earlier try's job already succeeded and the base class handed back its bare
            # result: read the summary now, so a retry never "succeeds" without one.
            return self.post_process(context, out)
        return out

    def build_script(self, context: Any) -> str:
        params = self._validate()
        return simulation_script(self.kernel, params, ranks=self.ranks, launcher=self._launcher(),
                                 python=self._python(), output_dir=self._output_dir(context))

    def advisor_key(self) -> dict[str, Any]:
        """The task, the kernel, its rank count and its numeric size parameters (``nx``, ``steps``...)."""
        params = self.kernel_params if isinstance(self.kernel_params, dict) else {}
        sizes = {k: v for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {**sizes, **super().advisor_key(), "kernel": self.kernel, "ranks": self.ranks}

    def post_process(self, context: Any, result: dict[str, Any]) -> dict[str, Any]:
        """Read the kernel's ``summary.json`` (through the backend) into the task's result."""
        output_dir = self._output_dir(context)
        if not os.path.isabs(output_dir):
            workdir = (self._ref.extra.get("workdir") if self._ref is not None else None) or (
                os.path.dirname(result["stdout_path"]) if result.get("stdout_path") else "")
            output_dir = os.path.join(workdir, output_dir) if workdir else output_dir
        path = f"{output_dir.rstrip('/')}/{SUMMARY_FILE}"
        backend = self.get_backend()
        summary = None
        if not backend.reads_files:  # the job's files are out of reach: the summary travels in its output
            summary = summary_from_output(backend.job_output(self._ref) or "") if self._ref is not None else None
            if summary is None:
                raise HpcAiError(f"kernel {self.kernel} ended {result.get('state')} but printed no summary; "
                                 "read the job's output above")
        else:
            data = backend.read_file(path, 0, _MAX_SUMMARY)
            if not data:
                raise HpcAiError(f"kernel {self.kernel} ended {result.get('state')} but wrote no {path}; "
                                 "read the job's output above")
            try:
                summary = json.loads(data)
            except ValueError as err:
                raise HpcAiError(f"{path} is not JSON ({err}); the kernel's output may be truncated") from err
        self.log.info("Kernel %s finished: output in %s", self.kernel, output_dir)
        returned = {"kernel": self.kernel, "output_dir": output_dir, "summary": summary, "job": result}
        if self.container is not None:  # downstream stages (a case study's analyses) run in the same image
            returned["container"] = self.container.to_dict()
        return returned

    # ------------------------------------------------------------------ helpers
    def _validate(self) -> dict[str, Any]:
        """The parameters to write (the user's, with ``device``), checked by the kernel's validator."""
        params = self.kernel_params
        if not isinstance(params, dict):
            raise InvalidJobSpecError(f"task {self.task_id}: kernel_params must be a mapping, "
                                      f"not {type(params).__name__}")
        params = dict(params)
        if self.device is not None and params.get("device", self.device) != self.device:
            raise InvalidJobSpecError(f"task {self.task_id}: device={self.device!r} but kernel_params say "
                                      f"device={params['device']!r}; give it once")
        from airflow_provider_hpcai.kernel_params import KERNELS, schema, validate

        if self.kernel not in KERNELS:
            raise InvalidJobSpecError(f"task {self.task_id}: unknown kernel {self.kernel!r}; "
                                      f"choose one of {', '.join(sorted(KERNELS))}")
        if self.device is not None:
            if "device" in schema(self.kernel)["properties"]:
                params["device"] = self.device
            elif self.device == "cuda":
                raise InvalidJobSpecError(f"task {self.task_id}: kernel {self.kernel!r} has no GPU version; "
                                          "use device='cpu' or leave device out")
        try:
            validate(self.kernel, params, self.ranks)
        except ValueError as err:
            raise InvalidJobSpecError(f"task {self.task_id}: {err}") from err
        return params

    def _check_kernels_installed(self) -> None:
        """On the local backend the kernel runs in this environment: name the extra it lacks."""
        import importlib.util

        if self.python or self.container is not None or not self.get_backend().shares_worker_environment:
            return
        from airflow_provider_hpcai.utils.extras import missing_extra

        if importlib.util.find_spec("simulation_kernels") is None:
            raise missing_extra("kernels", feature=f"Kernel {self.kernel!r} on the local backend")
        if self.ranks > 1 and isinstance(self._launcher(), MpiexecLauncher) and (
            importlib.util.find_spec("mpi4py") is None or not os.path.exists(default_mpiexec(sys.executable))
        ):
            raise missing_extra("mpi", feature=f"{self.ranks} MPI ranks on the local backend")

    def _python(self) -> str:
        if self.python:
            return self.python
        return "python" if self.container is not None else self.get_backend().python()

    def _launcher(self) -> Launcher:
        python = self._python()
        name = self.launcher
        if self.container is not None and self.ranks > 1 and name in ("auto", "mpiexec"):
            # Inside the image: its own mpiexec, forking the ranks in this one container (Hydra would
            # otherwise see Slurm's variables and try srun, which the image does not have).
            return MpiexecLauncher(path="mpiexec", extra_args=("-launcher", "fork"))
        if name == "auto":
            if self.ranks == 1:
                return NoLauncher()
            name = self._configured_launcher() or "mpiexec"
        if name == "mpiexec":
            return MpiexecLauncher(path=default_mpiexec(python))
        return get_launcher(name)

    def _configured_launcher(self) -> str | None:
        """The launcher the backend's connection names (e.g. a Slurm connection's ``srun``), if any."""
        name = self.get_backend().launcher_hint()
        return name if name in LAUNCHERS else None

    def _output_dir(self, context: Any) -> str:
        if self.output_dir:
            return self.output_dir
        ti = context.get("ti")
        map_index = getattr(ti, "map_index", -1)
        task = self.task_id + (f"-{map_index}" if isinstance(map_index, int) and map_index >= 0 else "")
        parts = [self.dag_id or "dag", str(context.get("run_id") or "run"), task]
        return "hpcai-sim/" + "/".join(_PATH_CLEAN.sub("_", p).strip(".") or "_" for p in parts)


def _job_resources(value: Resources | dict[str, Any] | None, ranks: int, device: str | None,
                   backend: str) -> Resources:
    """``job_resources`` with ``ntasks`` following ``ranks`` (and a GPU for ``device='cuda'`` off the local machine)."""
    resources = coerce_resources(value)
    if resources.ntasks != ranks:
        if resources.ntasks != 1:
            raise InvalidJobSpecError(
                f"job_resources asks for ntasks={resources.ntasks} but ranks={ranks}: leave ntasks out "
                "(it follows ranks) or make them equal"
            )
        resources = resources.replace(ntasks=ranks)
    if device == "cuda" and resources.gpu_count == 0 and backend_class(backend).schedules_gpus:
        resources = resources.replace(gpus=1)
    return resources
