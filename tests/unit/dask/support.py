"""Small local clusters and a stateful stand-in for dask-kubernetes' KubeCluster."""

from __future__ import annotations

from typing import Any, ClassVar

#: A local cluster that starts in a fraction of a second (threads, one process).
THREADED = {"cluster": "local", "n_workers": 2, "threads_per_worker": 1, "processes": False, "memory_limit": "1GiB"}


class RecordingFactory:
    """Wraps a real cluster class and remembers every cluster it built, to check they were closed."""

    def __init__(self, cls: Any = None) -> None:
        if cls is None:
            from distributed import LocalCluster

            cls = LocalCluster
        self.cls = cls
        self.built: list[Any] = []
        self.kwargs: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.kwargs.append(kwargs)
        cluster = self.cls(**kwargs)
        self.built.append(cluster)
        return cluster


class FakeKubeCluster:
    """Stands in for ``dask_kubernetes.operator.KubeCluster``: records its arguments and runs the
    requested number of workers as an in-process LocalCluster, so clients really work against it."""

    instances: ClassVar[list[FakeKubeCluster]] = []

    def __init__(self, *, name: str, n_workers: int, shutdown_on_close: bool, **kwargs: Any) -> None:
        from distributed import LocalCluster

        self.kwargs = {"name": name, "n_workers": n_workers, "shutdown_on_close": shutdown_on_close, **kwargs}
        self._local = LocalCluster(n_workers=n_workers, processes=False, threads_per_worker=1,
                                   dashboard_address=None)
        self.closed = False
        #: The DaskAutoscaler resource KubeCluster.adapt() creates (``None``: none), as the API would hold it.
        self.autoscaler: dict[str, Any] | None = None
        FakeKubeCluster.instances.append(self)

    def adapt(self, minimum: int | None = None, maximum: int | None = None) -> None:
        """Like dask-kubernetes' operator KubeCluster.adapt: only the bounds; the operator then scales the
        worker group from the scheduler's adaptive target (here: distributed's Adaptive, with the timing
        the scheduler pod gets through its environment)."""
        if self.closed:
            raise RuntimeError("the DaskCluster was deleted")
        env = self.kwargs.get("env") or {}
        self.autoscaler = {"kind": "DaskAutoscaler", "spec": {"cluster": self.kwargs["name"], "minimum": minimum,
                                                              "maximum": maximum}}
        self._local.adapt(minimum=minimum, maximum=maximum, interval="0.2s",
                          target_duration=env.get("DASK_DISTRIBUTED__ADAPTIVE__TARGET_DURATION", "5s"),
                          wait_count=int(env.get("DASK_DISTRIBUTED__ADAPTIVE__WAIT_COUNT", 3)))

    @property
    def workers(self) -> dict[Any, Any]:
        return self._local.workers

    @property
    def scheduler_address(self) -> str:
        return self._local.scheduler_address

    def close(self, timeout: float | None = None) -> None:
        self._local.close()
        self.closed = True
        self.autoscaler = None  # deleted with the DaskCluster (shutdown_on_close)


def cluster_closed(cluster: Any) -> bool:
    """Whether a distributed cluster object has been shut down."""
    return str(getattr(cluster, "status", "")).endswith("closed")
