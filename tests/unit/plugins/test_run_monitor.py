"""The HPC Jobs view of a DAG run: job figures, live Slurm states through the cached monitor, outputs."""

from __future__ import annotations

import os

import pytest

from airflow_provider_hpcai.plugins import run_monitor
from airflow_provider_hpcai.plugins.run_monitor import job_view, output_file, run_view

DAG, RUN = "tpl_composed_0123abcd", "manual__2026-12-06T16:46:38.140518+00:00"
JOB = {"backend": "slurm", "job_id": "42", "state": "COMPLETED", "node_list": "n[1-2]", "elapsed_seconds": 100.0,
       "total_cpu_seconds": 300.0, "max_rss_bytes": 2 << 30, "submit": 1000.0, "start": 1030.0,
       "requested": {"ntasks": 4, "cpus_per_task": 1, "memory": 4 << 30, "gpus": 1},
       "advisor": {"summary": "memory 4 GiB (p95 of 12 runs)"}}


class FakeRun:
    """A run whose tasks and results change between reads, as a live run's do."""

    def __init__(self, tmp_path) -> None:
        self.reads = 0
        self.folder = tmp_path / "jobs" / "out"
        self.folder.mkdir(parents=True)
        (self.folder / "map.png").write_bytes(b"\x89PNG fake")
        (self.folder / "table.csv").write_text("a,b\n1,2\n")
        self.state = "running"
        self.results = {("sim", -1): {"kernel": "seismic", "output_dir": str(self.folder), "summary": {"pgv": 1},
                                      "job": JOB}}

    def __call__(self, dag_id, run_id):
        self.reads += 1
        if (dag_id, run_id) != (DAG, RUN):
            return None
        tasks = [{"task_id": "sim", "map_index": -1, "state": "success", "start_date": "2026-12-06T16:46:40"},
                 {"task_id": "wait", "map_index": -1, "state": "deferred", "start_date": "2026-12-06T16:46:50"}]
        return {"state": self.state, "tasks": [{**t, "duration": None} for t in tasks], "results": self.results}


def test_job_figures_requested_against_used():
    view = job_view(JOB)
    assert view["queue_seconds"] == 30.0 and view["run_seconds"] == 100.0
    assert view["requested"] == {"cpus": 4, "memory_bytes": float(4 << 30), "gpus": 1, "time_limit": None}
    assert view["efficiency"] == {"cpu": 0.75, "memory": 0.5}
    assert view["advisor"]["summary"].startswith("memory 4 GiB")


def test_queue_time_from_sacct_text_or_rest_epochs():
    assert job_view({**JOB, "submit": "2026-12-06T16:25:28", "start": "2026-12-06T16:26:10"})["queue_seconds"] == 42.0
    assert job_view({**JOB, "submit": "Unknown", "start": "2026-12-06T16:26:10"})["queue_seconds"] is None


def test_a_finished_task_shows_its_job_and_outputs_and_a_deferred_one_its_live_job(tmp_path):
    from airflow_provider_hpcai.spec import make_tag

    live = [{"job_id": "43", "state": "RUNNING", "tag": make_tag(DAG, "wait", RUN, -1), "node_list": "n3"}]
    view = run_view(DAG, RUN, reader=FakeRun(tmp_path), live_jobs=lambda: live)
    tasks = {t["task_id"]: t for t in view["tasks"]}
    assert view["live"] is True
    assert tasks["sim"]["job"]["job_id"] == "42" and tasks["sim"]["summary"] == {"pgv": 1}
    assert sorted(o["title"] for o in tasks["sim"]["outputs"]) == ["map.png", "table.csv"]
    assert tasks["wait"]["job"]["job_id"] == "43" and tasks["wait"]["job"]["live"] is True


def test_an_unknown_run_is_none(tmp_path):
    assert run_view(DAG, "other", reader=FakeRun(tmp_path)) is None


@pytest.fixture(autouse=True)
def _work_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__LOCAL_WORK_DIR", str(tmp_path / "jobs"))


def test_an_output_is_served_only_from_the_results_folder(tmp_path):
    fake = FakeRun(tmp_path)
    result = fake.results[("sim", -1)]
    listed = run_view(DAG, RUN, reader=fake)["tasks"][0]["outputs"]
    index = next(o["index"] for o in listed if o["title"] == "map.png")
    assert output_file(result, index) == (b"\x89PNG fake", "image/png")
    secret = tmp_path / "secret.csv"
    secret.write_text("password\n")
    escaping = {**result, "outputs": [{"path": str(fake.folder / ".." / ".." / "secret.csv"), "kind": "csv"}]}
    with pytest.raises(LookupError, match="outside"):
        output_file(escaping, 0)  # declared, but outside [hpcai] local_work_dir
    elsewhere = {"output_dir": str(tmp_path), "summary": {}}  # a manifest's output_dir pointing anywhere
    with pytest.raises(LookupError, match="outside"):
        output_file(elsewhere, next(i for i, o in enumerate(run_monitor.outputs_of(elsewhere))
                                    if o["path"].endswith("secret.csv")))
    os.symlink(secret, fake.folder / "link.csv")
    linked = run_view(DAG, RUN, reader=fake)["tasks"][0]["outputs"]
    with pytest.raises(LookupError, match="outside"):
        output_file(result, next(o["index"] for o in linked if o["title"] == "link.csv"))
    with pytest.raises(LookupError):
        output_file(result, 99)


def test_the_route_needs_the_dag_and_asks_the_cluster_once_however_many_watch(client, fakes, tmp_path, monkeypatch):
    from airflow_provider_hpcai.spec import make_tag

    fake = FakeRun(tmp_path)
    monkeypatch.setattr(run_monitor, "read_run", fake)
    original = fakes["cluster"].__class__.__call__

    def with_job(self, conn_id):
        answer = original(self, conn_id)
        answer["jobs"] = [{"job_id": "43", "state": "RUNNING", "tag": make_tag(DAG, "wait", RUN, -1)}]
        return answer

    monkeypatch.setattr(fakes["cluster"].__class__, "__call__", with_job)
    for _ in range(10):  # ten people watching the same live run
        answer = client.get(f"/hpcai/api/runs/{DAG}/{RUN}", headers=client.as_role("viewer"))
        assert answer.status_code == 200
        assert {t["task_id"]: t["job"]["job_id"] for t in answer.json()["tasks"]} == {"sim": "42", "wait": "43"}
    assert fakes["cluster"].calls == 1
    image = client.get(f"/hpcai/api/runs/{DAG}/{RUN}/outputs/sim/0", headers=client.as_role("viewer"))
    assert image.status_code == 200 and image.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.get(f"/hpcai/api/runs/{DAG}/nope", headers=client.as_role("viewer")).status_code == 404
    assert client.get(f"/hpcai/api/runs/{DAG}/{RUN}").status_code == 401
    assert client.get(f"/hpcai/api/runs/{DAG}/{RUN}/outputs/sim/7", headers=client.as_role("viewer")).status_code == 404
    bad = client.get(f"/hpcai/api/runs/{DAG}/run%0Aid", headers=client.as_role("viewer"))
    assert bad.status_code in (404, 422), bad.text  # a run id with a newline matches no route or is refused
