"""A real Airflow (api-server, scheduler, dag-processor, triggerer) in a throw-away home.

The fault suite and the load benchmark start these components as separate processes on
SQLite with the LocalExecutor, on free ports, talk to them through the REST API, and stop,
kill or restart single components to inject faults. Nothing here knows about Slurm.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["COMPONENTS", "TERMINAL_STATES", "AirflowStack", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowStack:
    """Airflow's components as child processes of the caller.

    :param home: the ``AIRFLOW_HOME`` (created; holds airflow.db, logs and component output).
    :param dags: the DAG folder the dag-processor parses.
    :param env: extra environment for every component (connections, ``AIRFLOW__HPCAI__*``).
    """

    def __init__(self, home: Path, dags: Path, env: Mapping[str, str] | None = None) -> None:
        self.home, self.dags = Path(home), Path(dags)
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = self._base_env(dict(env or {}))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self._starts: dict[str, int] = {}

    def _base_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__PARALLELISM="16",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.base_url}/execution/",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.home / 'airflow.db'}",
            AIRFLOW__API__BASE_URL=self.base_url,
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="3",
            AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="60",
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="10",
            MLFLOW_DISABLE_TELEMETRY="true",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        env.update(extra)
        return env

    # ------------------------------------------------------------------ processes
    def migrate(self) -> None:
        """Create the metadata database (seconds on SQLite)."""
        proc = subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True,
                              timeout=300, cwd=self.home, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")

    def start(self, components: Iterable[str] = COMPONENTS, timeout: float = 240) -> None:
        """Start ``components`` and wait until the API answers and each reports healthy."""
        for name in components:
            self.start_component(name)
        self.wait_healthy(timeout=timeout, components=components)

    def start_component(self, name: str, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one component (its own process group; output in ``<home>/<name>.N.out``)."""
        if name not in COMPONENTS:
            raise ValueError(f"unknown component {name!r}: one of {COMPONENTS}")
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running (pid {self.procs[name].pid})")
        self._starts[name] = self._starts.get(name, 0) + 1
        out = open(self.home / f"{name}.{self._starts[name]}.out", "wb")  # noqa: SIM115 - child owns it
        argv = [AIRFLOW, name] + (["--port", str(self.port), "--host", "127.0.0.1"] if name == "api-server" else [])
        proc = subprocess.Popen(argv, env={**self.env, **(extra_env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                cwd=self.home, start_new_session=True)
        out.close()
        self.procs[name] = proc
        return proc

    def kill_component(self, name: str, sig: int = signal.SIGKILL, wait: float = 60) -> None:
        """Send ``sig`` to a component's whole process group (SIGKILL: a crash; SIGTERM: a stop)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop every component (TERM, then KILL what lingers), leaving no process behind.

        Task processes that left their component's process group (Airflow's task supervisor can
        start its own session) are found among the components' descendants before the stop and
        killed one by one after it.
        """
        spawned = {(pid, start_time(pid)) for name in self.procs for pid in self.pids(name)}
        for name in reversed(list(self.procs)):
            self.kill_component(name, signal.SIGTERM, wait=20)
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # task processes the executor left behind
            except (ProcessLookupError, PermissionError):
                pass
        for pid, started in spawned:
            if started is None or start_time(pid) != started:
                continue  # gone, or the pid now names another process (pids wrap at 32768 here)
            try:
                os.kill(pid, signal.SIGKILL)  # one that had left the group
            except (ProcessLookupError, PermissionError):
                pass

    def output(self, name: str) -> str:
        """Everything the component's latest run printed."""
        path = self.home / f"{name}.{self._starts.get(name, 1)}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def pids(self, name: str) -> list[int]:
        """The component's process and its descendants (from /proc)."""
        proc = self.procs.get(name)
        return descendants(proc.pid) if proc is not None and proc.poll() is None else []

    # ------------------------------------------------------------------ REST API
    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True, timeout: float = 30) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def token(self) -> str:
        if self._token is None:
            self._token = self._request("GET", "/auth/token", auth=False)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/api/v2`` + ``path``; HTTP errors raise with the server's answer in the message."""
        try:
            return self._request(method, "/api/v2" + path, body)
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{method} {path}: HTTP {err.code}: {err.read().decode(errors='replace')[:500]}") from err

    def wait_healthy(self, timeout: float = 240, components: Iterable[str] = COMPONENTS) -> None:
        """Until ``/api/v2/monitor/health`` reports every started component healthy."""
        wanted = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
        names = [wanted[c] for c in components if c in wanted]
        last: Any = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.output(name)[-4000:]}")
            try:
                last = self._request("GET", "/api/v2/monitor/health", auth=False, timeout=10)
                if all((last.get(n) or {}).get("status") == "healthy" for n in names):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
                last = err
            time.sleep(2)
        raise TimeoutError(f"Airflow did not become healthy in {timeout:.0f} s: {last}")

    def wait_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Until the dag-processor has parsed ``dag_id`` (then unpause it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", f"/dags/{dag_id}")
                break
            except RuntimeError as err:
                if time.monotonic() > deadline:
                    errors = self.import_errors()
                    raise TimeoutError(f"DAG {dag_id} not parsed in {timeout:.0f} s ({err}); import errors: "
                                       f"{errors}") from None
                time.sleep(2)
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run now; returns its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """``{task_id (or task_id[map_index]): task instance}`` of one run."""
        # The API caps a page at ``[api] maximum_page_limit`` (100) whatever ``limit`` asks: page through.
        found: list[dict[str, Any]] = []
        while True:
            page = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
                                   f"?limit=100&offset={len(found)}&order_by=map_index")
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= int(page.get("total_entries", 0)):
                break
        return {(t["task_id"] if t.get("map_index", -1) < 0 else f"{t['task_id']}[{t['map_index']}]"): t
                for t in found}

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float, every: float = 2) -> Any:
        """Call ``check`` until it returns something truthy; ``TimeoutError`` naming ``what``."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(every)
        raise TimeoutError(f"{what} did not happen in {timeout:.0f} s")

    def wait_states(self, dag_id: str, run_id: str, states: Iterable[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Until every task instance of the run is in one of ``states``; returns them."""
        wanted = set(states)

        def check() -> dict[str, dict[str, Any]] | None:
            tis = self.task_instances(dag_id, run_id)
            return tis if tis and all(t["state"] in wanted for t in tis.values()) else None

        try:
            return self.wait_until(f"{dag_id}/{run_id} reaching {sorted(wanted)}", check, timeout)
        except TimeoutError as err:
            now = {k: t["state"] for k, t in self.task_instances(dag_id, run_id).items()}
            raise TimeoutError(f"{err}; task states now: {now}") from None

    def wait_done(self, dag_id: str, run_id: str, timeout: float) -> dict[str, dict[str, Any]]:
        """Until every task instance of the run is finished (success, failed...)."""
        return self.wait_states(dag_id, run_id, TERMINAL_STATES, timeout)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """A task's XCom value (deserialised), or ``None`` when there is none."""
        path = (f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
                f"?map_index={map_index}&deserialize=true&stringify=false")
        try:
            return self.api("GET", path)["value"]
        except RuntimeError as err:
            if "HTTP 404" in str(err):
                return None
            raise

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task try's log as the worker and the triggerer wrote it (JSON lines), as text."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        parts = [folder / f"attempt={try_number}.log", *sorted(folder.glob(f"attempt={try_number}.log.trigger.*"))]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.is_file())

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/importErrors")["import_errors"])


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), or ``None`` once gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def cmdline(pid: int) -> str:
    """A process's command line (its title, for Airflow processes), or '' once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of ``pids`` summed (from /proc/<pid>/status)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total
