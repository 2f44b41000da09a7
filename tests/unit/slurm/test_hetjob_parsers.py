"""A heterogeneous job read back from Slurm is ONE job: squeue/sacct text (22.05), ``--json`` and
slurmrestd (22.05's v0.0.38, 24.11's v0.0.40/v0.0.42), recorded in tests/fixtures/slurm_hetjob
(capture.py). Finished-job variants are those recordings with the states of a component changed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hpcai.jobs.outcome import build_result
from airflow_provider_hpcai.slurm import cli_json, commands, rest_api
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, CommandResult, CommandRunner

HERE = Path(__file__).resolve().parents[2] / "fixtures" / "slurm_hetjob"
TAG_22 = "hpcai-60dbd5c931b9d2117644"


def _text(name: str) -> str:
    return (HERE / name).read_text()


def _json(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())


# ------------------------------------------------------------------ squeue (text and --json), /jobs
@pytest.mark.parametrize(("name", "leader", "state"), [
    ("squeue-22.05-pending.txt", "13856", "PENDING"), ("squeue-22.05-cancelled.txt", "13856", "CANCELLED"),
    ("squeue-24.11-pending.txt", "10618", "PENDING"), ("squeue-24.11-cancelled.txt", "10618", "CANCELLED"),
])
def test_squeue_lists_the_components_once_under_the_leader(name: str, leader: str, state: str) -> None:
    found = commands.parse_squeue(_text(name))
    assert list(found) == [leader]  # not the component's own id (13857 / 10619)
    assert found[leader].state == state and found[leader].tag


def test_the_five_field_squeue_format_is_still_read() -> None:
    old = "500|N/A|RUNNING|None|hpcai-tag=hpcai-0123456789abcdef0123\n501|N/A|PENDING|Priority|a|b\n"
    found = commands.parse_squeue(old)
    assert found["500"].tag == "hpcai-0123456789abcdef0123" and found["501"].state == "PENDING"


@pytest.mark.parametrize(("name", "leader"), [
    ("v0.0.38-job-pending.json", "13856"), ("v0.0.40-job-pending.json", "10606"),
    ("v0.0.42-job-pending.json", "10618"), ("squeue-json-24.11-pending.json", "10618"),
])
def test_rest_and_squeue_json_fold_the_components(name: str, leader: str) -> None:
    payload = _json(name)
    assert len(payload["jobs"]) == 2  # the recording holds both components
    found = rest_api.parse_jobs(payload) if name.startswith("v0") else cli_json.parse_squeue_json(json.dumps(payload))
    assert list(found) == [leader] and found[leader].state == "PENDING" and found[leader].tag


def _states(payload: dict[str, Any], *states: str, leader_exit: int = 0) -> dict[str, Any]:
    """The recording with its components' states (and the leader's exit code) changed."""
    out = copy.deepcopy(payload)
    for job, state in zip(out["jobs"], states, strict=True):
        offset = rest_api.unwrap(job["het_job_offset"])
        job["job_state"] = state if isinstance(job["job_state"], str) else [state]
        if offset == 0 and isinstance(job["exit_code"], int):
            job["exit_code"] = leader_exit << 8
        elif offset == 0:
            job["exit_code"]["return_code"]["number"] = leader_exit
    return out


@pytest.mark.parametrize("name", ["v0.0.38-job-pending.json", "v0.0.42-job-pending.json"])
@pytest.mark.parametrize(("states", "folded"), [
    (("RUNNING", "COMPLETED"), "RUNNING"),       # active while any component runs
    (("COMPLETED", "RUNNING"), "RUNNING"),
    (("COMPLETED", "OUT_OF_MEMORY"), "OUT_OF_MEMORY"),  # failed if any failed
    (("CANCELLED", "TIMEOUT"), "TIMEOUT"),       # the telling failure, not the cancellation it caused
    (("OUT_OF_MEMORY", "NODE_FAIL"), "NODE_FAIL"),
    (("COMPLETED", "COMPLETED"), "COMPLETED"),
])
def test_folded_state_is_the_most_telling_component(name: str, states: tuple[str, str], folded: str) -> None:
    payload = _json(name)
    order = sorted(payload["jobs"], key=lambda j: rest_api.unwrap(j["het_job_offset"]))
    payload["jobs"] = order
    found = rest_api.parse_jobs(_states(payload, *states, leader_exit=3))
    (status,) = found.values()
    assert status.state == folded and status.exit_code == 3  # the leader's (the script's) exit code


# ------------------------------------------------------------------ accounting
def test_sacct_folds_the_components_and_sums_their_allocation() -> None:
    records = commands.parse_sacct(_text("sacct-22.05-cancelled.txt"))
    assert list(records) == ["13856"]
    job = records["13856"]
    assert job["state"] == "CANCELLED" and job["tag"] == TAG_22
    assert job["alloc_cpus"] == 3 and job["requested_memory_bytes"] == (64 + 32) << 20
    assert [(c["het_group"], c["alloc_cpus"], c["requested_memory_bytes"]) for c in job["het_components"]] == \
        [(0, 1, 64 << 20), (1, 2, 32 << 20)]


def test_slurmdb_folds_the_components_like_sacct() -> None:
    records = rest_api.parse_db_job(_json("v0.0.38-slurmdb-job-cancelled.json"))
    assert list(records) == ["13856"]
    assert [c["het_group"] for c in records["13856"]["het_components"]] == [0, 1]
    assert records["13856"]["requested_memory_bytes"] == (64 + 32) << 20


@pytest.mark.parametrize("name", ["v0.0.40-slurmdb-job-cancelled.json", "v0.0.42-slurmdb-job-cancelled.json",
                                  "sacct-json-24.11-cancelled.json", "sacct-24.11-cancelled.txt"])
def test_24_11_keeps_one_record_for_a_hetjob_cancelled_while_pending(name: str) -> None:
    """24.11's accounting never splits a hetjob that never started: one record, no het ids."""
    if name.endswith(".txt"):
        records = commands.parse_sacct(_text(name))
    elif name.startswith("sacct"):
        records = cli_json.parse_sacct_json(_text(name))
    else:
        records = rest_api.parse_db_job(_json(name))
    (job,) = records.values()
    assert job["state"] == "CANCELLED" and "het_components" not in job


def _finished_sacct(state0: str, state1: str, exit0: str = "0:0") -> str:
    """The 22.05 recording as a hetjob that ran: the leader with its batch step, group 1 with a step
    of its own (srun --het-group=1), times and usage filled in (the fields as sacct prints them)."""
    lead, comp = _text("sacct-22.05-cancelled.txt").splitlines()

    def ran(line: str, job_id: str, state: str, exit_code: str, rss: str, cpu: str, alloc: str) -> str:
        f = line.split("|")
        f[0], f[2], f[3], f[4], f[5], f[6], f[7] = job_id, state, exit_code, "00:01:40", rss, cpu, "vm"
        f[14] = alloc
        return "|".join(f)

    return "\n".join([
        ran(lead, "13856+0", state0, exit0, "", "00:50.000", "billing=1,cpu=1,mem=64M,node=1"),
        ran(lead, "13856+0.batch", state0, exit0, "30000K", "00:50.000", "cpu=1,mem=64M,node=1"),
        ran(comp, "13856+1", state1, "0:0", "", "03:00.000", "billing=2,cpu=2,mem=32M,node=1"),
        ran(comp, "13856+1.0", state1, "0:9" if state1 == "OUT_OF_MEMORY" else "0:0", "33000K", "03:00.000",
            "cpu=2,mem=32M,node=1"),
    ]) + "\n"


def test_a_finished_hetjob_sums_cpu_and_keeps_each_groups_figures() -> None:
    job = commands.parse_sacct(_finished_sacct("COMPLETED", "COMPLETED"))["13856"]
    assert job["state"] == "COMPLETED" and job["exit_code"] == 0
    assert job["total_cpu_seconds"] == pytest.approx(230.0) and job["alloc_cpus"] == 3
    assert job["max_rss_bytes"] == 33000 * 1024 and job["elapsed_seconds"] == 100.0
    assert job["efficiency"]["cpu_percent"] == pytest.approx(round(100 * 230 / (100 * 3), 1))
    # memory: the group nearest its limit (33000K of 32M), not the peak over the sum of both
    assert job["efficiency"]["memory_percent"] == max(c["efficiency"]["memory_percent"] for c in job["het_components"])
    assert [(s["step"], s["het_group"]) for s in job["steps"]] == [("batch", 0), ("0", 1)]


def test_a_component_killed_for_memory_fails_the_job_as_out_of_memory() -> None:
    job = commands.parse_sacct(_finished_sacct("COMPLETED", "OUT_OF_MEMORY", exit0="3:0"))["13856"]
    assert job["state"] == "OUT_OF_MEMORY" and job["exit_code"] == 3  # the script's exit code
    result = build_result("13856", accounting=job, state="COMPLETED", exit_code=3, requested={"memory": 64 << 20})
    assert result["failure"] == "oom" and [c["state"] for c in result["het_components"]] == \
        ["COMPLETED", "OUT_OF_MEMORY"]


def test_a_timed_out_hetjob_is_a_timeout_even_where_a_component_was_cancelled() -> None:
    job = commands.parse_sacct(_finished_sacct("TIMEOUT", "CANCELLED"))["13856"]
    result = build_result("13856", accounting=job, state="TIMEOUT", exit_code=0, requested={})
    assert job["state"] == "TIMEOUT" and result["failure"] == "timeout"


# ------------------------------------------------------------------ reattach: the tag finds the job once
class _Replay(CommandRunner):
    """Answers ``squeue`` with a recorded output (and the series' version)."""

    def __init__(self, version: str, squeue: str) -> None:
        self.version, self.squeue, self.argvs = version, squeue, []

    def run(self, argv, *, stdin=None, timeout=60) -> CommandResult:
        self.argvs.append(list(argv))
        out = f"slurm {self.version}\n" if "--version" in argv else self.squeue
        return CommandResult(list(argv), 0, out, "")

    def read_file(self, path, offset, limit):
        return b""

    def home(self):
        return "/root"


@pytest.mark.parametrize(("version", "recording"), [("22.05.8", "squeue-22.05-pending.txt"),
                                                    ("24.11.5", "squeue-json-24.11-pending.json")])
def test_the_tag_lookup_finds_the_hetjob_once(version: str, recording: str) -> None:
    runner = _Replay(version, _text(recording))
    mine = CliTransport(runner).my_jobs()
    tagged = [s for s in mine.values() if s.tag]
    assert len(tagged) == 1 and tagged[0].job_id in ("13856", "10618")
    squeue = next(a for a in runner.argvs if "--version" not in a)
    assert ("--json" in squeue) == version.startswith("24")  # each series read the way the transport reads it


# ------------------------------------------------------------------ hetjobs that ran (a two-node 24.11.5 cluster)
def test_a_running_hetjob_is_one_running_job() -> None:
    text = commands.parse_squeue(_text("squeue-24.11-running.txt"))
    json_ = cli_json.parse_squeue_json(_text("squeue-json-24.11-running.json"))
    assert list(text) == list(json_) == ["23"]
    assert text["23"].state == json_["23"].state == "RUNNING" and json_["23"].tag == "hpcai-0f0f0f0f0f0f0f0f0f0f"


def test_a_group_killed_for_memory_fails_the_hetjob_as_out_of_memory() -> None:
    """The controller gives every group the script's end (FAILED, 137); the kill notice names the memory."""
    (status,) = cli_json.parse_squeue_json(_text("squeue-json-24.11-group-oom.json")).values()
    assert status.job_id == "25" and status.state == "FAILED" and status.exit_code == 137
    assert commands.parse_squeue(_text("squeue-24.11-group-oom.txt"))["25"].state == "FAILED"
    notice = "slurmstepd: error: StepId=26.0 exceeded memory limit (433180672 > 33554432), being killed"
    result = build_result("25", accounting={}, state=status.state, exit_code=status.exit_code, requested={},
                          output_tail=notice)
    assert result["failure"] == "oom"


def test_a_script_that_ignores_a_failed_group_succeeds() -> None:
    """A bare ``wait`` returns 0: Slurm records both groups COMPLETED (docs/slurm.md says to wait per group)."""
    assert commands.parse_squeue(_text("squeue-24.11-group-oom-ignored.txt"))["23"].state == "COMPLETED"


@pytest.mark.parametrize("source", ["sacct-22.05-group-oom.txt", "v0.0.38-slurmdb-job-group-oom.json",
                                    "sacct-24.11-group-oom.txt", "sacct-json-24.11-group-oom.json",
                                    "v0.0.42-slurmdb-job-group-oom.json"])
def test_accounting_of_a_group_killed_for_memory_says_out_of_memory(source: str) -> None:
    """22.05.8 and 24.11.5, partition 'het' (two nodes): Slurm records both groups FAILED and the kill
    only on group 1's step (CANCELLED, 0:9, 408 MiB over its 32 MiB); the fold counts that group as
    OUT_OF_MEMORY, so accounting alone classifies the task, without the kill notice."""
    if source.startswith("sacct-json"):
        records = cli_json.parse_sacct_json(_text(source))
    elif source.endswith(".txt"):
        records = commands.parse_sacct(_text(source))
    else:
        records = rest_api.parse_db_job(_json(source))
    (job_id, job), = records.items()
    assert job["state"] == "OUT_OF_MEMORY"
    assert [(c["het_group"], c["state"], c["alloc_cpus"]) for c in job["het_components"]] == \
        [(0, "FAILED", 1), (1, "FAILED", 2)]
    assert job["alloc_cpus"] == 3 and set(job["node_list"].split(",")) == {"vm", "vm-het"}
    assert {s["het_group"] for s in job["steps"]} == {0, 1}
    result = build_result(job_id, accounting=job, state="FAILED", exit_code=137, requested={"memory": 64 << 20})
    assert result["failure"] == "oom"
    assert result["efficiency"]["memory_percent"] > 100  # group 1's peak over its own request


def test_a_failed_group_within_its_memory_is_no_memory_kill() -> None:
    """The same records with group 1's peak under its request: a plain failure, not out of memory."""
    text = _text("sacct-22.05-group-oom.txt").replace("|417652K|", "|1024K|")
    job = commands.parse_sacct(text)["13921"]
    assert job["state"] == "FAILED"
    assert build_result("13921", accounting=job, state="FAILED", exit_code=137, requested={})["failure"] == "failed"
