"""The Grid Engine backend: :class:`JobSpec` -> ``qsub`` on a Grid Engine (SGE 8.1) submit host.

A job is named by its tag (``qsub -N hpcai-...``), so :meth:`GridEngineBackend.find_live` finds
it in one ``qstat``; one ``qstat -xml`` answers for all waiting jobs; a job that left the queue is
read from ``qacct``, whose ``failed`` code says who ended it (the script, an ``h_rt``/``h_vmem``
limit, ``qdel``). Output files are on a file system this host shares with the execution hosts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends.base import JobBackend, JobRef, SharedFileOutput
from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.gridengine import commands
from airflow_provider_hpcai.hooks.gridengine import GridEngineHook
from airflow_provider_hpcai.jobs.states import JobStatus, Phase
from airflow_provider_hpcai.spec import JobSpec, check_path

__all__ = ["GridEngineBackend"]

#: How long a job that left ``qstat`` may wait for its ``qacct`` record (written as it ends).
ACCOUNTING_WAIT_SECONDS = 30.0


class GridEngineBackend(SharedFileOutput, JobBackend):
    """Runs jobs on Grid Engine through its commands on this host.

    :param conn_id: unused (Grid Engine's commands read ``SGE_ROOT``/``SGE_CELL``).
    :param hook: use this hook (tests).
    :param queue: the queue to submit to (default: Grid Engine's choice).
    :param base_dir: where job folders go (default ``[hpcai] local_work_dir``, else ``~/.hpcai/gridengine``);
        it must be shared with the execution hosts.
    """

    name = "gridengine"
    can_defer = True
    ignores = ("partition", "account", "qos", "constraint", "reservation", "image")

    def __init__(self, conn_id: str | None = None, *, hook: GridEngineHook | None = None, queue: str | None = None,
                 base_dir: str | None = None, **options: Any) -> None:
        super().__init__(conn_id or "gridengine_default", **options)
        self.hook = hook or GridEngineHook()
        self.queue = queue
        self.base_dir = base_dir
        self._missing_since: dict[str, float] = {}

    def _folder(self, workdir: str | None, tag: str) -> Path:
        chosen = os.path.expanduser(workdir or self.base_dir or config.get("local_work_dir") or "~/.hpcai/gridengine")
        return Path(check_path("workdir", chosen)) / tag

    # ------------------------------------------------------------------ contract
    def submit(self, spec: JobSpec, *, workdir: str | None = None) -> JobRef:
        self.check_components(spec)
        folder = self._folder(workdir or spec.workdir, spec.tag or f"job-{time.time_ns()}")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.time_ns()
        script, out, err = (folder / f"hpcai-{stamp}.sh", folder / f"hpcai-{stamp}.out", folder / f"hpcai-{stamp}.err")
        script.write_text(commands.job_script(spec))
        argv = commands.qsub_argv(spec, script_path=str(script), stdout_path=str(out), stderr_path=str(err),
                                  workdir=str(folder), queue=self.queue)
        job_id = commands.check_job_id(self.hook.run(argv).strip().split(".")[0])
        res = spec.resources
        return JobRef(self.name, job_id, spec.tag, str(out), str(err),
                      {"workdir": str(folder), "submitted_at": time.time(), "time_limit": res.time_limit_seconds,
                       "memory_limit": res.memory_bytes, "digest": spec.digest})

    def _queued(self) -> dict[str, dict[str, str]]:
        return commands.parse_qstat_xml(self.hook.run(["qstat", "-xml", "-u", "*"]))

    def find_live(self, tag: str, *, workdir: str | None = None) -> JobRef | None:
        live = [(int(j), info) for j, info in self._queued().items() if info["name"] == tag
                and JobStatus(j, commands.live_state(info["state"])).phase is Phase.ACTIVE]
        if not live:
            return None
        job_id = str(max(live)[0])
        folder = self._folder(workdir, tag)
        outs = sorted(folder.glob("hpcai-*.out"))
        out = str(outs[-1]) if outs else None
        return JobRef(self.name, job_id, tag, out, out[:-4] + ".err" if out else None, {"workdir": str(folder)})

    def _finished(self, ref: JobRef) -> tuple[JobStatus | None, dict[str, str]]:
        try:
            record = commands.parse_qacct(self.hook.run(["qacct", "-j", ref.job_id], ok_codes=(0, 1)))
        except TransportError:
            record = {}
        if not record:  # it left the queue a moment ago, or Grid Engine never knew it
            since = self._missing_since.setdefault(ref.job_id, time.monotonic())
            if time.monotonic() - since < ACCOUNTING_WAIT_SECONDS:
                return JobStatus(ref.job_id, "COMPLETING", "waiting for its accounting record", tag=ref.tag), {}
            return None, {}
        state, code, reason = commands.final_state(record, time_limit=ref.extra.get("time_limit"),
                                                   memory_limit=ref.extra.get("memory_limit"))
        return JobStatus(ref.job_id, state, reason, code, ref.tag), record

    def statuses(self, refs: Sequence[JobRef]) -> dict[str, JobStatus | None]:
        if not refs:
            return {}
        queued = self._queued()
        found: dict[str, JobStatus | None] = {}
        for ref in refs:
            info = queued.get(ref.job_id)
            if info is not None and (not ref.tag or info["name"] in (ref.tag, "")):
                found[ref.job_id] = JobStatus(ref.job_id, commands.live_state(info["state"]), tag=ref.tag)
            else:
                found[ref.job_id] = self._finished(ref)[0]
        return found

    def describe(self, ref: JobRef) -> str:
        return f"Grid Engine job {ref.job_id}"

    def result_extra(self, ref: JobRef) -> dict[str, Any]:
        return {**super().result_extra(ref), "transport": "qsub"}

    def accounting(self, ref: JobRef, status: JobStatus) -> dict[str, Any]:
        deadline = time.monotonic() + ACCOUNTING_WAIT_SECONDS
        while True:
            final, record = self._finished(ref)
            if record or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not record or final is None:
            return {}
        return commands.accounting_record(record, final.state, final.exit_code)

    def cancel(self, ref: JobRef) -> None:
        self.hook.run(["qdel", commands.check_job_id(ref.job_id)], ok_codes=(0, 1))
