"""A fake slurmrestd: an :class:`httpx.MockTransport` handler over the fake cluster.

Responses are the real v0.0.38 answers captured from Slurm 22.05.8
(``tests/fixtures/slurmrestd/v0.0.38/`` and ``tests/fakes/data/v0.0.38/``) with the fields of
the fake cluster's jobs written into them, so :class:`~airflow_provider_hpcai.slurm.rest_transport.RestTransport`
is tested at its real HTTP seam. ``version="v0.0.40"`` (or ``v0.0.41``/``v0.0.42``) serves the
shapes newer Slurm releases use (numbers as ``{"set", "infinite", "number"}``, states as lists,
the environment as a list), rejects v0.0.38-shaped submissions, and treats a wrong token as the
real 24.11 does (``tests/fixtures/slurmrestd/v0.0.4x/``): ``/ping`` still answers 200, everything
else HTTP 511 with error 1007. Both list their version in ``GET /openapi/v3``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_hpcai.slurm.states import Phase
from tests.fakes.slurm import MIB, FakeJob, FakeSlurmTransport

__all__ = ["FIXTURES", "FakeSlurmRestServer", "load_fixture"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurmrestd" / "v0.0.38"
EXTRA = Path(__file__).resolve().parent / "data" / "v0.0.38"


def load_fixture(name: str, version: str = "v0.0.38") -> dict[str, Any]:
    """A captured response (``jobs``, ``slurmdb_job_oom``...; for v0.0.38 ``nodes``/``partitions`` too)."""
    folders = (FIXTURES, EXTRA) if version == "v0.0.38" else (FIXTURES.parent / version,)
    for folder in folders:
        path = folder / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


def _num(version: str, value: int | None) -> Any:
    if version == "v0.0.38":
        return value
    return {"set": value is not None, "infinite": False, "number": value or 0}


class FakeSlurmRestServer:
    """slurmrestd over a :class:`FakeSlurmTransport` cluster.

    :param cluster: the cluster (a new one when ``None``).
    :param version: ``"v0.0.38"`` or ``"v0.0.40"``.
    :param token: the JWT it accepts.
    """

    def __init__(self, cluster: FakeSlurmTransport | None = None, *, version: str = "v0.0.38",
                 token: str = "secret-jwt-token", user: str = "hpcai") -> None:
        if version not in ("v0.0.38", "v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"):
            raise ValueError(version)
        self.cluster = cluster or FakeSlurmTransport()
        self.version = version
        self.token = token
        self.user = user
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.fail_next_status: list[int] = []  # HTTP statuses to answer the next requests with
        #: errors the next submission is accepted with (22.05 answers some invalid requests with
        #: HTTP 200, a job id and errors, and the job then stays pending for ever)
        self.accept_with_errors: list[str] = []
        self.openapi = True  # False: no /openapi/v3 (404), as some servers in front of slurmrestd
        #: /slurm/<v>/jobs/state/ (24.11+; not 22.05's v0.0.38): listed in /openapi/v3 and answered
        self.job_states = version != "v0.0.38"

    # ------------------------------------------------------------------ plumbing
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self, base_url: str = "http://slurm-head:6820") -> httpx.Client:
        return httpx.Client(transport=self.transport(), base_url=base_url)

    @property
    def meta(self) -> dict[str, Any]:
        return copy.deepcopy(load_fixture("ping")["meta"])

    def _json(self, status: int, payload: dict[str, Any]) -> httpx.Response:
        return httpx.Response(status, json=payload)

    def _errors(self, status: int, description: str, number: int, error: str) -> httpx.Response:
        return self._json(status, {"meta": self.meta, "errors": [
            {"description": description, "error_number": number, "error": error, "source": "fake"}]})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_next_status:
            status = self.fail_next_status.pop(0)
            return self._errors(status, "Service Unavailable", -1, "fake outage")
        if request.url.path == "/openapi/v3":
            if not self.openapi:
                return httpx.Response(404, text="Unable find requested URL")
            paths = {f"/{api}/{self.version}/{what}": {} for api in ("slurm", "slurmdb") for what in ("ping", "jobs")}
            if self.job_states:
                paths[f"/slurm/{self.version}/jobs/state/"] = {}
            return self._json(200, {"openapi": "3.0.2", "paths": paths})
        if request.headers.get("X-SLURM-USER-TOKEN") != self.token or \
                request.headers.get("X-SLURM-USER-NAME") != self.user:
            if self.version == "v0.0.38":
                bad = load_fixture("error_bad_token")  # what 22.05 answers to a wrong token: HTTP 500
            elif request.url.path.endswith("/ping"):
                bad = {"_http_status": 200, "body": load_fixture("ping_bad_token", self.version)}  # 24.11: 200
            else:
                bad = load_fixture("error_bad_token", self.version)  # 24.11: HTTP 511, error 1007
            return self._json(bad["_http_status"], bad["body"])
        match = re.match(r"^/(slurm|slurmdb)/(v\d\.\d\.\d+)/(.*)$", request.url.path)
        if not match or match.group(2) != self.version:
            return httpx.Response(404, text="Unable find requested URL")
        api, _, rest = match.groups()
        self.cluster.calls[f"http {request.method} {api}/{rest.split('/')[0]}"] += 1
        if api == "slurmdb":
            found = re.match(r"^job/(\d+)$", rest)
            return self._db_job(found.group(1)) if found else httpx.Response(404, text="Unable find requested URL")
        if rest == "ping" and request.method == "GET":
            return self._json(200, load_fixture("ping"))
        if rest == "job/submit" and request.method == "POST":
            return self._submit(json.loads(request.content))
        if rest.rstrip("/") == "jobs/state" and request.method == "GET" and self.job_states:
            if "," in request.url.params.get("job_id", ""):  # the real one refuses a comma list
                return self._errors(400, "Rejecting request. Failure parsing query", 9000,
                                    "Query empty or not RFC7320 compliant")
            wanted = set(request.url.params.get_list("job_id"))
            return self._json(200, {"meta": self.meta, "errors": [], "jobs": [
                {"job_id": j.job_id, "state": [j.base_state]} for j in self.cluster.jobs.values()
                if j.in_controller and j.job_id in wanted]})
        if rest == "jobs" and request.method == "GET":
            return self._json(200, {"meta": self.meta, "errors": [], "jobs": [
                self._job(j) for j in self.cluster.jobs.values() if j.in_controller]})
        found = re.match(r"^job/(\d+)$", rest)
        if found:
            job = self.cluster.jobs.get(found.group(1))
            if job is None or not job.in_controller:
                missing = load_fixture("error_job_not_found")  # 22.05: HTTP 500, error 2017
                body = copy.deepcopy(missing["body"])
                body["errors"][0]["description"] = f"Unable to find JobId={found.group(1)}"
                return self._json(missing["_http_status"], body)
            if request.method == "DELETE":
                self.cluster.cancel(job.job_id)
                return self._json(200, load_fixture("job_delete_response"))
            return self._json(200, {"meta": self.meta, "errors": [], "jobs": [self._job(job)]})
        if rest == "nodes":
            return self._json(200, self._nodes())
        if rest == "partitions":
            return self._json(200, self._partitions())
        return httpx.Response(404, text="Unable find requested URL")

    # ------------------------------------------------------------------ submit
    def _submit(self, body: dict[str, Any]) -> httpx.Response:
        self.bodies.append(body)
        job = body.get("job") or {}
        script = body.get("script") if "script" in body else job.get("script")
        problems = self._check_body(body, job, script)
        if problems:
            return self._errors(400 if self.version != "v0.0.38" else 500, "; ".join(problems), 9001,
                                "Invalid job submission")
        comment = job.get("comment") or ""
        tag = comment[len("hpcai-tag="):] if comment.startswith("hpcai-tag=") else None
        mem = job.get("memory_per_node")
        mem = mem.get("number") if isinstance(mem, dict) else mem
        limit = job.get("time_limit")
        limit = limit.get("number") if isinstance(limit, dict) else limit
        new = self.cluster.add_job(name=job.get("name", "rest"), script=script or "",
                                   workdir=job.get("current_working_directory", "/tmp"), tag=tag,
                                   requested_memory_bytes=mem * MIB if mem else None,
                                   time_limit_seconds=limit * 60 if limit else None,
                                   alloc_cpus=int(job.get("tasks", 1)) * int(job.get("cpus_per_task", 1)),
                                   array=job.get("array"), body=body)
        if self.version == "v0.0.38":
            answer = copy.deepcopy(load_fixture("job_submit_response"))
            answer["job_id"] = int(new.job_id)
            if self.accept_with_errors:
                answer["errors"] = [{"description": text, "error_number": 2072, "error": "Invalid request",
                                     "source": "_slurm_job_submit"} for text in self.accept_with_errors]
                self.accept_with_errors = []
        else:
            answer = {"meta": self.meta, "errors": [], "warnings": [], "job_id": int(new.job_id),
                      "step_id": "batch", "result": {"job_id": int(new.job_id), "step_id": "batch",
                                                     "error_code": 0, "job_submit_user_msg": ""}}
        return self._json(200, answer)

    def _check_body(self, body: dict[str, Any], job: dict[str, Any], script: Any) -> list[str]:
        problems = []
        if not isinstance(script, str) or not script.startswith("#!"):
            problems.append("script must start with #!")
        env = job.get("environment")
        if self.version == "v0.0.38":
            if not isinstance(env, dict):
                problems.append("environment must be a dictionary in v0.0.38")
            for key in ("time_limit", "memory_per_node", "nodes"):
                if key in job and not isinstance(job[key], int):
                    problems.append(f"{key} must be an integer in v0.0.38")
        else:
            if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
                problems.append("environment must be a list of NAME=value strings")
            for key in ("time_limit", "memory_per_node", "time_minimum"):
                if key in job and not (isinstance(job[key], dict) and job[key].get("set") is True):
                    problems.append(f"{key} must be {{set, infinite, number}}")
            if "excluded_nodes" in job and not isinstance(job["excluded_nodes"], list):
                problems.append("excluded_nodes must be a list")
        if not job.get("current_working_directory"):
            problems.append("current_working_directory is required")
        return problems

    # ------------------------------------------------------------------ job records
    def _job(self, job: FakeJob) -> dict[str, Any]:
        record = copy.deepcopy(load_fixture("job_completed")["jobs"][0])
        v = self.version
        raw_exit = (job.exit_code << 8) | job.signal  # 22.05 reports the wait status
        record.update({
            "job_id": int(job.job_id),
            "name": job.name,
            "comment": job.comment,
            "array_job_id": _num(v, 0),
            "state_reason": job.reason,
            "standard_output": job.stdout_path,
            "standard_error": job.stderr_path,
            "current_working_directory": job.workdir,
            "time_limit": _num(v, (job.time_limit_seconds or 0) // 60 or None),
            "memory_per_node": _num(v, (job.requested_memory_bytes or 0) // MIB or None),
            "nodes": job.outcome.node_list if job.started else "",
            "start_time": _num(v, job.started or 0),
            "end_time": _num(v, job.ended or 0),
            "submit_time": _num(v, job.submitted),
        })
        if v == "v0.0.38":
            record["job_state"] = job.base_state
            record["exit_code"] = raw_exit
        else:
            record["job_state"] = [job.base_state]
            status = "SIGNALED" if job.signal else ("EXITED" if job.phase is not Phase.ACTIVE else "PENDING")
            record["exit_code"] = {"status": [status], "return_code": _num(v, job.exit_code),
                                   "signal": {"id": _num(v, job.signal or None), "name": ""}}
        return record

    def _db_job(self, job_id: str) -> httpx.Response:
        job = self.cluster.jobs.get(job_id)
        if job is None or not job.in_accounting:
            return self._json(200, load_fixture("slurmdb_error_job_not_found"))
        record = copy.deepcopy(load_fixture("slurmdb_job_ok")["jobs"][0])
        v = self.version
        step = copy.deepcopy(record["steps"][0])
        final = job.phase is not Phase.ACTIVE
        result = job.outcome
        batch_state = (result.batch_state or job.state) if final else "RUNNING"
        batch_signal = (result.batch_signal if result.batch_signal is not None else job.signal) if final else 0
        rss = result.max_rss_bytes if result.max_rss_bytes is not None else 64 * MIB
        for item in step["tres"]["requested"]["max"]:
            if item["type"] == "mem":
                item["count"] = rss
        step["state"] = batch_state.split(" ")[0] if v == "v0.0.38" else [batch_state.split(" ")[0]]
        step["exit_code"] = self._db_exit(job.exit_code, batch_signal)
        step["step"] = {"job_id": int(job.job_id), "id": "batch", "name": "batch"} if v == "v0.0.38" else \
            {"id": f"{job.job_id}.batch", "name": "batch"}
        elapsed = ((job.ended or job.started or 0) - (job.started or 0)) if job.started else 0
        record.update({
            "job_id": int(job.job_id),
            "name": job.name,
            "nodes": job.outcome.node_list if job.started else "None assigned",
            "comment": {"administrator": None, "job": job.comment or None, "system": None},
            "exit_code": self._db_exit(job.exit_code, job.signal),
            "required": {"CPUs": job.alloc_cpus, "memory": (job.requested_memory_bytes or 0) // MIB} if v == "v0.0.38"
            else {"CPUs": job.alloc_cpus, "memory_per_node": _num(v, (job.requested_memory_bytes or 0) // MIB)},
            "state": {"current": job.base_state if v == "v0.0.38" else [job.base_state], "reason": "None"},
            "steps": [step] if job.started else [],
        })
        record["time"].update({"elapsed": elapsed, "start": job.started or 0, "end": job.ended or 0,
                               "submission": job.submitted,
                               "limit": _num(v, (job.time_limit_seconds or 0) // 60 or None)})
        return self._json(200, {"meta": self.meta, "errors": [], "jobs": [record]})

    def _db_exit(self, code: int, signal: int) -> dict[str, Any]:
        if self.version == "v0.0.38":
            # 22.05's slurmdbd REST reports return_code 0 for a job that exited 3 (see the
            # captured slurmdb_job_exit3.json): only a signal comes through.
            if signal:
                return {"status": "SIGNALED", "return_code": None,
                        "signal": {"signal_id": signal, "name": "Killed" if signal == 9 else "Terminated"}}
            return {"status": "SUCCESS", "return_code": 0}
        return {"status": ["SIGNALED" if signal else "EXITED"], "return_code": _num(self.version, code),
                "signal": {"id": _num(self.version, signal or None), "name": ""}}

    # ------------------------------------------------------------------ nodes, partitions
    def _nodes(self) -> dict[str, Any]:
        payload = load_fixture("nodes")
        if self.version == "v0.0.38":
            return payload
        for node in payload["nodes"]:
            node["state"] = [node["state"].upper()]
            node["alloc_idle_cpus"] = node.pop("idle_cpus")
            node["free_mem"] = _num(self.version, node.pop("free_memory"))
        return payload

    def _partitions(self) -> dict[str, Any]:
        payload = load_fixture("partitions")
        if self.version == "v0.0.38":
            return payload
        parts = []
        for part in payload["partitions"]:
            parts.append({"name": part["name"], "nodes": {"configured": part["nodes"]},
                          "cpus": {"total": part["total_cpus"]},
                          "maximums": {"time": _num(self.version, part["max_time_limit"])},
                          "partition": {"state": [part["state"]]}})
        payload["partitions"] = parts
        return payload
