"""Worker-hours from workers' join and leave times, against a fixed cluster sized for the peak."""

from __future__ import annotations

from airflow_provider_hpcai.dask.usage import WorkerTimeline, format_usage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_adaptive_usage_against_a_fixed_cluster_of_the_peak() -> None:
    clock = Clock()
    tl = WorkerTimeline(clock)
    tl.joined("w0", 1000.0)          # the minimum, for the whole 100 s
    tl.joined("w1", 1010.0)          # the burst: two more for 30 s
    tl.joined("w2", 1010.0)
    tl.left("w1", 1040.0)
    tl.left("w2", 1040.0)
    tl.job_ids.update({"12", "9", "10"})
    clock.now = 1100.0
    tl.close()
    s = tl.summary()
    assert s["workers_started"] == 3 and s["peak_workers"] == 3 and s["running_workers"] == 0
    assert s["worker_seconds"] == 160.0 and s["span_seconds"] == 100.0
    assert s["fixed_worker_hours"] == round(300 / 3600, 6)
    assert s["saved_fraction"] == round(1 - 160 / 300, 4)
    assert s["job_ids"] == ["9", "10", "12"] and s["worker_jobs"] == 3
    line = format_usage(s)
    assert "3 worker(s) (3 Slurm jobs)" in line and "a fixed cluster of the peak (3) for 100s" in line
    assert "(-47 %)" in line


def test_open_workers_count_up_to_now_and_polls_reconcile() -> None:
    clock = Clock()
    tl = WorkerTimeline(clock)
    tl.observe({"a", "b"}, 1000.0)
    tl.observe({"b"}, 1020.0)       # a left between the polls
    clock.now = 1030.0
    s = tl.summary()
    assert s["running_workers"] == 1 and s["worker_seconds"] == 20.0 + 30.0
    assert s["span_seconds"] == 30.0 and s["peak_workers"] == 2


def test_no_workers_no_hours() -> None:
    s = WorkerTimeline(Clock()).summary()
    assert s["worker_hours"] == 0 and s["fixed_worker_hours"] == 0 and s["saved_fraction"] == 0.0


def test_series_steps_with_the_workers_and_the_plot_is_written(tmp_path) -> None:
    from airflow_provider_hpcai.casestudies.plots import workers_over_time

    clock = Clock()
    tl = WorkerTimeline(clock)
    tl.joined("w0", 1002.0)
    tl.joined("w1", 1010.0)
    tl.left("w1", 1040.0)
    clock.now = 1050.0
    assert tl.series() == [(0.0, 0), (2.0, 1), (10.0, 2), (40.0, 1), (50.0, 1)]
    png = workers_over_time({"adaptive": tl.series()}, str(tmp_path / "w.png"))
    assert (tmp_path / "w.png").stat().st_size > 5_000 and png.endswith("w.png")
