"""``hpcai advisor status`` shows the guard: its settings in force and what its state file holds."""

from __future__ import annotations

import math
import os

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.cli import main, status_lines
from airflow_provider_hpcai.advisor.guard_status import describe
from airflow_provider_hpcai.advisor.settings import GUARD_KEYS, read_settings, reset_settings

from .test_live_guard import RAW, REQUEST, Clock, _guard, _warm, run_job

SITE = {"ADVISOR_KILL_BUDGET": "0.1", "ADVISOR_GUARD_BRAKE_WINDOW": "20", "ADVISOR_GUARD_MAX_IN_FLIGHT": "1"}


@pytest.fixture()
def site(monkeypatch):
    """The site's [hpcai]: budget 10 % over 20 submissions (the brake holds at 1.7 kills), cap 1."""
    for key in GUARD_KEYS:
        monkeypatch.delenv(f"AIRFLOW__HPCAI__{key.upper()}", raising=False)
    for key, value in SITE.items():
        monkeypatch.setenv(f"AIRFLOW__HPCAI__{key}", value)
    reset_settings()
    yield read_settings().require_guard()
    reset_settings()


def _status(home, capsys) -> tuple[int, str]:
    code = main(["advisor", "status", "--home", str(home)])
    return code, capsys.readouterr().out


def test_status_after_kills_shows_the_budget_the_brake_probation_and_the_cap(tmp_path, site, capsys):
    clock = Clock()
    guard = _guard(tmp_path, clock, site)
    for series in ("task:d.x", "task:d.y", "task:d.healthy", "task:d.w"):
        _warm(guard, series, clock, n=1)
    verdict = guard.judge("task:d.healthy", RAW, math.nan, REQUEST, 1.0)  # advised, still running
    ticket, limit, _ = guard.admit(verdict, verdict["limit"])
    assert limit is not None
    guard.bind(ticket, "4242")
    fresh = guard.judge("task:d.fresh", RAW, math.nan, REQUEST, 1.0)  # no history: keeps its request
    guard.admit(fresh, None)
    run_job(guard, "task:d.x", 1800.0, clock)  # killed: one kill, under the brake's 1.7

    code, out = _status(tmp_path, capsys)
    assert code == 0
    assert "kill budget 10 % ([hpcai] advisor_kill_budget)" in out and "over 20 submissions" in out
    assert "kills: 1 in the last 20 submissions (budget 10 %: 2 kills); brake not holding (it holds at 1.7 kills)" in out

    run_job(guard, "task:d.y", 1800.0, clock)  # a second kill: the brake holds
    assert guard.judge("task:d.w", RAW, math.nan, REQUEST, 1.0)["held"] == "brake"  # what the status must say
    code, out = _status(tmp_path, capsys)
    lines = out.splitlines()
    assert f"guard state: {tmp_path / live_guard.STATE_FILE}" in lines
    assert "  submissions admitted: 8; series with a known outcome: 4" in lines
    assert "  jobs pending: 2 (1 advised, 1 kept their request)" in lines
    assert ("  kills: 2 in the last 20 submissions (budget 10 %: 2 kills); brake HOLDING (at 1.7 kills): "
            "no job is advised until older kills leave the window") in lines
    assert ("  on probation: 2 series, keeping their requests: task:d.x (0 of 3 fitted since its kill), "
            "task:d.y (0 of 3 fitted since its kill)") in lines
    assert "  at the in-flight cap: 1 series: task:d.healthy (1 of 1 in flight)" in lines


def test_status_with_the_shipped_settings_and_no_state_creates_nothing(tmp_path):
    home = str(tmp_path / "advisor")
    text = "\n".join(status_lines(home, "enforce"))
    assert "kill budget 5 %" in text and "in-flight cap 5 advised jobs per series" in text
    assert "brake at 85 % of the budget over 1000 submissions" in text
    assert f"guard state: none yet ({os.path.join(home, live_guard.STATE_FILE)})" in text
    assert not os.path.exists(home)


def test_a_damaged_state_file_is_one_line_not_a_traceback(tmp_path, site):
    (tmp_path / live_guard.STATE_FILE).write_text('{"format": "hpcai-advisor-guard/1", "seq": ')  # torn write
    lines = describe(str(tmp_path), site)
    assert len(lines) == 2 and lines[1].startswith("guard state: unreadable (")
    assert "next submission rewrites it" in lines[1]
    (tmp_path / live_guard.STATE_FILE).write_text('{"format": "hpcai-advisor-guard/1", "seq": 3, "global_margin": 0, '
                                                  '"margins": {}, "nets": {}, "probation": {}, "in_flight": {}, '
                                                  '"kills_seen": [], "pending": {"1.2": 7}}')  # a hand edit
    lines = describe(str(tmp_path), site)
    assert len(lines) == 2 and "unreadable" in lines[1]


def test_a_bad_guard_key_is_said_by_status_which_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__HPCAI__ADVISOR_GUARD_BRAKE", "85%")
    reset_settings()
    try:
        code, out = _status(tmp_path, capsys)
    finally:
        reset_settings()
    assert code == 1
    assert ("guard settings: invalid: [hpcai] advisor_guard_brake (AIRFLOW__HPCAI__ADVISOR_GUARD_BRAKE) must be a "
            "number from 0 to 1") in out
    assert "champion: none yet" in out  # the rest of the status is still there
