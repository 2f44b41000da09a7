"""DaskHook: clusters come up, compute, and are always closed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from airflow_provider_hpcai.dask.errors import DaskClusterError, DaskConfigurationError
from airflow_provider_hpcai.hooks.dask import DaskHook
from tests.fakes.slurm_cli import FakeSlurmCli
from tests.unit.dask.support import THREADED, FakeKubeCluster, RecordingFactory, cluster_closed


def _sum_of_squares(batch: list[int]) -> int:
    return sum(x * x for x in batch)


def test_local_cluster_computes_and_is_closed(recording: RecordingFactory) -> None:
    hook = DaskHook(extras=THREADED, cluster_factories={"local": recording})
    with hook.get_client() as client:
        batches = [list(range(i, i + 25)) for i in range(0, 100, 25)]
        total = sum(client.gather(client.map(_sum_of_squares, batches)))
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
    assert total == sum(x * x for x in range(100))
    assert workers == 2
    [cluster] = recording.built
    assert cluster_closed(cluster) and hook.closed_cleanly is True
    assert client.status == "closed"


def test_cluster_is_closed_when_the_block_raises(recording: RecordingFactory) -> None:
    hook = DaskHook(extras=THREADED, cluster_factories={"local": recording})
    with pytest.raises(ZeroDivisionError), hook.get_client() as client:
        client.submit(lambda: 1 / 0).result()
    assert cluster_closed(recording.built[0])
    # the hook can start a fresh cluster afterwards
    with hook.get_client() as client:
        assert client.submit(sum, [1, 2]).result() == 3
    assert len(recording.built) == 2 and cluster_closed(recording.built[1])


def test_close_from_another_thread_stops_a_running_computation(recording: RecordingFactory) -> None:
    """What on_kill does: the blocked task ends and the cluster is gone.

    Worker processes (the default) are killed by their nannies; a thread worker could only
    finish its running task, so this uses one process worker.
    """
    import threading

    hook = DaskHook(extras={"cluster": "local", "n_workers": 1, "memory_limit": "512MiB"},
                    cluster_factories={"local": recording})
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with hook.get_client() as client:
                outcome["started"] = time.monotonic()
                client.submit(time.sleep, 60).result()
        except BaseException as err:  # we record whatever ended it
            outcome["error"] = err
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while "started" not in outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    hook.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" in outcome, "the computation should not have completed normally"
    assert float(outcome["ended"]) - float(outcome["started"]) < 15  # type: ignore[arg-type]
    assert cluster_closed(recording.built[0])
    hook.close()  # idempotent


def test_process_workers_are_really_gone_after_close() -> None:
    """The default local cluster uses worker processes: none may outlive the block."""
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    hook = DaskHook(extras={"cluster": "local", "n_workers": 2, "memory_limit": "512MiB"})
    with hook.get_client() as client:
        pids = set(client.run(lambda: __import__("os").getpid()).values())
        assert len(pids) == 2
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    after = {p.pid for p in psutil.Process().children(recursive=True)
             if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())}
    assert after - before == set()


def test_an_existing_scheduler_is_used_and_left_running() -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as external:
        hook = DaskHook(extras={"cluster": "address", "address": external.scheduler_address})
        with hook.get_client() as client:
            assert client.submit(sum, [2, 3]).result() == 5
        assert external.status.name == "running"
        with Client(external.scheduler_address, timeout=5) as again:  # still serving
            assert again.submit(sum, [1, 1]).result() == 2


def test_an_unreachable_scheduler_fails_clearly() -> None:
    hook = DaskHook("dask_remote", extras={"cluster": "address", "address": "tcp://127.0.0.1:1", "timeout": 2})
    started = time.monotonic()
    with pytest.raises(DaskClusterError, match=r"could not reach the Dask scheduler at tcp://127.0.0.1:1"), hook.get_client():
        pass
    assert time.monotonic() - started < 20


def test_invalid_connection_starts_nothing(recording: RecordingFactory) -> None:
    hook = DaskHook("dask_bad", extras={"cluster": "local", "n_workers": -1}, cluster_factories={"local": recording})
    with pytest.raises(DaskConfigurationError, match="dask connection 'dask_bad': extra 'n_workers'"), hook.get_client():
        pass
    assert recording.built == []


def test_connection_is_read_from_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DASK_UNIT", '{"conn_type": "dask", "host": "sched.example", "port": 9786}')
    cfg = DaskHook("dask_unit").get_config()
    assert cfg.kind == "address" and cfg.address == "tcp://sched.example:9786"  # type: ignore[union-attr]
    with pytest.raises(DaskConfigurationError, match="no Airflow connection 'dask_missing'"):
        DaskHook("dask_missing").get_config()
    assert DaskHook().get_config().kind == "local"  # no dask_default: the local default


def test_kubernetes_builds_the_documented_cluster_and_deletes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HPCAI__KUBERNETES_NAMESPACE", "hpc")
    FakeKubeCluster.instances.clear()
    hook = DaskHook(extras={"cluster": "kubernetes", "image": "ghcr.io/dask/dask:2026.8.0", "n_workers": 2,
                            "resources": {"limits": {"memory": "2Gi"}}, "wait_for_workers": 2},
                    cluster_factories={"kubernetes": FakeKubeCluster})
    with hook.get_client() as client:
        assert client.submit(sum, [4, 5]).result() == 9
    [cluster] = FakeKubeCluster.instances
    assert cluster.closed
    kwargs = dict(cluster.kwargs)
    assert kwargs.pop("name").startswith("hpcai-dask-")
    assert kwargs == {
        "n_workers": 2, "shutdown_on_close": True, "image": "ghcr.io/dask/dask:2026.8.0", "namespace": "hpc",
        "env": {}, "resources": {"limits": {"memory": "2Gi"}}, "scheduler_service_type": "ClusterIP",
        "resource_timeout": 300,
    }


def test_kubernetes_without_dask_kubernetes_says_what_to_install() -> None:
    try:
        import dask_kubernetes  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - depends on the environment
        pytest.skip("dask-kubernetes is installed here")
    hook = DaskHook(extras={"cluster": "kubernetes"})
    with pytest.raises(DaskConfigurationError, match="pip install dask-kubernetes"), hook.get_client():
        pass


class _NoWorkersSlurmCluster:
    """A SLURMCluster stand-in whose jobs never start: a scheduler with no workers."""

    def __init__(self, **kwargs: object) -> None:
        from distributed import LocalCluster

        self.kwargs = kwargs
        self._local = LocalCluster(n_workers=0, processes=False, dashboard_address=None)
        self.scaled_to: int | None = None
        self.workers: dict = {}

    @property
    def scheduler_address(self) -> str:
        return self._local.scheduler_address

    def scale(self, jobs: int) -> None:
        self.scaled_to = jobs

    def close(self, timeout: float | None = None) -> None:
        self._local.close()


def test_workers_that_never_join_fail_with_where_to_look(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The worker jobs that never started are cancelled, not left in the queue (Slurm: the fake CLI cluster)."""
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_UNIT", '{"conn_type": "slurm", "extra": {"transport": "local"}}')
    cli = FakeSlurmCli()
    monkeypatch.setattr("airflow_provider_hpcai.slurm.cli_transport.LocalRunner", lambda: cli)
    built: list[_NoWorkersSlurmCluster] = []
    queued: list[str] = []

    def factory(**kwargs: object) -> _NoWorkersSlurmCluster:
        built.append(_NoWorkersSlurmCluster(**kwargs))
        tag = str(built[-1].kwargs["job_extra_directives"][0]).removeprefix("--comment=hpcai-tag=")
        for _ in range(2):  # dask-jobqueue's sbatch: two worker jobs that stay PENDING
            queued.append(cli.cluster.add_job(name="dask-worker", script="", workdir=str(tmp_path), tag=tag).job_id)
        return built[-1]

    hook = DaskHook("dask_hpc", extras={"cluster": "slurm", "slurm_conn_id": "slurm_unit", "jobs": 2,
                                        "worker_timeout": 1, "log_directory": str(tmp_path)},
                    cluster_factories={"slurm": factory})
    with pytest.raises(DaskClusterError, match=r"only 0 of 1 Dask worker\(s\) joined within 1s"), hook.get_client():
        pass
    assert built[0].scaled_to == 2
    assert built[0].kwargs["python"] == sys.executable
    assert built[0].kwargs["job_extra_directives"][0].startswith("--comment=hpcai-tag=hpcai-")
    assert built[0]._local.status.name == "closed"
    assert sorted(cli.cluster.cancelled) == sorted(queued)
    assert {cli.cluster.job(j).base_state for j in queued} == {"CANCELLED"}


def test_slurm_needs_a_local_slurm_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_VIA_SSH",
                       '{"conn_type": "slurm", "extra": {"transport": "ssh", "ssh_conn_id": "ssh_x"}}')
    hook = DaskHook("dask_hpc", extras={"cluster": "slurm", "slurm_conn_id": "slurm_via_ssh"},
                    cluster_factories={"slurm": RecordingFactory()})
    with pytest.raises(DaskConfigurationError, match="submits its workers with sbatch on this machine"), hook.get_client():
        pass


def test_importing_the_hook_and_operator_does_not_import_dask() -> None:
    code = ("import sys, airflow_provider_hpcai.hooks.dask, airflow_provider_hpcai.operators.dask;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'dask', 'distributed', 'dask_jobqueue'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _FakeSlurm:
    """The two SlurmHook calls the leftover sweep makes, over a job table."""

    def __init__(self, jobs: dict[str, tuple[str, str | None]]) -> None:
        self.jobs = jobs  # job id -> (state, tag)
        self.cancelled: list[str] = []

    def find_jobs_by_tag(self, tag: str) -> list:
        from airflow_provider_hpcai.slurm.states import JobStatus

        return [JobStatus(job_id=j, state=s, tag=t) for j, (s, t) in self.jobs.items() if t == tag]

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        self.jobs[job_id] = ("CANCELLED", self.jobs[job_id][1])


def test_close_cancels_worker_jobs_the_cluster_left_behind() -> None:
    slurm = _FakeSlurm({"11": ("RUNNING", "hpcai-aaaa"), "12": ("PENDING", "hpcai-aaaa"),
                        "13": ("COMPLETED", "hpcai-aaaa"), "14": ("RUNNING", "hpcai-other"),
                        "15": ("COMPLETING", "hpcai-aaaa")})
    hook = DaskHook(extras=THREADED)
    hook._slurm, hook._tag = slurm, "hpcai-aaaa"  # as _start_slurm leaves them
    hook.close()
    assert slurm.cancelled == ["11", "12"]
    hook.close()
    assert slurm.cancelled == ["11", "12"]


def test_a_cluster_that_lost_every_worker_fails_the_work_instead_of_hanging() -> None:
    """All workers gone while work waits: after ``no_workers_timeout`` the result raises (distributed's
    own no-workers rule), where it used to wait until Airflow's task timeout."""
    from distributed import wait

    hook = DaskHook(extras={"cluster": "local", "processes": False, "n_workers": 1, "memory_limit": "512MiB",
                            "no_workers_timeout": 2})
    with hook.get_client() as client:
        assert client.submit(_sum_of_squares, [1, 2]).result(timeout=30) == 5
        hook._cluster.scale(0)  # every worker leaves
        deadline = time.monotonic() + 30
        while client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        future = client.submit(_sum_of_squares, [3, 4], pure=False)
        started = time.monotonic()
        wait(future, timeout=60)
        assert future.status == "error" and time.monotonic() - started < 30
        with pytest.raises(Exception, match="no workers|No workers|worker"):
            future.result()


def test_no_workers_timeout_defaults_and_checks() -> None:
    from airflow_provider_hpcai.dask.config import parse_cluster_config

    assert parse_cluster_config({"cluster": "local"}, conn_id="c").no_workers_timeout == 300.0
    assert parse_cluster_config({"cluster": "local", "no_workers_timeout": None}, conn_id="c").no_workers_timeout is None
    assert parse_cluster_config({"cluster": "slurm"}, conn_id="c").no_workers_timeout is None  # queue waits
    assert parse_cluster_config({"cluster": "slurm", "no_workers_timeout": 600}, conn_id="c").no_workers_timeout == 600
    with pytest.raises(DaskConfigurationError, match="no_workers_timeout"):
        parse_cluster_config({"cluster": "local", "no_workers_timeout": "soon"}, conn_id="c")
