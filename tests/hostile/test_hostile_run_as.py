"""Hostile input in the run-as fields: a task's ``run_as``, its owner, and the ``[hpcai] run_as_*`` options.

Whatever the text, the outcome is an allowlisted user, ``None`` where the feature is off, or a
:class:`RunAsRefusedError`/:class:`ConfigurationError` with a short message; nothing reaches
sudo, a connection id or a path unvalidated.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_hpcai.exceptions import ConfigurationError
from airflow_provider_hpcai.identity.mapping import (
    IdentitySettings,
    RunAsRefusedError,
    check_key,
    format_for_user,
    resolve,
)
from airflow_provider_hpcai.identity.runners import sudo_argv
from tests.hostile.payloads import HOSTILE, SENTINEL, hostile_names, hostile_text

ALLOWED = frozenset({"hpc-alice", "hpc-bob"})
SETTINGS = IdentitySettings.parse(users="hpc-alice,hpc-bob", mapping="alice=hpc-alice")

NAMED = [
    "root", "ROOT", " root", "root ", "root\n", "alice;rm -rf /", "alice && id", "$(id)", "`id`", f"$(touch {SENTINEL})",
    "../", "..", "../../etc/passwd", "/etc/passwd", "~root", "-u", "-uroot", "--user=root", "#0", "#-1", "%admin",
    "+wheel", "ALL", "alice bob", "alice\tbob", "alice\nroot", "alice\x00root", "hpc-alice\n", "hpc-alice ",
    "hpc-alice\r", "hpc\u2010alice", "һpc-alice", "ｈｐｃ-alice", "hpc-alice\u200b", "\u202ehpc-alice",
    "hpc-alice=root", "hpc-alice,root", "{user}", "x" * 33, "x" * 100_000, "", "\ud800",
]


def _outcome(owner, run_as):
    try:
        return resolve(owner, run_as, SETTINGS, uid_of=lambda name: None)
    except RunAsRefusedError as err:
        assert len(str(err)) < 700, "a long hostile value must not flood the task log"
        return err


@pytest.mark.parametrize("value", NAMED, ids=lambda v: repr(v)[:30])
def test_hostile_run_as_is_refused_or_an_allowlisted_user(value):
    as_run_as, as_owner = _outcome("alice", value), _outcome(value, None)
    for outcome in (as_run_as, as_owner):
        assert isinstance(outcome, RunAsRefusedError) or outcome in ALLOWED
    # None of these names is an allowlisted user or a mapping key as written.
    assert isinstance(as_run_as, RunAsRefusedError) or value == ""
    assert isinstance(as_owner, RunAsRefusedError)


@pytest.mark.parametrize("value", NAMED, ids=lambda v: repr(v)[:30])
def test_hostile_names_never_reach_sudo(value):
    with pytest.raises(RunAsRefusedError):
        sudo_argv(value, ["/usr/bin/id"])


@given(value=st.one_of(hostile_names(), hostile_text()))
@HOSTILE
def test_any_run_as_or_owner_resolves_only_to_the_allowlist(value):
    for outcome in (_outcome("alice", value), _outcome(value, None), _outcome(value, value)):
        assert isinstance(outcome, RunAsRefusedError) or outcome in ALLOWED
    assert not SENTINEL.exists()


@given(value=hostile_names())
@HOSTILE
def test_a_hostile_run_as_fails_at_dag_parse_time_or_is_a_plain_key(value):
    try:
        key = check_key(value)
    except RunAsRefusedError:
        return
    assert key == value and key != "root" and 0 < len(key) <= 128
    assert not any(c.isspace() or c in ",=" for c in key)


@pytest.mark.parametrize("users", ["root", "hpc-alice,root", "alice;id", "../x", "-r", "#0", "a b", "ｒｏｏｔ",
                                   "x" * 40])
def test_hostile_allowlists_are_configuration_errors(users):
    with pytest.raises(ConfigurationError):
        IdentitySettings.parse(users=users)


@pytest.mark.parametrize("mapping", ["alice=root", "alice=hpc-alice;id", "=hpc-alice", "a b=hpc-alice",
                                     "alice==hpc-alice", "alice=../hpc-alice", "alice=hpc-alice\nbob=root"])
def test_hostile_mappings_are_configuration_errors(mapping):
    with pytest.raises(ConfigurationError):
        IdentitySettings.parse(users="hpc-alice", mapping=mapping)


@pytest.mark.parametrize("pattern", ["ssh_{user}{0}", "ssh_{user.__class__}", "ssh_{}", "ssh_{user}_{x}",
                                     "ssh_static"])
def test_connection_id_patterns_replace_only_the_user(pattern):
    with pytest.raises(ConfigurationError):
        format_for_user(pattern, "hpc-alice", "run_as_ssh_conn_id")


def test_the_operator_refuses_a_hostile_run_as_when_the_dag_is_parsed():
    from airflow.sdk import DAG

    from airflow_provider_hpcai.operators.slurm import SlurmJobOperator

    with DAG(dag_id="hostile_run_as", schedule=None):
        for value in ("root", "alice bob", "a,b", "x" * 200, 42):
            with pytest.raises(RunAsRefusedError):
                SlurmJobOperator(task_id=f"t{abs(hash(str(value)))}", script="true", run_as=value)
