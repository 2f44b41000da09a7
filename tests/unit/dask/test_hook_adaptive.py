"""DaskHook with adaptive scaling: the cluster grows under load and shrinks when idle, through the
libraries' own adapt(); stale Slurm worker jobs of an earlier try are cancelled first; the
dask-kubernetes path is exercised against a stateful stand-in (no Kubernetes API server here)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_hpcai.hooks.dask import DaskHook
from airflow_provider_hpcai.spec import make_tag
from tests.unit.dask.support import FakeKubeCluster, RecordingFactory

FAST = {"minimum": 1, "maximum": 3, "target_duration": "0.5s", "interval": "0.2s", "scale_down_wait": "1s"}
LOCAL = {"cluster": "local", "processes": False, "memory_limit": "512MiB", "adaptive": FAST}


def _slow(x: int) -> int:
    time.sleep(0.05)
    return x


def _wait_for(predicate: Any, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _running(client: Any) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def test_local_cluster_grows_for_a_burst_and_shrinks_back(recording: RecordingFactory) -> None:
    hook = DaskHook(extras=LOCAL, cluster_factories={"local": recording})
    with hook.get_client() as client:
        assert _running(client) == 1
        assert recording.kwargs[0]["n_workers"] == 1
        futures = client.map(_slow, range(120), pure=False)
        from distributed import wait

        wait(futures, timeout=120)  # a failure, not a hang, if workers stop taking tasks
        assert _wait_for(lambda: _running(client) == 3), "the burst grows the cluster to its maximum"
        assert "adaptive 1-3 workers" in (hook.scaling_text() or "")
        assert sum(client.gather(futures)) == sum(range(120))
        assert _wait_for(lambda: _running(client) == 1, within=10), "idle workers retire after the wait"
        text = hook.scaling_text()
    assert text is not None and text.startswith("workers: 1 running, 0 pending, 1 wanted")
    usage = hook.usage()
    assert usage is not None and usage["workers_started"] == 3 and usage["peak_workers"] == 3
    assert usage["worker_hours"] < usage["fixed_worker_hours"]


def test_adaptive_override_false_keeps_a_fixed_size(recording: RecordingFactory) -> None:
    hook = DaskHook(extras={**LOCAL, "n_workers": 2}, adaptive=False, cluster_factories={"local": recording})
    with hook.get_client() as client:
        assert _running(client) == 2
        assert recording.built[0]._adaptive is None


class _AdaptiveSlurmStandIn:
    """Stands in for SLURMCluster: records its arguments and adapt() bounds; runs no workers."""

    def __init__(self, slurm: Any, **kwargs: Any) -> None:
        from distributed import LocalCluster

        self.kwargs = kwargs
        self.cancelled_before_start = list(slurm.cancelled)
        self._local = LocalCluster(n_workers=0, processes=False, dashboard_address=None)
        self.adapted: dict[str, Any] | None = None
        self.workers: dict = {}

    @property
    def scheduler_address(self) -> str:
        return self._local.scheduler_address

    def adapt(self, **kwargs: Any) -> None:
        self.adapted = kwargs

    def close(self, timeout: float | None = None) -> None:
        self._local.close()


def test_a_retry_cancels_the_worker_jobs_an_earlier_try_left(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from airflow_provider_hpcai.hooks import slurm as slurm_module
    from tests.fakes.slurm import FakeSlurmTransport

    tag = make_tag("dag", "sweep", "manual__1")
    fake = FakeSlurmTransport()
    fake.name = "local"
    stale_running = fake.add_job(name="hpcai-dask", script="", workdir="/tmp", tag=tag)
    fake.advance(stale_running.job_id)
    stale_pending = fake.add_job(name="hpcai-dask", script="", workdir="/tmp", tag=tag)
    other = fake.add_job(name="hpcai-dask", script="", workdir="/tmp", tag=make_tag("dag", "other", "manual__1"))
    real = slurm_module.SlurmHook
    class FakeBackedSlurmHook(real):  # type: ignore[misc,valid-type]
        def __init__(self, slurm_conn_id: str = real.default_conn_name) -> None:
            super().__init__(slurm_conn_id, transport=fake)

    monkeypatch.setattr(slurm_module, "SlurmHook", FakeBackedSlurmHook)
    built: list[_AdaptiveSlurmStandIn] = []

    def factory(**kwargs: Any) -> _AdaptiveSlurmStandIn:
        built.append(_AdaptiveSlurmStandIn(fake, **kwargs))
        return built[-1]

    hook = DaskHook("dask_hpc", extras={"cluster": "slurm", "log_directory": str(tmp_path), "cores": 2,
                                        "memory": "3GiB", "walltime": "01:00:00", "account": "proj1",
                                        "adaptive": {"minimum": 0, "maximum": 4, "scale_down_wait": "30s"}},
                    tag=tag, cluster_factories={"slurm": factory})
    with hook.get_client():
        pass
    cluster = built[0]
    assert sorted(cluster.cancelled_before_start) == sorted([stale_running.job_id, stale_pending.job_id])
    assert hook.stale_job_ids == sorted([stale_running.job_id, stale_pending.job_id], key=lambda j: (len(j), j))
    assert other.job_id not in fake.cancelled
    assert cluster.kwargs["job_extra_directives"][0] == f"--comment=hpcai-tag={tag}"
    assert (cluster.kwargs["cores"], cluster.kwargs["memory"], cluster.kwargs["walltime"],
            cluster.kwargs["account"]) == (2, "3072MiB", "01:00:00", "proj1")
    assert cluster.adapted == {"minimum_jobs": 0, "maximum_jobs": 4, "interval": "1s", "wait_count": 30,
                               "target_duration": "5s"}


def test_kubernetes_adaptive_through_the_stateful_stand_in() -> None:
    FakeKubeCluster.instances.clear()
    hook = DaskHook(extras={"cluster": "kubernetes", "namespace": "hpc", "wait_for_workers": 1,
                            "adaptive": {"minimum": 1, "maximum": 3, "target_duration": "0.5s", "interval": "0.2s",
                                         "scale_down_wait": "1s"}},
                    cluster_factories={"kubernetes": FakeKubeCluster})
    with hook.get_client() as client:
        [kube] = FakeKubeCluster.instances
        assert kube.kwargs["n_workers"] == 1
        assert kube.autoscaler == {"kind": "DaskAutoscaler", "spec": {"cluster": kube.kwargs["name"],
                                                                      "minimum": 1, "maximum": 3}}
        futures = client.map(_slow, range(120), pure=False)
        from distributed import wait

        wait(futures, timeout=120)  # a failure, not a hang, if workers stop taking tasks
        # the scheduler runs remotely on Kubernetes: the worker timeline is fed by the progress polls
        assert _wait_for(lambda: bool(hook.scaling_text()) and _running(client) == 3)
        assert sum(client.gather(futures)) == sum(range(120))
        assert _wait_for(lambda: bool(hook.scaling_text()) and _running(client) == 1, within=10)
        assert "adaptive 1-3 workers" in (hook.scaling_text() or "")
    assert kube.closed and kube.autoscaler is None
    usage = hook.usage()
    assert usage is not None and usage["peak_workers"] == 3


def test_a_threaded_cluster_keeps_working_in_a_big_process(recording: RecordingFactory) -> None:
    """The task's process already holds more than the configured worker memory: threaded workers
    (which measure the whole process) must still run tasks instead of pausing for ever."""
    from distributed import wait

    ballast = bytearray(700 << 20)  # 700 MiB in this process, over 80 % of the 512 MiB below
    hook = DaskHook(extras={"cluster": "local", "processes": False, "memory_limit": "512MiB", "n_workers": 1},
                    cluster_factories={"local": recording})
    with hook.get_client() as client:
        futures = client.map(_slow, range(10), pure=False)
        wait(futures, timeout=60)
        assert sum(client.gather(futures)) == sum(range(10))
    assert len(ballast) == 700 << 20
