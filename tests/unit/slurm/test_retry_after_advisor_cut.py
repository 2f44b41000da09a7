"""A try killed at the advisor's cut is retried with the user's own request, not an escalation of the cut."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.resources import Resources
from tests.fakes.slurm import FakeSlurmTransport
from tests.unit.slurm.test_slurm_operator import (
    GIB,
    DictStore,
    FakeTI,
    context,
    defer,
    fire,
    make_op,
    wire_fake_cluster,
)

ASKED = Resources(memory="4G", time_limit="02:00:00")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, sleeps) -> FakeSlurmTransport:
    return wire_fake_cluster(monkeypatch)


def _cut_op(cut: Resources):
    """The operator as ``enforce`` leaves it: the decision records the request, ``job_resources`` is the cut."""
    op = make_op(job_resources=ASKED)
    op.hpcai_decision = {"mode": "enforce", "requested": ASKED.to_dict(), "applied": cut.to_dict()}
    op.job_resources = cut
    return op


@pytest.mark.parametrize("still_cut", [True, False], ids=["guard-still-cuts", "guard-holds-back"])
def test_a_timeout_at_the_advisors_cut_retries_with_the_users_limit(cluster, still_cut: bool) -> None:
    cluster.script_outcomes("timeout", "timeout", "completed")
    store = DictStore()
    cut = ASKED.replace(time_limit=1800)
    first = _cut_op(cut)
    ctx = context(store)
    with pytest.raises(exc.SlurmJobTimeout):
        first.execute_complete(ctx, fire(defer(first, ctx)))
    # The retry is parsed again: whether the guard still cuts or holds the series back, the request runs.
    retried = _cut_op(cut) if still_cut else make_op(job_resources=ASKED)
    retry_ctx = context(store, FakeTI(try_number=2))
    trigger = defer(retried, retry_ctx)
    assert cluster.submissions == 2
    assert cluster.job(trigger.job_id).spec.resources.time_limit_seconds == 7200
    # That try timed out at the user's own limit: the next one escalates as usual.
    with pytest.raises(exc.SlurmJobTimeout):
        retried.execute_complete(retry_ctx, fire(trigger))
    third = defer(make_op(job_resources=ASKED), context(store, FakeTI(try_number=3)))
    assert cluster.job(third.job_id).spec.resources.time_limit_seconds == int(7200 * 1.5)


def test_an_oom_at_the_advisors_memory_retries_with_the_users_memory(cluster) -> None:
    cluster.script_outcomes("oom", "completed")
    store = DictStore()
    first = _cut_op(ASKED.replace(memory="1G"))
    ctx = context(store)
    with pytest.raises(exc.SlurmOutOfMemory):
        first.execute_complete(ctx, fire(defer(first, ctx)))
    trigger = defer(_cut_op(ASKED.replace(memory="1G")), context(store, FakeTI(try_number=2)))
    assert cluster.job(trigger.job_id).spec.resources.memory_bytes == 4 * GIB


def test_a_timeout_of_the_users_own_request_still_escalates(cluster) -> None:
    cluster.script_outcomes("timeout", "completed")
    store = DictStore()
    op = make_op(job_resources=ASKED)
    ctx = context(store)
    with pytest.raises(exc.SlurmJobTimeout):
        op.execute_complete(ctx, fire(defer(op, ctx)))
    trigger = defer(make_op(job_resources=ASKED), context(store, FakeTI(try_number=2)))
    assert cluster.job(trigger.job_id).spec.resources.time_limit_seconds == int(7200 * 1.5)

