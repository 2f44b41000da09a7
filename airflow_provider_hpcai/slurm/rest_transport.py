"""slurmrestd as a transport (JWT auth, OpenAPI v0.0.38 and v0.0.40-v0.0.45).

Status queries ask only for the jobs waited on: where the server publishes
``/slurm/<v>/jobs/state/`` (24.11 and later), one ``GET`` with a ``job_id`` parameter per job
(the controller's light REQUEST_JOB_STATE RPC), then the job's own record only for a job that has
ended (or an array, or one the controller no longer holds). ``GET /jobs`` makes the controller
serialise every job of every user: with 10,000 foreign jobs held, 45-69 ms of controller time
and 77-83 MB per poll, against 0.08 ms and 4 KB (``bench/bench_foreign_jobs.py``,
docs/benchmarks.md). 22.05 (v0.0.38) has no such endpoint and keeps ``/jobs``.

slurmrestd has no file API, so job output is read through a *file reader*: a
:class:`~airflow_provider_hpcai.slurm.cli_transport.CommandRunner` over SSH (connection extra
``log_ssh_conn_id``) or this host's file system when the output is visible here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from airflow_provider_hpcai.exceptions import ConfigurationError, SlurmJobNotFound, TransportError
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.cli_json import fold_array_records
from airflow_provider_hpcai.slurm.cli_transport import CommandRunner, LocalRunner
from airflow_provider_hpcai.slurm.commands import check_job_id, is_element
from airflow_provider_hpcai.slurm.states import JobStatus, Phase, phase_of
from airflow_provider_hpcai.slurm.transport import SlurmTransport
from airflow_provider_hpcai.spec import JobSpec

__all__ = ["RestTransport"]

_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
#: slurmrestd's error number for "no such job" (22.05 answers HTTP 500 with it).
_JOB_NOT_FOUND = 2017
#: HTTP statuses and slurmrestd error numbers that refuse the credentials: 24.11 answers a stale
#: token on /jobs and /job/submit with HTTP 511 and error 1007 (SLURM_PROTOCOL_AUTHENTICATION_ERROR).
_REFUSED_STATUS = {401, 403, 511}
_AUTH_ERROR_NUMBERS = {1007}


def _redacted(err: TransportError, token: str) -> TransportError:
    def clean(text: str) -> str:
        return text.replace(token, "***")

    first = str(err).split("\n", 1)[0]
    return TransportError(clean(first), command=err.command, returncode=err.returncode, stdout=clean(err.stdout),
                          stderr=clean(err.stderr), retryable=err.retryable, credentials=err.credentials)


#: 22.05 answers a wrong or expired token with HTTP 500 "slurmctld config is unable to load", and
#: answers the same while slurmctld restarts: a credentials error that is also worth retrying.
_AMBIGUOUS = "config is unable to load"


def _is_auth_error(text: str) -> bool:
    lowered = text.lower()
    markers = ("token", "authentication", "unauthorized", "rejecting", _AMBIGUOUS)
    return any(word in lowered for word in markers)


class RestTransport(SlurmTransport):
    """Talks to slurmrestd over HTTP.

    :param base_url: e.g. ``http://slurm-head:6820``.
    :param user: the Slurm user the token belongs to (``X-SLURM-USER-NAME``).
    :param token: a callable returning the current JWT (re-read on every request so that a
        rotated token file is picked up); the token never appears in errors or logs.
    :param api_version: ``"auto"`` or one of :data:`rest_api.SUPPORTED_VERSIONS`.
    :param workdir: default working directory on the cluster.
    :param file_reader: where job output is read from (see module docs).
    """

    name = "rest"

    def __init__(
        self,
        base_url: str,
        user: str,
        token: Callable[[], str],
        *,
        api_version: str = "auto",
        workdir: str = "/tmp",
        file_reader: CommandRunner | None = None,
        timeout: float = 30,
        verify: bool | str = True,
        client: httpx.Client | None = None,
        job_path: str | None = None,
    ) -> None:
        self.job_path = rest_api.check_job_path(job_path) if job_path else rest_api.DEFAULT_JOB_PATH
        if api_version != "auto" and api_version not in rest_api.SUPPORTED_VERSIONS:
            raise ConfigurationError(
                f"api_version {api_version!r} is not supported; use 'auto' or one of {rest_api.SUPPORTED_VERSIONS}"
            )
        self.base_url = base_url.rstrip("/")
        self.user = user
        self._token = token
        self._version = None if api_version == "auto" else api_version
        self.workdir = workdir
        self.file_reader = file_reader or LocalRunner()
        self._client = client or httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None  # /openapi/v3, once fetched
        self._state_path: str | None = None  # "/slurm/<v>/jobs/state/" where served, else ""

    @property
    def timeout(self) -> float | None:
        """Seconds each HTTP request may take (the UI's status page shortens it)."""
        return self._client.timeout.read

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._client.timeout = httpx.Timeout(seconds)

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, *, json: Any = None, ok_missing: bool = False,
                 params: dict[str, str] | Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        token = self._token()
        headers = {"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": token}
        what = f"{method} {path}"
        try:
            return self._send(method, path, what, headers, json, params, ok_missing)
        except TransportError as err:
            if token and token in str(err):  # a server that echoes the request must not leak the token
                raise _redacted(err, token) from None
            raise

    def _send(self, method: str, path: str, what: str, headers: dict[str, str], json: Any,
              params: dict[str, str] | Sequence[tuple[str, str]] | None, ok_missing: bool) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, json=json, headers=headers, params=params)
        except httpx.HTTPError as err:
            raise TransportError(f"slurmrestd unreachable: {type(err).__name__}", command=what, retryable=True) from err
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {"errors": [{"description": response.text[:500]}]}
        numbers = {e.get("error_number") for e in payload.get("errors") or [] if isinstance(e, dict)}
        if ok_missing and (response.status_code == 404 or _JOB_NOT_FOUND in numbers):
            return {}
        if response.status_code >= 400:
            errors = "; ".join(rest_api.api_errors(payload)) or response.reason_phrase
            refused = (response.status_code in _REFUSED_STATUS or bool(numbers & _AUTH_ERROR_NUMBERS)
                       or _is_auth_error(errors))
            # The hook re-reads the connection once on a refusal; the ambiguous answer is retried
            # with back-off as well (a restarting slurmctld), so a restart fails no call.
            ambiguous = _AMBIGUOUS in errors.lower()
            if refused:
                errors += " (check the connection's user and token; tokens expire: `scontrol token`)"
            raise TransportError(
                f"slurmrestd answered {response.status_code}: {errors}",
                command=what,
                returncode=response.status_code,
                retryable=response.status_code in _RETRYABLE_STATUS and (not refused or ambiguous),
                credentials=refused,
            )
        return payload

    @property
    def version(self) -> str:
        """The OpenAPI version in use, detected on first use when ``auto``."""
        with self._lock:
            if self._version is None:
                self._version = self._detect_version()
            return self._version

    def _detect_version(self) -> str:
        """The newest version both sides speak, from the OpenAPI document slurmrestd publishes.

        Not from ``/ping``: 24.11 answers it 200 even with a bad token, and a refused token surfaces
        on the first real call instead (HTTP 511, a credentials error, so the hook re-reads the
        connection). 22.05 is the other way round: only its ``/ping`` tells a bad token ("slurmctld
        config is unable to load") from an outage (its other calls answer both with HTTP 500,
        error -1), so v0.0.38 is confirmed with one ``/ping``. Servers without ``/openapi/v3`` are
        probed with ``/ping``, newest version first.
        """
        document = self._openapi()
        served = rest_api.served_versions(document)
        if served:
            for version in rest_api.SUPPORTED_VERSIONS:
                if version in served:
                    if version == "v0.0.38":
                        self._request("GET", f"/slurm/{version}/ping")
                    return version
            raise ConfigurationError(
                f"slurmrestd at {self.base_url} speaks none of {rest_api.SUPPORTED_VERSIONS} (its /openapi/v3 lists "
                f"{sorted(served)}); set api_version in the connection extras to one it speaks"
            )
        tried = []
        for version in rest_api.SUPPORTED_VERSIONS:
            try:
                self._request("GET", f"/slurm/{version}/ping")
                return version
            except TransportError as err:
                if err.retryable or err.credentials:  # a version it speaks, but not with this token
                    raise
                tried.append(f"{version}: {err.returncode}")
        raise ConfigurationError(
            f"slurmrestd at {self.base_url} speaks none of {rest_api.SUPPORTED_VERSIONS} ({', '.join(tried)}); "
            "set api_version in the connection extras"
        )

    # ------------------------------------------------------------------ operations
    def submit(self, spec: JobSpec, workdir: str) -> str:
        version = self.version
        body = rest_api.submit_body(spec, workdir, version, path=self.job_path)
        payload = self._request("POST", f"/slurm/{version}/job/submit", json=body)
        job_id = rest_api.parse_submit(payload)
        errors = rest_api.api_errors(payload, held=spec.hold)
        if errors:  # 22.05 accepts some invalid requests (200 + errors) and leaves the job pending forever
            self.cancel(job_id)
            raise TransportError(f"slurmrestd rejected the job: {'; '.join(errors)}", command="POST job/submit")
        return job_id

    def _openapi(self) -> dict[str, Any]:
        """The OpenAPI document the server publishes (``{}`` where it publishes none), fetched once."""
        if self._document is None:
            try:
                self._document = self._request("GET", "/openapi/v3")
            except TransportError as err:
                if err.retryable or err.credentials:
                    raise
                self._document = {}
        return self._document

    def _job_state_path(self) -> str:
        """``/slurm/<v>/jobs/state/`` when the server lists it for the version in use, else ``""``."""
        if self._state_path is None:
            path = f"/slurm/{self.version}/jobs/state/"
            self._state_path = path if path in (self._openapi().get("paths") or {}) else ""
        return self._state_path

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        wanted = sorted({check_job_id(j) for j in job_ids})
        if not wanted:
            return {}
        state_path = self._job_state_path()
        if not state_path:  # 22.05: every job of every user, filtered here
            jobs = rest_api.parse_jobs(self._request("GET", f"/slurm/{self.version}/jobs"),
                                       elements=any(map(is_element, wanted)))
            return {job_id: status for job_id, status in jobs.items() if job_id in wanted}
        found: dict[str, JobStatus] = {}
        # Array elements (array_batch): one GET of their array's record serves every element waited on.
        for array_id in sorted({j.split("_")[0] for j in wanted if is_element(j)}):
            parsed = rest_api.parse_jobs(self._request("GET", f"/slurm/{self.version}/job/{array_id}", ok_missing=True),
                                         elements=True)
            found.update({j: parsed[j] for j in wanted if j in parsed})
        wanted = [j for j in wanted if not is_element(j)]
        if not wanted:
            return found
        states = rest_api.parse_job_states(self._request("GET", state_path, params=[("job_id", j) for j in wanted]))
        for job_id in wanted:
            state = states.get(job_id)
            if state is not None and phase_of(state) is Phase.ACTIVE:
                found[job_id] = JobStatus(job_id=job_id, state=state)  # all a wait needs while it runs
                continue
            # Ended (its exit code and reason), an array (tasks are listed as <task id>_<index>), or
            # no longer in the controller: the job's own record, one light RPC.
            parsed = rest_api.parse_jobs(self._request("GET", f"/slurm/{self.version}/job/{job_id}", ok_missing=True))
            if job_id in parsed:
                found[job_id] = parsed[job_id]
        return found

    def my_jobs(self) -> dict[str, JobStatus]:
        # /jobs lists every user's jobs; the tag (in the comment) tells ours apart.
        return rest_api.parse_jobs(self._request("GET", f"/slurm/{self.version}/jobs"))

    def cancel(self, job_id: str) -> None:
        self._request("DELETE", f"/slurm/{self.version}/job/{check_job_id(job_id)}", ok_missing=True)

    @property
    def releases_elements(self) -> bool:  # type: ignore[override]
        """Only v0.0.38 (22.05) releases one element: 24.11's v0.0.42 refuses an element id ("Submit
        job update against Array Job's JobID instead of array task id", error 9000)."""
        return self.version == "v0.0.38"

    def release(self, job_id: str) -> None:
        """Release a held job or array element (``POST /job/<id>`` with ``hold: false``).

        22.05 answers an element's release with an error text although it released it (seen on
        22.05.8): only HTTP errors count here; a release that did not happen shows as an element
        that stays pending.
        """
        self._request("POST", f"/slurm/{self.version}/job/{check_job_id(job_id)}", json={"hold": False})

    def accounting(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for job_id in job_ids:
            payload = self._request("GET", f"/slurmdb/{self.version}/job/{check_job_id(job_id)}", ok_missing=True)
            # Each array element keyed <array id>_<index>, then folded into one record under the array
            # id as sacct's text and --json paths do (otherwise the array id holds one element's record).
            found = rest_api.parse_db_job(payload, elements=True)
            if not found:
                _raise_if_dbd_down(payload, f"GET /slurmdb/{self.version}/job/{job_id}")
            if not is_element(job_id):
                folded = fold_array_records(found)
                found = folded if job_id in folded else rest_api.parse_db_job(payload)  # an element's own id
            records.update(found)
        return records

    def accounting_since(self, since: str) -> dict[str, dict[str, Any]]:
        from airflow_provider_hpcai.slurm.commands import sacct_argv

        sacct_argv(since=since)  # the same validation as the CLI path
        payload = self._request("GET", f"/slurmdb/{self.version}/jobs", params={"start_time": since})
        return rest_api.parse_db_job(payload)

    def job(self, job_id: str) -> JobStatus:
        payload = self._request("GET", f"/slurm/{self.version}/job/{check_job_id(job_id)}", ok_missing=True)
        found = rest_api.parse_jobs(payload)
        if job_id not in found:
            raise SlurmJobNotFound(f"slurmrestd knows no job {job_id}")
        return found[job_id]

    def read_file(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return self.file_reader.read_file(path, offset, limit)

    def nodes(self) -> list[dict[str, Any]]:
        return rest_api.parse_nodes(self._request("GET", f"/slurm/{self.version}/nodes"))

    def partitions(self) -> dict[str, dict[str, Any]]:
        return rest_api.parse_partitions(self._request("GET", f"/slurm/{self.version}/partitions"))

    def default_workdir(self) -> str:
        return self.workdir

    def close(self) -> None:
        self._client.close()
        self.file_reader.close()


#: slurmrestd's error number when slurmdbd does not answer (it still answers HTTP 200).
_DBD_DOWN = 7000


def _raise_if_dbd_down(payload: dict[str, Any], what: str) -> None:
    """An empty accounting answer that only means slurmdbd is down is an outage, not "no record"."""
    errors = [e for e in payload.get("errors") or [] if isinstance(e, dict)]
    if any(e.get("error_number") == _DBD_DOWN or "connect" in str(e.get("description", "")).lower()
           and "slurmdbd" in str(e.get("description", "")).lower() for e in errors):
        raise TransportError("slurmrestd answered without accounting: " + "; ".join(rest_api.api_errors(payload)),
                             command=what, stderr="slurmdbd: " + "; ".join(rest_api.api_errors(payload)),
                             retryable=True)
