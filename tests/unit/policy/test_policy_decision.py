from __future__ import annotations

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.policy import Bounds, Ceilings, EscalationExhaustedError, advise, escalate
from airflow_provider_hpcai.resources import Resources

KEY = {"dag_id": "d", "task_id": "t", "owner": "o"}
REQ = Resources(ntasks=2, memory="8G", time_limit="02:00:00", partition="batch")


class FixedModel:
    def __init__(self, time_limit=None, memory=None):
        self.out = {"time_limit": time_limit, "memory": memory, "version": "m/3",
                    "reasons": {"time_limit": "q0.93 + margin"}}

    def predict(self, key, requested):
        return self.out


class BrokenModel:
    def predict(self, key, requested):
        raise ZeroDivisionError("boom")


def test_off_and_missing_model_keep_the_request():
    assert advise(KEY, REQ, FixedModel(600), mode="off").applied == REQ
    decision = advise(KEY, REQ, None, mode="enforce")
    assert decision.applied == REQ and "no model" in decision.reason


def test_advise_records_but_does_not_change():
    decision = advise(KEY, REQ, FixedModel(1800, 2 * 1024**3), mode="advise")
    assert decision.applied == REQ and decision.predicted == {"time_limit": 1800, "memory": 2 * 1024**3}
    assert decision.to_dict()["model_version"] == "m/3" and not decision.changed


def test_enforce_applies_within_floor_request_and_partition():
    decision = advise(KEY, REQ, FixedModel(1800, 2 * 1024**3), mode="enforce")
    assert decision.applied.time_limit_seconds == 1800 and decision.applied.memory_bytes == 2 * 1024**3
    low = advise(KEY, REQ, FixedModel(5, 1024), mode="enforce")
    assert low.applied.time_limit_seconds == 60 and low.applied.memory_bytes == 256 * 1024**2  # floors
    high = advise(KEY, REQ, FixedModel(99999, 64 * 1024**3), mode="enforce")
    assert high.applied == REQ  # never above the user's request by default
    bounds = Bounds(allow_raise=True, partition_limits={"batch": {"max_time_s": 10800}}, max_memory_bytes=16 * 1024**3)
    raised = advise(KEY, REQ, FixedModel(99999, 64 * 1024**3), mode="enforce", bounds=bounds)
    assert raised.applied.time_limit_seconds == 10800 and raised.applied.memory_bytes == 16 * 1024**3


def test_estimate_mode_sets_time_min_to_the_mean_of_the_last_two_runs():
    # newest first; only the last two count; no model needed (the model is ignored in this mode)
    decision = advise(KEY, REQ, FixedModel(99, 1024), mode="estimate", time_min_soft=True, recent_runs=[1800, 1200, 9000])
    assert decision.applied.time_limit_seconds == 7200 and decision.applied.time_min_seconds == 1500
    assert decision.applied.memory_bytes == 8 * 1024**3 and decision.predicted == {"time_min": 1500}
    assert advise(KEY, REQ, None, mode="estimate", time_min_soft=True, recent_runs=[10, 20]).applied.time_min_seconds == 60  # floor
    over = advise(KEY, REQ, None, mode="estimate", time_min_soft=True, recent_runs=[9000, 9000])
    assert over.applied.time_min_seconds == 7200  # never above the request
    one = advise(KEY, REQ, None, mode="estimate", time_min_soft=True, recent_runs=[900])
    assert one.applied.time_min_seconds == 900
    none = advise(KEY, REQ, None, mode="estimate", time_min_soft=True, recent_runs=[])
    assert none.applied == REQ and "no finished run" in none.reason
    hard = advise(KEY, REQ, None, mode="estimate", recent_runs=[1800, 1200])  # Slurm's time_min is a hard limit
    assert hard.applied == REQ and hard.predicted == {"time_min": 1500} and "time_min_as_soft_limit" in hard.reason


def test_a_guard_verdict_replaces_the_models_time_limit():
    verdict = {"limit": 2400.0, "held": None, "chosen": 1, "estimate": 900.0, "series": "task:d.t"}
    decision = advise(KEY, REQ, FixedModel(1800, 2 * 1024**3), mode="enforce", guard=verdict)
    # By default the estimate is recorded, not applied: Slurm may lower a limit towards time_min.
    assert decision.applied.time_limit_seconds == 2400 and decision.applied.time_min_seconds is None
    assert decision.predicted["time_min"] == 900
    planned = advise(KEY, REQ, FixedModel(1800, 2 * 1024**3), mode="enforce", guard=verdict, plan_with_estimate=True, time_min_soft=True)
    assert planned.applied.time_limit_seconds == 2400 and planned.applied.time_min_seconds == 900
    assert decision.to_dict()["guard"]["chosen"] == 1 and "max-of-20" in decision.reason
    bold = advise(KEY, REQ, FixedModel(1800), mode="enforce", guard={**verdict, "estimate": 5000.0},
                  plan_with_estimate=True, time_min_soft=True)
    assert bold.applied.time_min_seconds == 2400  # never above the limit
    held = advise(KEY, REQ, FixedModel(1800, 2 * 1024**3), mode="enforce",
                  guard={"limit": None, "held": "probation", "estimate": 900.0}, plan_with_estimate=True, time_min_soft=True)
    # A held job keeps its limit and still plans with its estimate, as the evaluation's enforce replay does.
    assert held.applied.time_limit_seconds == 7200 and held.applied.time_min_seconds == 900
    assert held.applied.memory_bytes == 2 * 1024**3 and "probation" in held.reason  # memory is not guarded
    only_held = advise(KEY, REQ, FixedModel(None, None), mode="enforce",
                       guard={"limit": None, "held": "probation", "estimate": 900.0}, plan_with_estimate=True,
                       time_min_soft=True)
    assert only_held.applied == REQ.replace(time_min=900) and "q0.3 run-time estimate" in only_held.reason
    hard = advise(KEY, REQ, FixedModel(None, None), mode="enforce",
                  guard={"limit": None, "held": "probation", "estimate": 900.0}, plan_with_estimate=True)
    assert hard.applied == REQ and "time_min_as_soft_limit" in hard.reason  # Slurm would kill at a hard time_min
    shadow = advise(KEY, REQ, FixedModel(1800), mode="advise", guard=verdict)
    assert shadow.applied == REQ and shadow.predicted["time_limit"] == 2400


def test_broken_model_and_unknown_mode_never_raise():
    decision = advise(KEY, REQ, BrokenModel(), mode="enforce")
    assert decision.applied == REQ and "ZeroDivisionError" in decision.reason
    odd = advise(KEY, REQ, FixedModel(1800), mode="yolo")
    assert odd.mode == "advise" and odd.applied == REQ and "unknown advisor mode" in odd.reason


def test_escalation_grows_and_stops_at_the_ceiling():
    ceilings = Ceilings(max_memory_bytes=32 * 1024**3, max_time_s=5 * 3600)
    assert escalate(REQ, "oom", 1, ceilings).memory_bytes == 16 * 1024**3
    assert escalate(REQ, "oom", 3, ceilings).memory_bytes == 32 * 1024**3  # 64G capped
    assert escalate(REQ, "oom", 1, ceilings, observed_peak_bytes=12 * 1024**3).memory_bytes == 24 * 1024**3
    assert escalate(REQ, "timeout", 1, ceilings).time_limit_seconds == 10800
    assert escalate(REQ, "timeout", 2, ceilings).time_limit_seconds == 16200
    assert escalate(REQ, "timeout", 3, ceilings).time_limit_seconds == 5 * 3600  # 24300 capped
    assert escalate(Resources(), "oom", 1).memory_bytes == 8 * 1024**3  # from the default 4G
    with pytest.raises(EscalationExhaustedError, match="ceiling"):
        escalate(REQ.replace(memory="32G"), "oom", 1, ceilings)
    with pytest.raises(InvalidJobSpecError, match="attempt"):
        escalate(REQ, "oom", 0)
    with pytest.raises(InvalidJobSpecError, match="failure"):
        escalate(REQ, "segfault", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobSpecError, match="above 1"):
        Ceilings(memory_factor=1.0)
