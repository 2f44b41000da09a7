"""Through Airflow's policy entry point: the guard's opt-in [hpcai] keys (extra candidates, minimum saving)."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.advisor import live_guard
from airflow_provider_hpcai.advisor.guard import GuardSpec
from airflow_provider_hpcai.advisor.settings import read_settings
from airflow_provider_hpcai.exceptions import ConfigurationError
from airflow_provider_hpcai.policy import airflow_policy, live
from airflow_provider_hpcai.resources import Resources

from .conftest import submit_and_finish
from .test_policy_airflow import SimOperator

REQ = Resources(ntasks=4, time_limit=7200, memory="16G")
WIDE = Resources(ntasks=64, time_limit=7200, memory="16G")
RUN = 600.0  # the synthetic heat job's model predicts about 290 s: its own limit would be killed


def _parse(resources: Resources = REQ) -> SimOperator:
    live_guard.clear_views()
    live.clear_recent()
    task = SimOperator(task_id="heat", job_resources=resources)
    airflow_policy.task_policy(task)
    return task


def _guard_of(task: SimOperator) -> dict:
    return task.hpcai_decision["guard"]


@pytest.mark.parametrize("opt_in", [False, True])
def test_1_1_x_max20_is_chosen_once_its_shadow_net_is_ahead(site, opt_in):
    # The champion's history of the series says ~523 s: 1.1 x that (575 s) would have killed the
    # first 600 s run, 1.2 x (627 s) fitted it. 1.1 x max20 saves 60 s more per fitting job, so its
    # shadow net overtakes the 1.2 x one once that kill leaves the net's 10 outcomes.
    home = site(**({"advisor_guard_extra_candidates": "user_max20_x1.1, user_procs_max20"} if opt_in else {}))
    chosen, limits = [], []
    for _ in range(13):
        task = _parse()
        chosen.append(_guard_of(task)["chosen"])
        limits.append(task.job_resources.time_limit_seconds)
        submit_and_finish(task, home, RUN)
    assert chosen[:11] == [-1] + [1] * 10 and 1.2 * RUN <= limits[1] < 7200  # no history, then 1.2 x max20
    verdict = _guard_of(_parse())
    if opt_in:
        assert chosen[11:] == [2, 2] and verdict["chosen"] == 2
        assert verdict["candidates"][2:] == pytest.approx([1.1 * RUN, 1.2 * RUN])  # same cores: all at 4
        assert verdict["limit"] == pytest.approx(1.1 * RUN) and 1.1 * RUN <= limits[-1] < 1.2 * RUN
    else:
        assert chosen[11:] == [1, 1] and len(verdict["candidates"]) == 2 and limits[-1] >= 1.2 * RUN


def test_user_procs_max20_reads_only_the_runs_at_the_same_cores(site):
    home = site(advisor_guard_extra_candidates="user_procs_max20")
    submit_and_finish(_parse(), home, 500.0)
    submit_and_finish(_parse(), home, 300.0)  # newer, shorter: the max of the 4-core runs stays 500 s
    assert _guard_of(_parse())["candidates"][2] == pytest.approx(1.2 * 500.0)
    assert _guard_of(_parse(WIDE))["candidates"][2] is None  # no run at 64 cores yet: no candidate


@pytest.mark.parametrize(("cores", "held"), [("1000", "small_saving"), ("100", None)])
def test_min_saving_share_holds_a_small_saving_and_cuts_a_wide_job(site, cores, held):
    # 1 % of a machine-hour: 36 000 core-seconds at 1000 cores; a 4-core cut of ~6 800 s saves ~27 000
    home = site(advisor_guard_min_saving_share="0.01", advisor_machine_cores=cores)
    submit_and_finish(_parse(), home, 300.0)
    small = _parse()
    assert _guard_of(small)["held"] == held
    assert (small.job_resources == REQ) is (held is not None)
    wide = _parse(WIDE)  # 64 cores save 16 x as much: cut either way
    assert _guard_of(wide)["held"] is None and wide.job_resources.time_limit_seconds < 7200


def test_the_new_keys_reach_the_guard_spec(site):
    site(advisor_guard_extra_candidates="user_max20_x1.1,user_max20_x1.5,user_procs_max20",
         advisor_guard_min_saving_share="0.01", advisor_machine_cores="4096", advisor_guard_probation="1")
    s = read_settings()
    assert s.require_guard() == GuardSpec(extra_candidates=("user_max20_x1.1", "user_max20_x1.5", "user_procs_max20"),
                                          min_saving_share=0.01, probation_clear=1)
    assert s.machine_cores == 4096 and live_guard._guard_of(s.home).min_saving == pytest.approx(0.01 * 4096 * 3600)
    site()
    assert read_settings().require_guard() == GuardSpec() and read_settings().machine_cores is None


@pytest.mark.parametrize(("keys", "said"), [
    ({"advisor_guard_extra_candidates": "user_request_max20"},
     [("[hpcai] advisor_guard_extra_candidates (AIRFLOW__HPCAI__ADVISOR_GUARD_EXTRA_CANDIDATES) names "
       "user_request_max20, which the live guard cannot compute"),
      "user_max20_x1.1, user_max20_x1.5, user_procs_max20"]),
    ({"advisor_guard_extra_candidates": "user_max20_x1.1,user_max20_x1.1"}, ["more than once"]),
    ({"advisor_guard_min_saving_share": "0.01"},
     ["[hpcai] advisor_guard_min_saving_share (AIRFLOW__HPCAI__ADVISOR_GUARD_MIN_SAVING_SHARE)",
      "[hpcai] advisor_machine_cores (AIRFLOW__HPCAI__ADVISOR_MACHINE_CORES)"]),
    ({"advisor_guard_min_saving_share": "1", "advisor_machine_cores": "64"}, ["1 excluded", "'1'"]),
    ({"advisor_machine_cores": "-4"}, ["advisor_machine_cores", "1 or more", "'-4'"]),
    ({"advisor_machine_cores": "many"}, ["advisor_machine_cores", "'many'"]),
])
def test_a_bad_value_keeps_every_request_and_says_what_is_allowed(site, keys, said):
    site(**keys)
    s = read_settings()
    assert s.guard is None and s.mode == "enforce"
    with pytest.raises(ConfigurationError) as raised:
        s.require_guard()
    for part in said:
        assert part in str(raised.value)
    task = _parse()
    assert task.job_resources == REQ and getattr(task, "hpcai_decision", None) is None
