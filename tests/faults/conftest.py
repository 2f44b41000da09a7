"""Fixtures of the fault-injection suite: one real Airflow for the session, DAG deployment,
and a gate that waits until nobody else uses the cluster before a disruptive fault."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.faults.checks import claim_quiet_cluster, restore_or_fail
from tests.faults.cluster import TaskDef, dag_source
from tests.faults.stack import AirflowStack

#: A champion file cut off mid-write: what a crashed export leaves behind.
CORRUPT_CHAMPION = '{"format": "hpcai-advisor-compact/1", "version": "hpcai-advisor/3", "coef'


@pytest.fixture(scope="session")
def fault_workdir() -> Iterator[str]:
    """Where the suite's jobs run: writable by root (local CLI) and hpcai (REST, SSH)."""
    path = Path("/tmp") / f"hpcai-fx-{uuid.uuid4().hex[:10]}"
    path.mkdir(mode=0o1777)
    path.chmod(0o1777)
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def advisor_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The advisor home of the whole stack: a corrupt champion and a corrupt MLflow store.

    Every task of the suite therefore also checks that the policy falls back to the user's
    request when the registry's export is unusable.
    """
    home = tmp_path_factory.mktemp("advisor")
    (home / "champion.json").write_text(CORRUPT_CHAMPION)
    (home / "mlflow.db").write_bytes(b"this is not an SQLite database\0" * 8)
    return home


@pytest.fixture(scope="session")
def stack(slurm_env: dict[str, str], ssh_env: dict[str, str], advisor_home: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """api-server, scheduler, dag-processor and triggerer on SQLite with the LocalExecutor."""
    root = tmp_path_factory.mktemp("airflow-faults")
    env = {key: value for key, value in {**slurm_env, **ssh_env}.items()}
    # A second connection to the same cluster: its triggers get a status poller of their own.
    env["AIRFLOW_CONN_SLURM_LOCAL_BUDGET"] = slurm_env["AIRFLOW_CONN_SLURM_LOCAL"]
    env.update(
        AIRFLOW__HPCAI__POLL_INTERVAL="1",
        AIRFLOW__HPCAI__MAX_POLL_INTERVAL="2",
        AIRFLOW__HPCAI__RETRY_ATTEMPTS="6",
        AIRFLOW__HPCAI__OUTAGE_BUDGET="300",
        AIRFLOW__HPCAI__ADVISOR_MODE="enforce",
        AIRFLOW__HPCAI__ADVISOR_HOME=str(advisor_home),
        AIRFLOW__HPCAI__MLFLOW_TRACKING_URI=f"sqlite:///{advisor_home / 'mlflow.db'}",
    )
    airflow = AirflowStack(root / "home", root / "dags", env)
    airflow.migrate()
    try:
        airflow.start()
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture()
def deploy(stack: AirflowStack, fault_workdir: str) -> Callable[..., str]:
    """``deploy(dag_id, tasks, retries=0, hpcai_env=None)``: write the DAG file, wait until parsed."""

    def _deploy(dag_id: str, tasks: Sequence[TaskDef], *, retries: int = 0,
                hpcai_env: dict[str, str] | None = None) -> str:
        source = dag_source(dag_id, tasks, workdir=fault_workdir, retries=retries, hpcai_env=hpcai_env)
        (stack.dags / f"{dag_id}.py").write_text(source)
        stack.wait_dag(dag_id, timeout=120)
        return dag_id

    return _deploy


@pytest.fixture()
def quiet_cluster() -> Iterator[None]:
    """Wait until the cluster is ours alone (disruptive faults), and always restore it after."""
    claim_quiet_cluster()
    try:
        yield
    finally:
        restore_or_fail()
