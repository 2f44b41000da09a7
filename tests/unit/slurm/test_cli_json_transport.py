"""The CLI transport picks ``--json`` or text by the Slurm release, replaying real output.

:class:`ReplayRunner` answers each argv with what that command printed on the recorded cluster
(``tests/fixtures/slurm_cli_json/<series>/``), so the transport is tested at its real seam.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from airflow_provider_hpcai.exceptions import TransportError
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.slurm import commands, rest_api
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, CommandResult, CommandRunner

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm_cli_json"
RELEASES = {"22.05": "slurm-wlm 22.05.8", "24.11": "slurm 24.11.5", "26.05": "slurm 26.05.3"}


class ReplayRunner(CommandRunner):
    """Answers squeue/sacct from one series' recorded output; records every argv."""

    def __init__(self, series: str, version: str | None = None) -> None:
        self.folder = FIXTURES / series
        self.version = RELEASES[series] if version is None else version
        self.argvs: list[list[str]] = []
        self.ids = {k: str(v) for k, v in json.loads((self.folder / "ids.json").read_text())["jobs"].items()}

    def answer(self, argv: list[str]) -> str:
        if argv[1:] == ["--version"]:
            return self.version + "\n"
        element = self.ids["array"] + "_1"
        if argv[0] == "squeue" and "--json" in argv:
            return self._read("squeue_me.json" if "--me" in argv else
                              "squeue_element.json" if f"--jobs={element}" in argv else "squeue.json")
        if argv[0] == "sacct" and "--json" in argv:
            return self._read("sacct_element.json" if f"--jobs={element}" in argv else "sacct.json")
        if argv[0] == "squeue":
            return self._read("squeue.txt")
        if argv[0] == "sacct":
            return self._read("sacct.txt")
        raise AssertionError(f"unexpected command {argv}")

    def _read(self, name: str) -> str:
        return (self.folder / name).read_text()

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60) -> CommandResult:
        self.argvs.append(list(argv))
        return CommandResult(tuple(argv), 0, self.answer(list(argv)), "")

    def read_file(self, path: str, offset: int, limit: int) -> bytes:
        return b""

    def home(self) -> str:
        return "/home/hpcai"


def _rest(series: str, name: str) -> dict:
    return json.loads((FIXTURES / series / name).read_text())


@pytest.mark.parametrize("series", ["24.11", "26.05"])
def test_a_modern_cli_reads_json_and_gives_what_rest_gives(series):
    runner = ReplayRunner(series)
    transport = CliTransport(runner)
    mine = runner.ids
    plain = [job_id for key, job_id in mine.items() if key != "array"]
    assert transport.my_jobs() == rest_api.parse_jobs(_rest(series, "rest_jobs.json"))
    rest_db = rest_api.parse_db_job(_rest(series, "rest_db.json"))
    accounting = transport.accounting(plain)  # the replay answers with all six jobs, whatever was asked
    assert {j: accounting[j] for j in plain} == {j: rest_db[j] for j in plain}
    element = mine["array"] + "_1"
    assert transport.accounting([element]) == rest_api.parse_db_job(_rest(series, "rest_db_element.json"), elements=True)
    since = transport.accounting_since("2026-12-06T00:00:00")
    assert since[mine["array"]]["state"] == "FAILED" and len(since[mine["array"]]["array_tasks"]) == 3
    queries = [a for a in runner.argvs if "--version" not in a]
    assert all("--json" in a for a in queries) and not any("--format" in " ".join(a) for a in queries)
    assert runner.argvs.count(["squeue", "--version"]) == 1  # asked once
    assert ["sacct", "--json", "--starttime=2026-12-06T00:00:00"] in runner.argvs


@pytest.mark.parametrize("series", ["24.11", "26.05"])
def test_the_poll_stays_on_the_light_state_query(series):
    """statuses(): squeue --only-job-state (text) as before; only full records moved to JSON."""
    runner = ReplayRunner(series)
    CliTransport(runner).statuses([runner.ids["ok"]])
    (query,) = [a for a in runner.argvs if "--version" not in a]
    assert "--only-job-state" in query and "--json" not in query


def test_22_05_keeps_the_text_parsers():
    runner = ReplayRunner("22.05")
    transport = CliTransport(runner)
    mine = runner.ids
    jobs = transport.my_jobs()
    records = transport.accounting(list(mine.values()))
    assert not any("--json" in a for a in runner.argvs)
    assert commands.squeue_mine_argv() in runner.argvs
    assert records == commands.parse_sacct((FIXTURES / "22.05" / "sacct.txt").read_text())
    # (the time-limited job's exit code is left out: 22.05.8 recorded its batch step as FAILED 15:0, no signal)
    assert {key: (records[j]["state"], records[j]["exit_code"]) for key, j in mine.items() if key != "timeout"} == {
        "ok": ("COMPLETED", 0), "fail": ("FAILED", 3), "cancel": ("CANCELLED", 143), "oom": ("FAILED", 137),
        "array": ("FAILED", 1)}
    assert records[mine["timeout"]]["state"] == "TIMEOUT"
    assert jobs[mine["fail"]].tag == "cj-fail"


def test_an_unreadable_version_means_text_and_is_asked_again():
    runner = ReplayRunner("24.11", version="")
    transport = CliTransport(runner)
    transport.accounting([runner.ids["ok"]])
    runner.version = "slurm 24.11.5"
    transport.accounting([runner.ids["ok"]])
    sacct = [a for a in runner.argvs if a[0] == "sacct"]
    assert "--parsable2" in sacct[0] and "--json" in sacct[1]
    assert runner.argvs.count(["squeue", "--version"]) == 2


def test_the_hook_finds_a_job_by_tag_through_squeue_json():
    runner = ReplayRunner("26.05")
    hook = SlurmHook(transport=CliTransport(runner))
    (found,) = hook.find_jobs_by_tag("cj-timeout")
    assert (found.job_id, found.state, found.exit_code) == (runner.ids["timeout"], "TIMEOUT", 143)


def test_json_that_is_not_json_names_the_command():
    runner = ReplayRunner("24.11")
    runner.answer = lambda argv: "slurm 24.11.5\n" if "--version" in argv else "garbage"  # type: ignore[method-assign]
    with pytest.raises(TransportError, match="printed no JSON") as info:
        CliTransport(runner).accounting(["5"])
    assert info.value.command == "sacct --json --jobs=5"
