"""Launchers are pure argv builders: what a job's script will run to start its ranks."""

from __future__ import annotations

import os
import sys

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.launchers import (
    LAUNCHERS,
    MpiexecLauncher,
    MpirunLauncher,
    NoLauncher,
    SrunLauncher,
    default_mpiexec,
    get_launcher,
)

PROG = ["python", "-m", "mpi4py", "-m", "simulation_kernels.seismic", "--config", "c.json", "--output", "out dir"]


def test_no_launcher_runs_the_program_as_is_for_one_rank():
    assert NoLauncher().command(PROG, 1) == PROG


def test_no_launcher_refuses_several_ranks_and_names_the_alternatives():
    with pytest.raises(InvalidJobSpecError, match="mpiexec.*mpirun.*srun"):
        NoLauncher().command(PROG, 2)


def test_mpiexec_defaults_to_the_one_next_to_this_interpreter():
    cmd = MpiexecLauncher().command(PROG, 4)
    assert cmd == [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", "4", *PROG]
    assert default_mpiexec("/opt/env/bin/python") == "/opt/env/bin/mpiexec"


def test_mpiexec_needs_no_root_or_oversubscribe_flags():
    cmd = MpiexecLauncher(path="/usr/bin/mpiexec", extra_args=("-bind-to", "core")).command(PROG, 2)
    assert cmd == ["/usr/bin/mpiexec", "-bind-to", "core", "-n", "2", *PROG]
    assert not any(a.startswith("--allow") or a == "--oversubscribe" for a in cmd)


def test_mpirun_adds_open_mpi_flags_only_when_asked():
    assert MpirunLauncher().command(PROG, 3) == ["mpirun", "-np", "3", *PROG]
    asked = MpirunLauncher(allow_run_as_root=True, oversubscribe=True).command(PROG, 3)
    assert asked == ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3", *PROG]


def test_srun_starts_the_ranks_inside_the_allocation():
    assert SrunLauncher().command(PROG, 8) == ["srun", "--ntasks=8", *PROG]
    assert SrunLauncher(mpi="pmi2").command(PROG, 2)[:3] == ["srun", "--ntasks=2", "--mpi=pmi2"]


@pytest.mark.parametrize("ranks", [0, -1, True, 2.0, "2"])
def test_rank_counts_must_be_positive_whole_numbers(ranks):
    for launcher in (NoLauncher(), MpiexecLauncher(), MpirunLauncher(), SrunLauncher()):
        with pytest.raises(InvalidJobSpecError, match="ranks"):
            launcher.command(PROG, ranks)


@pytest.mark.parametrize("argv", [[], "python -m x", [1, 2]])
def test_the_program_must_be_a_list_of_strings(argv):
    with pytest.raises(InvalidJobSpecError, match="list of strings"):
        MpiexecLauncher().command(argv, 2)


def test_get_launcher_by_name_with_options():
    assert set(LAUNCHERS) == {"none", "mpiexec", "mpirun", "srun"}
    launcher = get_launcher("mpirun", allow_run_as_root=True, extra_args=["--bind-to", "none"])
    assert launcher.command(["a"], 2) == ["mpirun", "--allow-run-as-root", "--bind-to", "none", "-np", "2", "a"]
    assert isinstance(get_launcher("none"), NoLauncher)


def test_get_launcher_rejects_unknown_names_and_options_clearly():
    with pytest.raises(InvalidJobSpecError, match=r"unknown launcher 'aprun'.*mpiexec"):
        get_launcher("aprun")
    with pytest.raises(InvalidJobSpecError, match=r"takes no option\(s\) \['oversubscribe'\]"):
        get_launcher("mpiexec", oversubscribe=True)
