from __future__ import annotations

import pytest

from airflow_provider_hpcai.advisor.history import (
    HistoryStore,
    JobRecord,
    record_from_accounting,
    record_from_swf,
)
from airflow_provider_hpcai.advisor.swf import parse_swf
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources

ACCOUNTING = {
    "job_id": "4242",
    "state": "OUT_OF_MEMORY",
    "exit_code": 0,
    "elapsed_seconds": 95,
    "max_rss_bytes": 3 * 1024**3,
    "total_cpu_seconds": 300.0,
    "node_list": "n1",
    "requested": Resources(ntasks=4, cpus_per_task=2, memory="2G", gpus="a100:2", time_limit="00:30:00").to_dict(),
    "submit_time": "2025-01-02T03:04:05+00:00",
}
KEY = {"dag_id": "cfd", "task_id": "solve", "owner": "bob", "kernel": "wave", "nx": 512, "ny": 256}


def test_record_from_accounting_keeps_what_the_model_needs():
    record = record_from_accounting(ACCOUNTING, KEY)
    assert record.job_id == "4242" and record.out_of_memory and not record.timed_out
    assert record.cpus == 8 and record.gpus == 2
    assert record.requested_seconds == 1800 and record.requested_memory_bytes == 2 * 1024**3
    assert record.max_rss_bytes == 3 * 1024**3
    assert record.size_params == {"nx": 512.0, "ny": 256.0}
    assert record.series == "task:cfd.solve"
    assert record.submit_time == pytest.approx(1735787045.0)


def test_accounting_without_state_is_rejected():
    with pytest.raises(InvalidJobSpecError, match="job_id"):
        record_from_accounting({"job_id": "1"}, KEY)


def test_record_from_swf_marks_jobs_that_hit_their_limit():
    trace = parse_swf(["1 0 5 600 4 -1 2048 4 600 -1 1 7 1 3 -1 -1 -1 -1"])
    record = record_from_swf(trace.records[0])
    assert record.state == "TIMEOUT" and record.user == "u7" and record.kernel == "app3"
    assert record.max_rss_bytes == 2048 * 1024 and record.series == "user:u7/app3"


def test_store_round_trip_and_upsert(tmp_path):
    store = HistoryStore(tmp_path / "home")
    first = record_from_accounting(ACCOUNTING, KEY)
    later = JobRecord(job_id="7", submit_time=first.submit_time + 10, state="COMPLETED", elapsed_seconds=5,
                      requested_seconds=60, user="bob")
    assert store.add([later, first]) == 2
    store.add(JobRecord.from_dict({**first.to_dict(), "state": "COMPLETED"}))  # same id: replaced
    records = store.records()
    assert [r.job_id for r in records] == ["4242", "7"] and len(store) == 2
    assert records[0].state == "COMPLETED" and records[0].size_params == {"nx": 512.0, "ny": 256.0}
    assert [r.job_id for r in store.records(series="task:cfd.solve")] == ["4242"]
    assert HistoryStore(tmp_path / "empty").records() == []


def test_operator_results_name_the_limit_the_job_hit():
    """Without cgroups a memory kill ends FAILED: the operator's classification decides the state."""
    oom = record_from_accounting({**ACCOUNTING, "state": "FAILED", "failure": "oom"}, KEY)
    slow = record_from_accounting({**ACCOUNTING, "state": "TIMEOUT", "failure": "timeout"}, KEY)
    broken = record_from_accounting({**ACCOUNTING, "state": "FAILED", "failure": "failed"}, KEY)
    assert oom.out_of_memory and slow.timed_out and broken.state == "FAILED"


def test_a_result_without_submit_time_is_dated_from_now(monkeypatch):
    import time

    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    bare = {k: v for k, v in ACCOUNTING.items() if k != "submit_time"}
    assert record_from_accounting(bare, KEY).submit_time == 2_000_000_000.0 - 95
    sacct_style = {**bare, "submit": "2025-01-02T03:04:05+00:00"}
    assert record_from_accounting(sacct_style, KEY).submit_time == 1735787045.0


def test_store_lists_its_job_ids_by_source(tmp_path):
    store = HistoryStore(tmp_path)
    assert store.job_ids() == set()
    store.add(record_from_accounting(ACCOUNTING, KEY))
    assert store.job_ids("slurm") == {"4242"} and store.job_ids("swf") == set()
