"""``squeue --json`` / ``sacct --json`` read through the slurmrestd parsers, over real output.

The fixtures (``tests/fixtures/slurm_cli_json/<series>/``, ``capture.py`` there) hold, for the
same six jobs on one real cluster (success, exit 3, cancelled, time limit, memory kill, a
three-element array whose element ``i`` exits ``i``), what ``squeue --json``/``sacct --json``
printed, what that cluster's slurmrestd answered, and the text the CLI parsed before. Each test
fails when the CLI and REST paths (or the JSON and text paths) stop meaning the same thing.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError, TransportError
from airflow_provider_hpcai.slurm import cli_json, commands, rest_api
from airflow_provider_hpcai.slurm.outcome import build_result

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm_cli_json"
SERIES = ["24.11", "26.05"]
#: What a user sees of each recorded job: state, exit code, signal, failure class.
EXPECTED = {"ok": ("COMPLETED", 0, None, None), "fail": ("FAILED", 3, None, "failed"),
            "cancel": ("CANCELLED", 143, 15, "cancelled"), "timeout": ("TIMEOUT", 143, 15, "timeout"),
            "oom": ("FAILED", 137, 9, "oom"), "array": ("FAILED", 1, None, "failed")}


@cache
def text(series: str, name: str) -> str:
    return (FIXTURES / series / name).read_text()


def payload(series: str, name: str) -> dict[str, Any]:
    return json.loads(text(series, name))


def ids(series: str) -> dict[str, str]:
    return {key: str(value) for key, value in payload(series, "ids.json")["jobs"].items()}


# ------------------------------------------------------------------------------------ squeue
@pytest.mark.parametrize("series", SERIES)
@pytest.mark.parametrize("elements", [False, True])
def test_squeue_json_gives_what_slurmrestd_gives(series, elements):
    """The same job statuses (exit code, reason, tag, array elements) from the CLI as from REST."""
    cli = cli_json.parse_squeue_json(text(series, "squeue.json"), elements=elements)
    rest = rest_api.parse_jobs(payload(series, "rest_jobs.json"), elements=elements)
    assert cli == rest
    mine = ids(series)
    seen = {key: (cli[job_id].state, cli[job_id].exit_code, cli[job_id].tag) for key, job_id in mine.items()}
    assert seen == {key: (state, code, f"cj-{key}") for key, (state, code, _, _) in EXPECTED.items()}
    assert cli[mine["oom"]].reason == "RaisedSignal" and cli[mine["timeout"]].reason == "TimeLimit"
    elements_seen = {k: (s.state, s.exit_code) for k, s in cli.items() if "_" in k}
    array = mine["array"]
    assert elements_seen == ({f"{array}_0": ("COMPLETED", 0), f"{array}_1": ("FAILED", 1),
                              f"{array}_2": ("FAILED", 2)} if elements else {})


@pytest.mark.parametrize("series", SERIES)
def test_squeue_json_of_one_element(series):
    """``--jobs=<array>_1`` lists that element only; its status is the one REST gives it."""
    element = ids(series)["array"] + "_1"
    cli = cli_json.parse_squeue_json(text(series, "squeue_element.json"), elements=True)
    rest = rest_api.parse_jobs(payload(series, "rest_element.json"), elements=True)
    assert cli[element] == rest[element]
    assert (cli[element].state, cli[element].exit_code) == ("FAILED", 1)


@pytest.mark.parametrize("series", SERIES)
def test_squeue_json_me_finds_jobs_by_tag(series):
    """``squeue --json --me``: what find_jobs_by_tag reads; ended jobs included (--states=all)."""
    found = cli_json.parse_squeue_json(text(series, "squeue_me.json"))
    assert {s.tag: s.job_id for s in found.values()} == {f"cj-{key}": job_id for key, job_id in ids(series).items()}


@pytest.mark.parametrize("series", SERIES)
def test_the_array_fold_does_not_depend_on_the_listing_order(series):
    """squeue and slurmrestd list an array's elements in different orders: the first failed one names the exit code."""
    raw = payload(series, "rest_jobs.json")
    array = ids(series)["array"]
    for jobs in (raw["jobs"], raw["jobs"][::-1]):
        assert rest_api.parse_jobs({"jobs": jobs})[array].exit_code == 1


# ------------------------------------------------------------------------------------ sacct
@pytest.mark.parametrize("series", SERIES)
def test_sacct_json_gives_what_slurmdbd_rest_gives(series):
    """Whole accounting records (steps, efficiency, exit codes, signals) equal for every plain job."""
    cli = cli_json.parse_sacct_json(text(series, "sacct.json"))
    rest = rest_api.parse_db_job(payload(series, "rest_db.json"))
    for key, job_id in ids(series).items():
        if key != "array":
            assert cli[job_id] == rest[job_id], key
    assert set(cli[ids(series)["ok"]]["efficiency"]) == {"cpu_percent", "memory_percent", "gpus", "gpu_usage",
                                                         "consumed_energy_joules"}


@pytest.mark.parametrize("series", SERIES)
def test_sacct_json_of_one_element_is_the_element_rest_gives(series):
    element = ids(series)["array"] + "_1"
    cli = cli_json.parse_sacct_json(text(series, "sacct_element.json"), elements=True)
    assert cli == rest_api.parse_db_job(payload(series, "rest_db_element.json"), elements=True)
    assert list(cli) == [element] and (cli[element]["state"], cli[element]["exit_code"]) == ("FAILED", 1)


@pytest.mark.parametrize("series", SERIES)
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_results_and_failure_classes_match_over_cli_json_rest_and_text(series, key):
    """What a task returns: the same state, exit code, signal and failure class on all three paths."""
    job_id = ids(series)[key]
    status = cli_json.parse_squeue_json(text(series, "squeue.json"))[job_id]
    records = {"json": cli_json.parse_sacct_json(text(series, "sacct.json"))[job_id],
               "text": commands.parse_sacct(text(series, "sacct.txt"))[job_id]}
    if key != "array":  # REST keys an array's accounting by each element's own job id
        records["rest"] = rest_api.parse_db_job(payload(series, "rest_db.json"))[job_id]
    results = {}
    for path, record in records.items():
        result = build_result(job_id, accounting=record, state=status.state, exit_code=status.exit_code,
                              requested={"memory": record.get("requested_memory_bytes")})
        results[path] = (result["state"], result["exit_code"], result["signal"], result["failure"])
    assert results == dict.fromkeys(records, EXPECTED[key])


@pytest.mark.parametrize("series", SERIES)
def test_sacct_json_agrees_with_the_text_parser(series):
    """Figures both paths read: a switch from text to JSON changes none of them."""
    cli = cli_json.parse_sacct_json(text(series, "sacct.json"))
    txt = commands.parse_sacct(text(series, "sacct.txt"))
    assert set(cli) == set(txt) == set(ids(series).values())
    fields = ("name", "state", "exit_code", "signal", "elapsed_seconds", "node_list", "requested_memory_bytes",
              "time_limit_seconds", "alloc_cpus", "tag")
    for job_id in set(ids(series).values()) - {ids(series)["array"]}:
        assert {f: cli[job_id][f] for f in fields} == {f: txt[job_id][f] for f in fields}, job_id
        assert cli[job_id]["max_rss_bytes"] == txt[job_id]["max_rss_bytes"]
        assert cli[job_id]["efficiency"]["memory_percent"] == txt[job_id]["efficiency"]["memory_percent"]
        assert [(s["step"], s["state"], s["exit_code"]) for s in cli[job_id]["steps"]] == \
            [(s["step"], s["state"], s["exit_code"]) for s in txt[job_id]["steps"]]


@pytest.mark.parametrize("series", SERIES)
def test_an_arrays_accounting_folds_as_the_text_parser_folds_it(series):
    array = ids(series)["array"]
    cli = cli_json.parse_sacct_json(text(series, "sacct.json"))[array]
    txt = commands.parse_sacct(text(series, "sacct.txt"))[array]
    assert (cli["state"], cli["exit_code"], cli["tag"]) == (txt["state"], txt["exit_code"], txt["tag"]) == \
        ("FAILED", 1, "cj-array")
    assert [(t["task"], t["state"], t["exit_code"]) for t in cli["array_tasks"]] == \
        [(t["task"], t["state"], t["exit_code"]) for t in txt["array_tasks"]]


def test_a_pending_range_keeps_the_array_active():
    records = {"7_0": {"job_id": "7_0", "state": "FAILED", "exit_code": 1},
               "7": {"job_id": "7", "state": "PENDING", "exit_code": None},
               "8": {"job_id": "8", "state": "COMPLETED", "exit_code": 0}}
    folded = cli_json.fold_array_records(records)
    assert folded["7"]["state"] == "PENDING" and [t["task"] for t in folded["7"]["array_tasks"]] == ["7_0", "7"]
    assert folded["8"] == records["8"] and set(folded) == {"7", "8"}


# ------------------------------------------------------------------------------------ versions and errors
@pytest.mark.parametrize(("series", "parser"), [("24.11", "v0.0.42"), ("26.05", "v0.0.45")])
def test_each_cli_names_the_data_parser_slurmrestd_serves(series, parser):
    for name in ("squeue.json", "sacct.json"):
        assert cli_json.data_parser_version(payload(series, name)) == parser
    assert parser in rest_api.SUPPORTED_VERSIONS and payload(series, "ids.json")["rest_version"] == parser


def test_22_05_stays_on_text():
    """22.05's squeue --json ignores --jobs (it listed 12 jobs for one asked) and prints v0.0.38 shapes."""
    recorded = payload("22.05", "squeue_filter_ignored.json")
    assert set(recorded["returned_job_ids"]) > set(recorded["asked"])
    assert not cli_json.uses_json((22, 5)) and not cli_json.uses_json((24, 5)) and not cli_json.uses_json(None)
    assert cli_json.uses_json((24, 11)) and cli_json.uses_json((26, 5))
    with pytest.raises(TransportError, match="v0.0.38.*text"):
        cli_json.parse_squeue_json(text("22.05", "squeue.json"))


@pytest.mark.parametrize(("output", "message"), [
    ("squeue: error: Invalid job id specified", "printed no JSON"),
    ("[]", "no 'jobs' list"),
    ('{"jobs": {}}', "no 'jobs' list"),
    ('{"jobs": [], "errors": [{"description": "Unable to contact slurm controller", "error_number": 1007}]}',
     "Unable to contact slurm controller"),
])
def test_malformed_output_is_a_clear_error(output, message):
    with pytest.raises(TransportError, match=message) as info:
        cli_json.parse_sacct_json(output, command="sacct --json --jobs=5")
    assert info.value.command == "sacct --json --jobs=5"
    assert info.value.retryable is ("contact slurm controller" in output)  # an outage is ridden out; garbage is not


def test_json_argv():
    assert commands.squeue_json_argv(["5", "6_2"]) == ["squeue", "--json", "--states=all", "--jobs=5,6_2"]
    assert commands.squeue_json_argv() == ["squeue", "--json", "--states=all", "--me"]
    assert commands.sacct_json_argv(["5"]) == ["sacct", "--json", "--jobs=5"]
    assert commands.sacct_json_argv(since="2026-12-01T10:00") == ["sacct", "--json", "--starttime=2026-12-01T10:00"]
    for bad in (lambda: commands.squeue_json_argv(["5;rm -rf /"]), lambda: commands.squeue_json_argv([]),
                lambda: commands.sacct_json_argv(since="now; id"), lambda: commands.sacct_json_argv(["-5"])):
        with pytest.raises(InvalidJobSpecError):
            bad()


@pytest.mark.parametrize("series", SERIES)
def test_mem_per_cpu_and_never_started_jobs_read_as_sacct_text_reads_them(series):
    """--mem-per-cpu=30M with 2 CPUs requested 60M; a job cancelled while held ran on no node."""
    extra = {key: str(value) for key, value in payload(series, "ids_extra.json")["jobs"].items()}
    cli = cli_json.parse_sacct_json(text(series, "sacct_extra.json"))
    txt = commands.parse_sacct(text(series, "sacct_extra.txt"))
    assert cli == rest_api.parse_db_job(payload(series, "rest_db_extra.json"))
    fields = ("state", "exit_code", "requested_memory_bytes", "node_list", "tag")
    for job_id in extra.values():
        assert {f: cli[job_id][f] for f in fields} == {f: txt[job_id][f] for f in fields}
    assert cli[extra["percpu"]]["requested_memory_bytes"] == 60 * 1024**2
    assert cli[extra["never"]]["node_list"] is None and cli[extra["never"]]["state"] == "CANCELLED"
