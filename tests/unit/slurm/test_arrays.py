"""array_batch: mapped items as chunked job arrays (chunking, item files, the dispatcher, one
submission per chunk even when task instances race, retries alone), on the stateful fake cluster."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.exceptions import ConfigurationError, InvalidJobSpecError
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.slurm import arrays, commands
from airflow_provider_hpcai.spec import JobSpec
from tests.fakes.slurm import FakeSlurmTransport
from tests.support import FakeTI, make_context


class CountingTI(FakeTI):
    def __init__(self, map_index: int, total: int, try_number: int = 1) -> None:
        super().__init__(map_index=map_index, try_number=try_number)
        self.total = total

    def get_ti_count(self, **_: object) -> int:
        return self.total


def _op(workdir: str, **kwargs: object) -> SlurmJobOperator:
    return SlurmJobOperator(task_id="item", script='echo "item=$ITEM"', array_batch=5, workdir=workdir,
                            deferrable=False, job_resources={"memory": "50M"}, **kwargs)


def _context(run_id: str, index: int, total: int) -> dict[str, object]:
    context = make_context(run_id=run_id)
    context["ti"] = CountingTI(index, total)
    return context


@pytest.fixture()
def cluster():
    fake = FakeSlurmTransport()
    return fake, SlurmBackend(hook=SlurmHook(transport=fake))


def _spec(index: int, **changes: object) -> JobSpec:
    return JobSpec(**{"name": "dag.item", "script": 'echo "item=$ITEM"', "environment": {"ITEM": str(index)},
                      **changes})


@pytest.mark.parametrize(("index", "total", "expected"), [
    (0, 12, arrays.Placement(0, 0, 0, 5)), (7, 12, arrays.Placement(1, 5, 2, 5)),
    (11, 12, arrays.Placement(2, 10, 1, 2)), (299, 300, arrays.Placement(5, 250, 49, 50)),
])
def test_placement(index, total, expected):
    batch = 50 if total == 300 else 5
    assert arrays.placement(index, total, batch) == expected


@pytest.mark.parametrize("bad", [0, -1, 10001, 2.5, "5", True])
def test_array_batch_is_validated(bad):
    with pytest.raises(InvalidJobSpecError, match="array_batch"):
        SlurmJobOperator(task_id="t", script="true", array_batch=bad)


def test_array_batch_and_array_cannot_be_combined():
    with pytest.raises(InvalidJobSpecError, match="cannot be combined"):
        SlurmJobOperator(task_id="t", script="true", array_batch=5, array="0-3")


def test_chunk_tags_differ_per_chunk_and_from_task_tags():
    from airflow_provider_hpcai.spec import make_tag

    tags = {arrays.chunk_tag("d", "t", "r", c) for c in range(3)}
    assert len(tags) == 3 and make_tag("d", "t", "r", 0) not in tags
    JobSpec(name="x", script="true", tag=next(iter(tags)))  # a valid provider tag


def test_twelve_items_make_three_array_submissions_and_each_waits_on_its_element(cluster, tmp_path):
    fake, backend = cluster
    refs = {}
    for index in range(12):
        op = _op(str(tmp_path))
        refs[index] = op.submit_job(_context("run1", index, 12), backend, _spec(index), None)
    assert fake.submissions == 3
    arrays_submitted = sorted(fake.jobs.values(), key=lambda j: int(j.job_id))
    assert [j.array for j in arrays_submitted] == ["0-4", "0-4", "0-1"]
    for index, ref in refs.items():
        array_id = arrays_submitted[index // 5].job_id
        assert ref.job_id == f"{array_id}_{index % 5}"
        assert ref.stdout_path == f"{tmp_path}/hpcai-{array_id}_{index % 5}.out"
        item = Path(tmp_path, f"hpcai-array-{ref.tag}", f"item-{index % 5}.sh").read_text()
        assert f"export ITEM={index}\n" in item and 'echo "item=$ITEM"' in item
    # Submitted held; each task instance released its own element once its script was in place.
    assert all("#SBATCH --hold" in j.script for j in arrays_submitted)
    assert sorted(fake.released) == sorted(ref.job_id for ref in refs.values())
    # Each array runs the dispatcher, not an item's script; the items' environment is not in it.
    assert all("item-${SLURM_ARRAY_TASK_ID}.sh" in j.script and "ITEM=" not in j.script for j in arrays_submitted)


def test_racing_task_instances_submit_a_chunk_once(cluster, tmp_path):
    fake, backend = cluster
    barrier = threading.Barrier(5)
    refs = []

    def one(index: int) -> None:
        barrier.wait()
        refs.append(_op(str(tmp_path)).submit_job(_context("race", index, 5), backend, _spec(index), None))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.submissions == 1
    assert sorted(r.job_id.split("_")[1] for r in refs) == ["0", "1", "2", "3", "4"]


def test_a_lost_chunk_record_is_replaced_by_the_controllers_tagged_job(cluster, tmp_path):
    fake, backend = cluster
    first = _op(str(tmp_path)).submit_job(_context("lost", 0, 5), backend, _spec(0), None)
    os.unlink(Path(tmp_path, f"hpcai-array-{first.tag}", "chunk.json"))  # a crash after sbatch, before the record
    second = _op(str(tmp_path)).submit_job(_context("lost", 1, 5), backend, _spec(1), None)
    assert fake.submissions == 1 and second.job_id == first.job_id.split("_")[0] + "_1"


def test_a_retry_submits_only_its_own_item(cluster, tmp_path):
    fake, backend = cluster
    _op(str(tmp_path)).submit_job(_context("retry", 3, 5), backend, _spec(3), None)
    ref = _op(str(tmp_path)).submit_job(_context("retry", 3, 5), backend, _spec(3), {"failure": "failed"})
    assert fake.submissions == 2 and "_" not in ref.job_id
    assert fake.job(ref.job_id).array is None and "export ITEM=3" in fake.job(ref.job_id).script


def test_an_item_with_other_resources_runs_alone(cluster, tmp_path):
    fake, backend = cluster
    _op(str(tmp_path)).submit_job(_context("res", 0, 5), backend, _spec(0), None)
    other = _spec(1).replace(resources=_spec(1).resources.replace(cpus_per_task=4))
    ref = _op(str(tmp_path)).submit_job(_context("res", 1, 5), backend, other, None)
    assert fake.submissions == 2 and "_" not in ref.job_id
    assert fake.cancelled == ["1000_1"]  # its held element is cancelled, never left pending


def test_an_expired_element_sends_its_late_item_alone(cluster, tmp_path):
    fake, backend = cluster
    first = _op(str(tmp_path)).submit_job(_context("late", 0, 5), backend, _spec(0), None)
    Path(tmp_path, f"hpcai-array-{first.tag}", "item-4.sh").write_text("")  # element 4 gave up and claimed it
    ref = _op(str(tmp_path)).submit_job(_context("late", 4, 5), backend, _spec(4), None)
    assert fake.submissions == 2 and "_" not in ref.job_id


def test_an_element_that_cannot_be_released_runs_its_item_alone(cluster, tmp_path):
    fake, backend = cluster
    fake.fail_next(1, retryable=False, ops=["release"], stderr="scontrol: error: Access/permission denied")
    ref = _op(str(tmp_path)).submit_job(_context("rel", 2, 5), backend, _spec(2), None)
    assert fake.submissions == 2 and "_" not in ref.job_id and fake.cancelled == ["1000_2"]


def test_unknown_item_count_or_unmapped_task_submits_a_plain_job(cluster, tmp_path):
    fake, backend = cluster
    context = make_context(run_id="plain")
    context["ti"] = FakeTI(map_index=2)  # no get_ti_count to ask
    ref = _op(str(tmp_path)).submit_job(context, backend, _spec(2), None)
    assert "_" not in ref.job_id and fake.job(ref.job_id).array is None


def test_ssh_transport_is_refused_with_a_clear_error():
    with pytest.raises(ConfigurationError, match="file system this worker shares"):
        arrays.require_shared_files("ssh", {})


def _dispatch(folder: Path, index: int, wait: int) -> subprocess.CompletedProcess[str]:
    script = arrays.dispatcher_script(str(folder), wait_seconds=wait)
    return subprocess.run(["bash", "-c", script], env={**os.environ, "SLURM_ARRAY_TASK_ID": str(index)},
                          capture_output=True, text=True, timeout=30)


def test_dispatcher_runs_the_items_script(tmp_path):
    chunk = arrays.ArrayChunk(str(tmp_path), arrays.chunk_tag("d", "t", "r", 0))
    assert chunk.write_item(2, arrays.element_script(_spec(2, environment={"ITEM": "it's $(id)"}))) == "written"
    done = _dispatch(Path(chunk.folder), 2, wait=5)
    assert done.returncode == 0 and done.stdout == "item=it's $(id)\n"


def test_dispatcher_gives_up_claims_the_name_and_the_late_item_is_told(tmp_path):
    chunk = arrays.ArrayChunk(str(tmp_path), arrays.chunk_tag("d", "t", "r", 0))
    os.makedirs(chunk.folder)
    done = _dispatch(Path(chunk.folder), 1, wait=1)
    assert done.returncode == arrays.EXPIRED_EXIT and "no script for array element 1" in done.stderr
    assert chunk.write_item(1, "echo late\n") == "expired"


def test_write_item_tells_same_and_other_text(tmp_path):
    chunk = arrays.ArrayChunk(str(tmp_path), arrays.chunk_tag("d", "t", "r", 0))
    assert chunk.write_item(0, "echo a\n") == "written"
    assert chunk.write_item(0, "echo a\n") == "same"
    assert chunk.write_item(0, "echo b\n") == "other"
    assert sorted(os.listdir(chunk.folder)) == ["item-0.sh"]  # no leftovers written aside


def test_squeue_and_sacct_report_elements_on_their_own():
    out = "77|0|COMPLETED|None|hpcai-tag=hpcai-aaaaaaaaaaaaaaaaaaaa\n77|1|FAILED|NonZeroExitCode|x\n77|2|PENDING|None|x\n"
    found = commands.parse_squeue(out, elements=True)
    assert found["77_0"].state == "COMPLETED" and found["77_1"].state == "FAILED" and found["77_2"].state == "PENDING"
    assert found["77"].state == "PENDING"  # the array as a whole: still active
    assert "77_0" not in commands.parse_squeue(out)
    assert "--array" in commands.squeue_argv(["77_1"]) and "--jobs=77_1" in commands.squeue_argv(["77_1"])
    fields = len(commands.SACCT_FIELDS)
    row = ["77_1", "n", "FAILED", "3:0", "00:00:02", "", "00:00:00.5", "vm", "50M", "00:05:00", "1",
           "2026-01-01T00:00:00", "2026-01-01T00:00:00", "2026-01-01T00:00:02", "cpu=1,mem=50M", "", "0",
           "hpcai-tag=hpcai-aaaaaaaaaaaaaaaaaaaa"]
    step = ["77_1.batch", "batch", "FAILED", "3:0", "00:00:02", "2048K", "00:00:00.5", "vm", "", "", "1",
            "2026-01-01T00:00:00", "2026-01-01T00:00:00", "2026-01-01T00:00:02", "cpu=1,mem=50M", "mem=2048K", "0", ""]
    assert len(row) == fields
    text = "|".join(row) + "\n" + "|".join(step) + "\n"
    record = commands.parse_sacct(text, elements=True)["77_1"]
    assert record["exit_code"] == 3 and record["max_rss_bytes"] == 2048 * 1024 and record["steps"][0]["step"] == "batch"
    assert "77" in commands.parse_sacct(text) and "77_1" not in commands.parse_sacct(text)


def test_rest_lists_elements_running_ended_and_pending_in_a_range():
    from airflow_provider_hpcai.slurm import rest_api

    payload = {"jobs": [
        {"job_id": 80, "array_job_id": 77, "array_task_id": 0, "job_state": "COMPLETED", "exit_code": 0},
        {"job_id": 81, "array_job_id": 77, "array_task_id": 1, "job_state": "RUNNING"},
        {"job_id": 77, "array_job_id": 77, "array_task_id": None, "array_task_string": "2-4%2",
         "job_state": "PENDING"},
    ]}
    found = rest_api.parse_jobs(payload, elements=True)
    assert {k: v.state for k, v in found.items() if "_" in k} == {
        "77_0": "COMPLETED", "77_1": "RUNNING", "77_2": "PENDING", "77_3": "PENDING", "77_4": "PENDING"}
    assert not any("_" in k for k in rest_api.parse_jobs(payload))
