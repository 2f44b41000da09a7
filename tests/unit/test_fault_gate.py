"""The fault suite's quiet gate tells a run on another Slurm series from one on its own cluster.

Runs against real processes (their ``/proc/<pid>/environ``), not a model of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.faults.cluster import same_cluster, slurm_conf_of

OURS = "/var/lib/hpcai-slurm/etc/slurm.conf"


@pytest.fixture
def spawn() -> Iterator:
    children: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> int:
        clean = {key: value for key, value in os.environ.items()
                 if not key.startswith(("SLURM_", "HPCAI_SLURM_"))}
        child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                                 env={**clean, **env}, stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline() == "up\n"  # exec'd: /proc/<pid>/environ is its own, not ours
        return child.pid

    yield start
    for child in children:
        child.kill()
        child.wait()


def test_the_series_layout_names_each_cluster_conf() -> None:
    assert slurm_conf_of({}) == OURS
    assert slurm_conf_of({"HPCAI_SLURM_VERSION": "22.05"}) == OURS
    assert slurm_conf_of({"HPCAI_SLURM_VERSION": "26.05"}) == "/var/lib/hpcai-slurm-26.05/etc/slurm.conf"
    assert slurm_conf_of({"HPCAI_SLURM_VERSION": "24.11", "HPCAI_SLURM_HOME": "/srv/s"}) == "/srv/s/etc/slurm.conf"
    assert slurm_conf_of({"SLURM_CONF": "/etc/x.conf", "HPCAI_SLURM_VERSION": "24.11"}) == "/etc/x.conf"


def test_a_run_on_another_series_does_not_hold_the_gate(spawn) -> None:
    other = spawn({"SLURM_CONF": "/var/lib/hpcai-slurm-24.11/etc/slurm.conf", "HPCAI_SLURM_VERSION": "24.11"})
    assert not same_cluster(other, OURS)
    assert same_cluster(other, "/var/lib/hpcai-slurm-24.11/etc/slurm.conf")


def test_a_run_on_the_same_cluster_or_with_no_cluster_named_holds_it(spawn) -> None:
    named = spawn({"SLURM_CONF": OURS})
    default = spawn({})  # the suites' conftest falls back to the default (22.05) cluster
    assert same_cluster(named, OURS)
    assert same_cluster(default, OURS)
    assert not same_cluster(default, "/var/lib/hpcai-slurm-26.05/etc/slurm.conf")


def test_a_process_whose_environment_cannot_be_read_counts_as_ours() -> None:
    assert same_cluster(2 ** 22 + 12345, OURS)  # no such process: unreadable, so counted
