"""Progress lines and XCom-ready results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_hpcai.dask.progress import (
    ProgressReporter,
    format_progress,
    summarise_futures,
    to_jsonable,
)


class ListLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, fmt: str, *args: Any) -> None:
        self.lines.append(fmt % args)

    def debug(self, fmt: str, *args: Any) -> None:
        pass


@dataclass
class _State:
    status: str


@dataclass
class FakeClient:
    """A client whose futures finish one by one as the test advances them."""

    futures: dict[str, _State] = field(default_factory=dict)
    workers: int = 2

    def add(self, n: int) -> None:
        for i in range(n):
            self.futures[f"f-{len(self.futures) + i}"] = _State("pending")

    def finish(self, n: int, status: str = "finished") -> None:
        for state in [s for s in self.futures.values() if s.status == "pending"][:n]:
            state.status = status

    def scheduler_info(self, n_workers: int = -1) -> dict[str, Any]:
        return {"workers": {f"w{i}": {} for i in range(self.workers)}}


def test_summary_and_line() -> None:
    summary = summarise_futures(["finished"] * 12 + ["pending"] * 27 + ["error"])
    assert summary == {"finished": 12, "pending": 27, "error": 1, "cancelled": 0, "lost": 0, "total": 40}
    assert format_progress(summary, 2, 8.2) == "dask: 12/40 futures finished (27 pending, 1 failed), 2 workers, 8s"
    assert format_progress(summarise_futures([]), None, 0) == "dask: 0/0 futures finished (0 pending, 0 failed), 0s"


def test_reporter_logs_changes_and_stays_quiet_otherwise() -> None:
    client, log = FakeClient(), ListLog()
    reporter = ProgressReporter(client, log, interval=60)
    client.add(4)
    reporter.report()
    reporter.report()  # nothing changed: no second line
    client.finish(3)
    client.workers = 1
    reporter.report()
    assert [line.rsplit(", ", 1)[0] for line in log.lines] == [
        "dask: 0/4 futures finished (4 pending, 0 failed), 2 workers",
        "dask: 3/4 futures finished (1 pending, 0 failed), 1 worker",
    ]


def test_reporter_thread_reports_while_work_runs() -> None:
    client, log = FakeClient(), ListLog()
    client.add(3)
    with ProgressReporter(client, log, interval=0.05):
        for _ in range(3):
            time.sleep(0.2)
            client.finish(1)
        time.sleep(0.2)
    finished = [int(line.split(" ")[1].split("/")[0]) for line in log.lines]
    assert finished == sorted(finished) and finished[-1] == 3 and len(finished) >= 3


def test_reporter_against_a_real_client() -> None:
    from distributed import Client, LocalCluster

    log = ListLog()
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        reporter = ProgressReporter(client, log, interval=60)
        futures = client.map(time.sleep, [0.01] * 6, pure=False)
        client.gather(futures)
        line = reporter.report()
        closing = reporter.finish()
    assert line.startswith("dask: 6/6 futures finished (0 pending, 0 failed), 2 workers")
    assert closing.startswith("dask: done in ") and closing.endswith(", 2 workers")


def test_jsonable_converts_numpy_and_containers() -> None:
    import numpy as np

    value = {"total": np.float64(2.5), "counts": np.arange(3), "pair": (1, "a"), "ids": {3, 1}, "n": np.int32(7),
             "ok": np.bool_(True), 5: None}
    assert to_jsonable(value) == {"total": 2.5, "counts": [0, 1, 2], "pair": [1, "a"], "ids": [1, 3], "n": 7,
                                  "ok": True, "5": None}


def test_jsonable_names_what_cannot_go_to_xcom() -> None:
    with pytest.raises(TypeError, match=r"result\['grid'\]\[1\] is a builtins.object.*write large data to a file"):
        to_jsonable({"grid": [1, object()]})


def test_scaling_line_names_running_pending_and_wanted_workers() -> None:
    from airflow_provider_hpcai.dask.progress import format_scaling

    scaling = format_scaling(3, 1, 2, "adaptive 1-3 jobs")
    assert scaling == "workers: 1 running, 2 pending, 3 wanted (adaptive 1-3 jobs)"
    line = format_progress(summarise_futures(["finished"] * 5 + ["pending"] * 195), 1, 4.0, scaling=scaling)
    assert line == ("dask: 5/200 futures finished (195 pending, 0 failed); workers: 1 running, 2 pending, 3 wanted "
                    "(adaptive 1-3 jobs); 4s")
    assert format_scaling(None, 2, None) == "workers: 2 running"


def test_reporter_shows_the_cluster_growing() -> None:
    client, log = FakeClient(workers=1), ListLog()
    client.add(10)
    sizes = iter(["workers: 1 running, 2 pending, 3 wanted", "workers: 3 running, 0 pending, 3 wanted"])
    reporter = ProgressReporter(client, log, interval=60, scaling=lambda: next(sizes))
    reporter.report()
    reporter.report()
    assert [line.split("; ")[1] for line in log.lines] == ["workers: 1 running, 2 pending, 3 wanted",
                                                           "workers: 3 running, 0 pending, 3 wanted"]
