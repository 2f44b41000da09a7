"""Mapped task instances submitted as chunks of one Slurm job array (``array_batch=``).

How a chunk runs (one sbatch for up to ``array_batch`` mapped items):

* Map index ``m`` belongs to chunk ``m // size``; its element is ``m - chunk * size``.
* The chunk has a folder ``<workdir>/hpcai-array-<chunk tag>/`` on a file system the workers
  share with the cluster. Each task instance renders only its own script and environment and
  writes them, complete, as ``item-<element>.sh`` (written aside, then hard-linked into place, so
  the file appears whole or not at all). No task instance needs another's context.
* The first task instance of the chunk to take the folder's lock submits the array
  (``--array=0-<n-1>``, tagged with the chunk tag) and records its id in ``chunk.json``; the
  others read it there. Where ``chunk.json`` is missing but the controller holds a live job with
  the chunk tag (a crash between sbatch and the write), that job is taken: one submission per
  chunk, even when task instances race.
* The array is submitted held; each task instance releases its own element once its script is
  in place (``scontrol release <array id>_<i>``, or ``POST /job/<id>`` with ``hold: false``), so no
  element starts, or spends its time limit, before its task instance comes. An item that runs
  alone instead cancels its held element. Where the transport cannot release one element
  (slurmrestd 24.11+ refuses an element id in a job update), the array is submitted unheld and
  its elements wait for their scripts, which counts against their time limit: give such tasks a
  time limit with room for the slowest task instance to arrive, or use the CLI transport.
  Element ``i`` runs ``item-<i>.sh`` (waiting up to
  :data:`ITEM_WAIT_SECONDS` for it to become visible on a shared file system). If it is still
  missing then (an element released by hand), the element claims the name itself (an empty
  file, created exclusively) and exits :data:`EXPIRED_EXIT`; the task instance that comes later
  finds the name taken and submits its item as a job of its own. Exactly one of the two wins.
* Controller cost per chunk: one ``REQUEST_SUBMIT_BATCH_JOB``, and one light job update (the
  release) per item, where one job per item costs one submission per item.
* Each task instance then waits on its own element, ``<array id>_<i>``, with the shared batched
  poller, and gets its own state, result, log (``hpcai-<array id>_<i>.out``) and retries. A retry
  (any try after the first) submits the item alone, never the chunk again.

The folder must be visible from the worker (the ``local`` transport, or ``rest`` reading output
from this host): over SSH the worker cannot write the items, and ``array_batch`` is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import time
from collections.abc import Iterator
from typing import Any

from airflow_provider_hpcai.exceptions import ConfigurationError, InvalidJobSpecError
from airflow_provider_hpcai.jobs.ref import JobRef
from airflow_provider_hpcai.slurm.script import output_paths
from airflow_provider_hpcai.spec import JobSpec, check_path, make_tag

__all__ = [
    "EXPIRED_EXIT",
    "ITEM_WAIT_SECONDS",
    "ArrayChunk",
    "Placement",
    "chunk_tag",
    "dispatcher_script",
    "element_script",
    "placement",
]

#: How long an array element waits for its task instance to write its script.
ITEM_WAIT_SECONDS = 300
#: The exit code of an element whose task instance never wrote its script in time.
EXPIRED_EXIT = 75
_MAX_ARRAY_BATCH = 10000


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one mapped item sits: its chunk, the chunk's first map index, its element, the chunk's size."""

    chunk: int
    start: int
    element: int
    size: int


def check_array_batch(value: Any) -> int | None:
    """Validate ``array_batch``: ``None`` (off) or a whole number from 1 to 10,000."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ARRAY_BATCH:
        raise InvalidJobSpecError(f"array_batch {value!r} must be a whole number from 1 to {_MAX_ARRAY_BATCH} "
                                  "(the mapped items per Slurm job array), or None")
    return value


def placement(map_index: int, total: int, batch: int) -> Placement:
    """The chunk of ``map_index`` among ``total`` mapped items, ``batch`` per chunk."""
    if not 0 <= map_index < total:
        raise ValueError(f"map index {map_index} is outside 0..{total - 1}")
    chunk = map_index // batch
    start = chunk * batch
    return Placement(chunk, start, map_index - start, min(batch, total - start))


def chunk_tag(dag_id: str, task_id: str, run_id: str, chunk: int) -> str:
    """The tag of one chunk's array job (never equal to a task instance's own tag)."""
    return make_tag(dag_id, f"{task_id}\x1farray-chunk", run_id, chunk)


def element_script(spec: JobSpec) -> str:
    """What one element runs: the item's environment (quoted) and its rendered script."""
    lines = ["#!/bin/bash"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(spec.environment.items())]
    lines.append(spec.script.rstrip("\n"))
    return "\n".join(lines) + "\n"


def dispatcher_script(folder: str, wait_seconds: int = ITEM_WAIT_SECONDS) -> str:
    """The array's own script: element ``$SLURM_ARRAY_TASK_ID`` runs ``item-<id>.sh`` of ``folder``."""
    check_path("array folder", folder)
    where = shlex.quote(folder)
    return "\n".join([
        f"item={where}/item-${{SLURM_ARRAY_TASK_ID}}.sh",
        # $SECONDS, not date: hundreds of waiting elements must not fork more than a sleep each.
        "pause=1",
        'while [ ! -e "$item" ]; do',
        f'  if [ "$SECONDS" -ge {int(wait_seconds)} ]; then',
        # Claim the name: the task instance, when it comes, then submits its item alone. Where the
        # job's user cannot write the folder, the element waits on (until its time limit).
        '    if ( set -C; : > "$item" ) 2>/dev/null; then',
        (f'      echo "[hpcai] no script for array element ${{SLURM_ARRAY_TASK_ID}} after {int(wait_seconds)} s: '
         'its task instance runs it as a job of its own" >&2'),
        f"      exit {EXPIRED_EXIT}",
        "    fi",
        "  fi",
        '  [ -e "$item" ] || sleep "$pause"; [ "$pause" -ge 8 ] || pause=$((pause * 2))',
        "done",
        'bash "$item"',
    ]) + "\n"


class ArrayChunk:
    """One chunk's folder on a file system this worker shares with the cluster.

    :param workdir: the jobs' working directory.
    :param tag: the chunk's tag (:func:`chunk_tag`).
    """

    def __init__(self, workdir: str, tag: str) -> None:
        self.workdir = check_path("workdir", workdir)
        self.tag = tag
        self.folder = f"{self.workdir.rstrip('/')}/hpcai-array-{tag}"

    def item_path(self, element: int) -> str:
        return f"{self.folder}/item-{int(element)}.sh"

    def write_item(self, element: int, text: str) -> str:
        """Put the item's script in place, whole.

        :return: ``"written"`` (now in place), ``"same"`` (an earlier try of this task instance put
            the same text there), ``"expired"`` (the element gave up waiting and claimed the name),
            or ``"other"`` (another text is there: another input's).
        """
        os.makedirs(self.folder, mode=0o755, exist_ok=True)
        path = self.item_path(element)
        aside = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        with open(aside, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(aside, 0o644)
        try:
            os.link(aside, path)  # atomic, and fails if the name exists (the element's claim)
            return "written"
        except FileExistsError:
            with open(path, encoding="utf-8", errors="replace") as handle:
                there = handle.read()
            return "expired" if not there else "same" if there == text else "other"
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the chunk's lock (released by the kernel if this process dies)."""
        os.makedirs(self.folder, mode=0o755, exist_ok=True)
        with open(f"{self.folder}/lock", "a", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def recorded(self) -> dict[str, Any] | None:
        """The chunk's array job as recorded by its submitter (``None``: none yet)."""
        try:
            with open(f"{self.folder}/chunk.json", encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and str(data.get("job_id", "")).isdigit() else None

    def record(self, data: dict[str, Any]) -> None:
        path = f"{self.folder}/chunk.json"
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(path + ".tmp", path)


def require_shared_files(transport_name: str, extras: dict[str, Any]) -> None:
    """Refuse ``array_batch`` where this worker cannot write the chunk's folder on the cluster."""
    if transport_name == "ssh" or extras.get("log_ssh_conn_id"):
        raise ConfigurationError(
            "array_batch needs the jobs' working folder on a file system this worker shares with the cluster "
            "(transport 'local', or 'rest' without log_ssh_conn_id); over SSH the worker cannot write each item's "
            "script. Leave array_batch unset to submit one job per mapped item.")


def element_ref(backend_name: str, array_job_id: str, element: int, workdir: str, tag: str,
                extra: dict[str, Any]) -> JobRef:
    """The reference of array element ``element`` (job id ``<array id>_<element>``)."""
    out, err = output_paths(workdir, array=True)
    name = f"{array_job_id}_{int(element)}"
    concrete = {"%A": array_job_id, "%a": str(int(element))}
    for key, value in concrete.items():
        out, err = out.replace(key, value), err.replace(key, value)
    return JobRef(backend_name, name, tag, out, err, {**extra, "workdir": workdir, "array_element": int(element)})


def submit_in_chunk(backend: Any, spec: JobSpec, *, tag: str, place: Placement, workdir: str | None,
                    log: Any) -> JobRef | None:
    """Join (or submit) the chunk's array job for this item; ``None``: submit the item alone instead.

    :param backend: the :class:`~airflow_provider_hpcai.backends.slurm.SlurmBackend`.
    :param spec: this task instance's own job (its rendered script, environment, resources).
    :param tag: the chunk's tag (:func:`chunk_tag`).
    :param place: where the item sits (:func:`placement`).
    :param workdir: the task's working folder (``None``: the connection's).
    """
    hook = backend.hook
    require_shared_files(hook.transport_name, hook.extras)
    where = hook.workdir(workdir)
    chunk = ArrayChunk(where, tag)
    shape = json.dumps({"name": spec.name, "resources": spec.resources.to_dict(), "exclude": spec.exclude_nodes},
                       sort_keys=True, default=str)
    with chunk.locked():
        info = chunk.recorded()
        if info is not None and info.get("shape") != shape:
            log.warning("Array chunk %s (job %s) was submitted with other resources or name than this item's: "
                        "submitting the item as a job of its own", tag, info.get("job_id"))
            _drop_element(hook, info, place, log)
            return None
        wrote = chunk.write_item(place.element, element_script(spec))
        if wrote in ("expired", "other"):
            log.warning("Element %d of array chunk %s %s: submitting the item as a job of its own", place.element,
                        tag, "gave up waiting for this item" if wrote == "expired" else "holds another input's script")
            if info is not None:
                _drop_element(hook, info, place, log)
            return None
        if info is None:
            found = hook.find_live_job(tag)  # the controller decides where chunk.json was lost
            if found is not None:
                info = {"job_id": found.job_id, "shape": shape, "size": place.size, "submitted_at": None,
                        "held": bool(getattr(hook.get_conn(), "releases_elements", False))}
                log.info("Array chunk %s: adopting live job %s found by its tag", tag, found.job_id)
            else:
                submitted_at = time.time()
                held = bool(getattr(hook.get_conn(), "releases_elements", False))
                array_spec = spec.replace(script=dispatcher_script(chunk.folder), environment={}, tag=tag,
                                          array=f"0-{place.size - 1}", digest=None, hold=held)
                job_id = hook.submit(array_spec, workdir=where)
                info = {"job_id": job_id, "shape": shape, "size": place.size, "submitted_at": submitted_at,
                        "first_map_index": place.start, "held": held}
                log.info("Submitted array job %s for map indexes %d-%d (chunk %d)", job_id, place.start,
                         place.start + place.size - 1, place.chunk)
            chunk.record(info)
    element = f"{info['job_id']}_{place.element}"
    try:
        if info.get("held"):
            hook.release(element)  # its script is in place: the element may start
    except Exception as err:
        log.warning("Could not release array element %s (%s): submitting the item as a job of its own", element, err)
        _drop_element(hook, info, place, log)
        return None
    ref = element_ref(backend.name, str(info["job_id"]), place.element, where, tag,
                      {"conn_id": backend.conn_id, "submitted_at": info.get("submitted_at"),
                       "array_chunk": place.chunk})
    log.info("Map index %d runs as element %s of array job %s", place.start + place.element, ref.job_id,
             info["job_id"])
    return ref


def _drop_element(hook: Any, info: dict[str, Any], place: Placement, log: Any) -> None:
    """Cancel this item's held element (its item runs as a job of its own instead)."""
    element = f"{info.get('job_id')}_{place.element}"
    try:
        hook.cancel(element)
    except Exception as err:  # it stays held; say so, the item still runs
        log.warning("Could not cancel held array element %s: %s", element, err)
