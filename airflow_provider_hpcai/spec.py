"""The job specification every backend receives: what to run and with what.

A :class:`JobSpec` is pure data, validated on construction. Backends (Slurm, Kubernetes,
local) translate it; none of them ever interpolates its fields into a shell unquoted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from airflow_provider_hpcai.containers.model import Container
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources

__all__ = ["TAG_PREFIX", "JobSpec", "check_components", "check_path", "make_tag", "validate_env", "validate_job_name"]

TAG_PREFIX = "hpcai-"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-+=@]{1,128}\Z")
_ARRAY_RE = re.compile(r"^\d+(?:-\d+(?::\d+)?)?(?:,\d+(?:-\d+(?::\d+)?)?)*(?:%\d+)?\Z")
_NODE_LIST_RE = re.compile(r"^[A-Za-z0-9_.\-\[\],]{1,1024}\Z")
_TAG_RE = re.compile(r"^hpcai-[0-9a-f]{20}\Z")
_SIGNAL_RE = re.compile(r"^(?:B:)?(?:USR1|USR2|TERM|INT|HUP|QUIT|URG|CONT)@\d{1,5}\Z")
_MAX_SCRIPT = 4 * 1024 * 1024
_MAX_ENV_VALUE = 128 * 1024
#: Variables a job must not override: they would change how the job itself is run.
_RESERVED_ENV = frozenset({"SLURM_JWT", "LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_ENV", "ENV", "IFS", "PS4"})


def make_tag(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The deterministic tag of one task's job(s) in one DAG run.

    Tries of the same task instance share it, so a retry after a worker crash finds the job
    the crashed try submitted instead of submitting a duplicate.
    """
    digest = hashlib.sha256("\x1f".join([dag_id, task_id, run_id, str(map_index)]).encode()).hexdigest()
    return TAG_PREFIX + digest[:20]


def validate_job_name(name: str) -> str:
    """Check a job name: letters, digits and ``_ . - + = @``, at most 128 characters."""
    if not isinstance(name, str) or not _JOB_NAME_RE.match(name):
        raise InvalidJobSpecError(
            f"job name {name!r} is not allowed: use letters, digits and _ . - + = @ (at most 128 characters)"
        )
    return name


def validate_env(environment: dict[str, Any] | None) -> dict[str, str]:
    """Check environment names and values; values become strings.

    Names must be shell identifiers; values may hold any text except NUL (they are always
    quoted when they reach a script).
    """
    if environment is None:
        return {}
    if not isinstance(environment, dict):
        raise InvalidJobSpecError(f"environment must be a mapping of names to values, not {type(environment).__name__}")
    clean: dict[str, str] = {}
    for key, value in environment.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise InvalidJobSpecError(
                f"environment name {key!r} is not allowed: use letters, digits and '_', not starting with a digit"
            )
        if key in _RESERVED_ENV:
            raise InvalidJobSpecError(f"environment name {key!r} is reserved and cannot be set by a job")
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InvalidJobSpecError(f"environment value of {key} is not UTF-8 text") from err
        text = str(value)
        if "\x00" in text:
            raise InvalidJobSpecError(f"environment value of {key} contains a NUL byte, which cannot be passed")
        if "\r" in text:
            raise InvalidJobSpecError(f"environment value of {key} contains a carriage return (\\r), which sbatch "
                                      "refuses as a DOS line break; remove it")
        _check_utf8(f"environment value of {key}", text)
        if len(text) > _MAX_ENV_VALUE:
            raise InvalidJobSpecError(f"environment value of {key} is longer than {_MAX_ENV_VALUE} characters")
        clean[key] = text
    return clean


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job to run.

    :param name: the job's name (shown by ``squeue``).
    :param script: a bash script body (the user's own code: it runs as written).
    :param resources: what the job asks for.
    :param environment: variables exported to the job (values quoted).
    :param tag: the provider's reattach tag (see :func:`make_tag`).
    :param array: a Slurm array spec (``"0-9%2"``), or ``None``.
    :param exclude_nodes: nodes to avoid (after a node failure, say).
    :param workdir: the job's working directory; the backend's default when ``None``.
    :param image: container image, for backends that run containers.
    :param container: the :class:`~airflow_provider_hpcai.containers.Container` the script runs in
        (a mapping or an image reference is accepted and validated); every backend maps it: Slurm
        (``srun --container``, Pyxis, Apptainer), Kubernetes (the pod's image and volumes), the
        local machine (runc or podman). ``None``: the script runs on the node as it is.
    :param requeue: let the scheduler requeue the job itself after a node failure or preemption
        (off by default: Airflow's retries then decide, with failed nodes excluded).
    :param digest: the digest of what the job runs (:func:`~airflow_provider_hpcai.jobs.digest.submission_digest`
        of the request before any escalation); backends that keep a job record store it, so a
        later try can tell its own job from another input's.
    :param signal: a signal sent before the time limit, as sbatch's ``--signal`` takes it
        (``"B:USR1@120"``: USR1 to the batch shell 120 s before the limit), so the job can write
        a checkpoint (``SlurmJobOperator(checkpoint_signal=...)``).
    :param hold: submit the job held: it starts only once released (``array_batch`` releases
        each array element when its task instance has written the element's script).
    :param components: the further components of a heterogeneous job (``#SBATCH hetjob``), each a
        :class:`~airflow_provider_hpcai.resources.Resources` (a mapping is accepted): ``resources``
        is het group 0 (where the script runs), ``components[i]`` is het group ``i + 1``. The script
        starts work in each group with ``srun --het-group=N``. Empty (default): an ordinary job.
        Only Slurm runs them, and not as arrays.
    """

    name: str
    script: str
    resources: Resources = dataclasses.field(default_factory=Resources)
    environment: dict[str, str] = dataclasses.field(default_factory=dict)
    tag: str | None = None
    array: str | None = None
    exclude_nodes: str | None = None
    workdir: str | None = None
    image: str | None = None
    requeue: bool = False
    digest: str | None = None
    container: Container | None = None
    hold: bool = False
    signal: str | None = None
    components: tuple[Resources, ...] = ()

    def __post_init__(self) -> None:
        if self.signal is not None and (not isinstance(self.signal, str) or not _SIGNAL_RE.match(self.signal)):
            raise InvalidJobSpecError(f"signal {self.signal!r} is not a Slurm --signal value: use e.g. 'B:USR1@120' "
                                      "(USR1, USR2, TERM, INT, HUP, QUIT, URG or CONT; seconds up to 65535)")
        validate_job_name(self.name)
        if self.container is not None and not isinstance(self.container, Container):
            object.__setattr__(self, "container", Container.from_dict(self.container))
        if not isinstance(self.script, str) or not self.script.strip():
            raise InvalidJobSpecError("script is empty: give the bash commands the job should run")
        if "\x00" in self.script:
            raise InvalidJobSpecError("script contains a NUL byte")
        if "\r\n" in self.script:
            raise InvalidJobSpecError("script has DOS line breaks (\\r\\n), which sbatch refuses; convert it "
                                      "with dos2unix or str.replace('\\r\\n', '\\n')")
        _check_utf8("script", self.script)
        if len(self.script) > _MAX_SCRIPT:
            raise InvalidJobSpecError(f"script is longer than {_MAX_SCRIPT} bytes; put large code in a file")
        if not isinstance(self.resources, Resources):
            object.__setattr__(self, "resources", Resources.from_dict(self.resources))
        object.__setattr__(self, "environment", validate_env(self.environment))
        if self.tag is not None and not _TAG_RE.match(self.tag):
            raise InvalidJobSpecError(f"tag {self.tag!r} is not a provider tag (make one with make_tag())")
        if self.array is not None and (not isinstance(self.array, str) or not _ARRAY_RE.match(self.array)):
            raise InvalidJobSpecError(
                f"array {self.array!r} is not a Slurm array spec: use e.g. '0-9', '1,3,5', '0-99:2' or '0-9%2'"
            )
        if self.exclude_nodes is not None and not _NODE_LIST_RE.match(self.exclude_nodes):
            raise InvalidJobSpecError(f"exclude_nodes {self.exclude_nodes!r} is not a node list like 'node[1-3],gpu7'")
        if self.workdir is not None:
            check_path("workdir", self.workdir)
        object.__setattr__(self, "components", check_components(self.components))
        if self.components and self.container is not None:
            raise InvalidJobSpecError(f"job {self.name}: a heterogeneous job (components) cannot run in a container: "
                                      "the container wrap launches one srun over a single allocation; start the "
                                      "image from the script per het group instead (srun --het-group=N "
                                      "--container-image=... or apptainer exec)")
        if self.components and self.array is not None:
            raise InvalidJobSpecError(f"job {self.name}: a heterogeneous job (components) cannot also be a job array "
                                      f"({self.array!r}); Slurm runs no hetjob arrays")

    @property
    def het_groups(self) -> tuple[Resources, ...]:
        """Every component's resources, het group 0 first (just ``(resources,)`` for an ordinary job)."""
        return (self.resources, *self.components)

    def replace(self, **changes: Any) -> JobSpec:
        return dataclasses.replace(self, **changes)


#: Further components at most: Slurm takes 128 components in all (``MAX_HET_JOB_COMPONENTS`` in slurm.h).
MAX_COMPONENTS = 127


def check_components(components: Any) -> tuple[Resources, ...]:
    """The further components of a heterogeneous job, as :class:`Resources` (mappings are converted).

    :raises InvalidJobSpecError: not a list or tuple of ``Resources`` or mappings, or more than
        :data:`MAX_COMPONENTS` of them.
    """
    if components is None:
        return ()
    if isinstance(components, (str, bytes, dict, Resources)) or not isinstance(components, (list, tuple)):
        raise InvalidJobSpecError(f"components must be a list of Resources or dicts (one per further het group), "
                                  f"not {type(components).__name__}")
    if len(components) > MAX_COMPONENTS:
        raise InvalidJobSpecError(f"components lists {len(components)} groups; a Slurm heterogeneous job has at "
                                  f"most {MAX_COMPONENTS + 1} components in all")
    out = []
    for index, item in enumerate(components, start=1):
        if isinstance(item, Resources):
            out.append(item)
        elif isinstance(item, dict):
            try:
                out.append(Resources.from_dict(item))
            except InvalidJobSpecError as err:
                raise InvalidJobSpecError(f"components[{index - 1}] (het group {index}): {err}") from None
        else:
            raise InvalidJobSpecError(f"components[{index - 1}] (het group {index}) must be Resources or a dict, "
                                      f"not {type(item).__name__}")
    return tuple(out)


def _check_utf8(field: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidJobSpecError(f"{field} is not valid UTF-8 text (position {err.start}); pass text, "
                                  "not undecodable bytes") from None


def check_path(field: str, path: str) -> str:
    """Check an absolute path that reaches a batch script (no '..', control characters or backslashes)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidJobSpecError(f"{field} {path!r} must be an absolute path")
    if any(ch in path for ch in "\x00\n\r\\") or "/../" in path + "/" or len(path) > 1024:
        raise InvalidJobSpecError(
            f"{field} {path!r} is not allowed (no '..', backslashes, newlines or NUL; at most 1024 characters)")
    _check_utf8(field, path)
    return path
