"""Small stand-ins for Airflow runtime objects used by operator tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any


class FakeStore:
    """A dict-backed stand-in for Airflow 3.3's ``task_state_store`` (persists across tries)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


class FakeTI:
    """The few task-instance attributes the operators use."""

    def __init__(self, map_index: int = -1, try_number: int = 1) -> None:
        self.map_index = map_index
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def make_context(run_id: str | None = None, store: FakeStore | None = None, **ti_kwargs: Any) -> dict[str, Any]:
    return {"ti": FakeTI(**ti_kwargs), "run_id": run_id or f"test__{uuid.uuid4().hex}",
            "task_state_store": store if store is not None else FakeStore()}


def airflow_env(home: str, **extra: str) -> dict[str, str]:
    """Environment for running the ``airflow`` CLI against a throw-away home on SQLite."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",  # a deployment with a triggerer: operators defer
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONPATH=str(root),
    )
    env.update(extra)
    return env


def api_server_env(home: Any, port: int, *, dags: Any, plugins: Any, password: str, **extra: str) -> dict[str, str]:
    """Environment for a real ``airflow api-server`` on 127.0.0.1:``port`` over SQLite in ``home``.

    One user, ``admin`` (Admin role), with ``password`` (written to ``home/passwords.json``), a
    fresh JWT secret and one worker. ``extra`` adds or overrides variables.
    """
    import json
    import os
    import secrets
    from pathlib import Path

    home = Path(home)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
    }
    env.update(extra)
    return env


def run_dags_test(home: str, dag_id: str, timeout: int = 600, **extra: str) -> tuple[int, str]:
    """``airflow dags test DAG_ID`` (deferrals run in-process); returns (exit code, combined log)."""
    import subprocess
    import sys
    from pathlib import Path

    airflow = str(Path(sys.executable).parent / "airflow")
    proc = subprocess.run([airflow, "dags", "test", dag_id], env=airflow_env(home, **extra), capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something true (its value); fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as err:  # keep polling, report the last error
            last = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def airflow_components(airflow: str, names: tuple[str, ...], env: dict[str, str], home: Any, base: str,
                       log_tail: int = 4000) -> Iterator[None]:
    """Run ``airflow <name>`` for each of ``names`` (logs in ``home/<name>.log``) until the block
    ends; the API server must answer its health check first. On a failure inside the block the end
    of every component's log is printed; each is stopped with SIGTERM (SIGKILL after 20 s)."""
    import os
    import subprocess
    from pathlib import Path

    import httpx

    home = Path(home)
    logs = {name: open(home / f"{name}.log", "wb") for name in names}  # noqa: SIM115
    procs = [subprocess.Popen([airflow, name], env=env, stdout=logs[name], stderr=subprocess.STDOUT,
                              start_new_session=True) for name in names]
    try:
        wait_until(lambda: httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200, 150,
                   "the API server")
        yield
    except BaseException:
        for name, handle in logs.items():
            handle.flush()
            print(f"--- {name} log ---\n" + (home / f"{name}.log").read_text(errors="replace")[-log_tail:])
        raise
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        for handle in logs.values():
            handle.close()
