"""The sbatch script: hostile values are rejected or quoted, checked by running bash for real."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.script import (
    build_sbatch_script,
    output_paths,
    sbatch_directives,
    user_directives,
)
from airflow_provider_hpcai.spec import JobSpec, make_tag

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is needed to check the quoting")

WORKDIR = "/scratch/hpcai/jobs"


def hostile_values(sentinel: Path) -> dict[str, str]:
    """Environment values that would run ``touch sentinel`` if they reached a shell unquoted."""
    s = str(sentinel)
    return {
        "CMD_SUBST": f"$(touch {s})",
        "BACKTICKS": f"`touch {s}`",
        "SINGLE_QUOTE_BREAK": f"'; touch {s}; '",
        "DOUBLE_QUOTE_BREAK": f'"; touch {s}; "',
        "NEWLINE": f"ok\ntouch {s}\n",
        "SBATCH_LINE": "x\n#SBATCH --mem=1T\n#SBATCH --uid=0",
        "BACKSLASH_QUOTE": f"\\'$(touch {s})",
        "IFS_TRICK": f"${{IFS}}touch${{IFS}}{s}",
        "SEMICOLON": f"a; touch {s}",
        "PIPE_AND": f"a | touch {s} && touch {s}",
        "REDIRECT": f"> {s}",
        "LITERAL_DOLLAR": "$HOME ${PATH} $1 $$",
        "HISTORY": "!! !-1 !$",
        "GLOB": "* ? [a-z]",
        "TRAILING_BACKSLASH": "abc\\",
        "UNICODE": "ünïcødé ✓ \u2028 tab\there",
        "EMPTY": "",
    }


def _spec(**overrides) -> JobSpec:
    fields = {"name": "job-1", "script": "echo hello\n", "resources": Resources(ntasks=2, memory="1G")}
    fields.update(overrides)
    return JobSpec(**fields)


def _directive(line: str) -> tuple[str, str]:
    """``#SBATCH --opt=value`` -> (opt, value as sbatch reads it); a bare flag has the value ``""``."""
    option, _, value = line[len("#SBATCH --"):].partition("=")
    return option, (shlex.split(value)[0] if value else "")


def _sbatch_scan(script: str) -> list[str]:
    """The directives sbatch reads: ``#SBATCH`` lines up to the first command line."""
    found = []
    for line in script.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            found.append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            break
    return found


def test_script_shape_and_directives():
    spec = _spec(tag=make_tag("d", "t", "r"), resources=Resources(
        nodes=2, ntasks=4, cpus_per_task=2, memory="1536M", gpus="a100:2", time_limit="1-00:00:00",
        time_min="01:00:00", partition="gpu", account="proj", qos="high", constraint="a100&ib"),
        array="0-9%2", exclude_nodes="node[1-2]")
    script = build_sbatch_script(spec, WORKDIR)
    assert script.startswith("#!/bin/bash\n") and script.endswith("echo hello\n")
    directives = dict(sbatch_directives(spec, WORKDIR))
    assert directives["mem"] == "1536M" and directives["gres"] == "gpu:a100:2"
    assert directives["time"] == "1-00:00:00" and directives["time-min"] == "01:00:00"
    assert directives["output"] == f"{WORKDIR}/hpcai-%A_%a.out"  # arrays name output per task
    assert directives["comment"] == "hpcai-tag=" + spec.tag
    scanned = dict(_directive(line) for line in _sbatch_scan(script))
    assert scanned == directives  # what sbatch reads is exactly what was asked, unquoted back
    assert "#SBATCH --no-requeue" in script.splitlines()  # Airflow's retries decide, not Slurm's requeue


def test_requeue_is_opt_in():
    assert "#SBATCH --requeue" in build_sbatch_script(_spec(requeue=True), WORKDIR).splitlines()


def test_output_paths():
    assert output_paths("/w/") == ("/w/hpcai-%j.out", "/w/hpcai-%j.err")


def test_user_sbatch_lines_come_after_the_directive_terminator():
    user = "#SBATCH --mem=999G\n#SBATCH --partition=admin\n  #SBATCH --uid=0\nsrun hostname\n"
    script = build_sbatch_script(_spec(script=user), WORKDIR)
    scanned = _sbatch_scan(script)
    assert scanned and not any("999G" in d or "admin" in d or "uid" in d for d in scanned)
    lines = script.splitlines()
    end = lines.index(": hpcai-directives-end")
    assert all(line.startswith("#SBATCH") for line in lines[1:end])
    assert lines.index("#SBATCH --mem=999G") > end
    assert user_directives(user) == ["#SBATCH --mem=999G", "#SBATCH --partition=admin", "#SBATCH --uid=0"]


def test_hostile_environment_values_are_quoted_not_executed(tmp_path: Path):
    sentinel = tmp_path / "pwned"
    env = hostile_values(sentinel)
    script = build_sbatch_script(_spec(environment=env), WORKDIR)
    exports = "\n".join(line for line in script.splitlines() if line.startswith("export "))
    # Multi-line values span several lines: take the export block as a whole.
    block = script[script.index("export "): script.index('echo "[hpcai]')]
    assert exports and block.startswith(exports.splitlines()[0])
    syntax = subprocess.run([BASH, "-n"], input=script, text=True, capture_output=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    names = sorted(env)
    dump = block + "\n" + "printf '%s\\0' " + " ".join(f'"${name}"' for name in names) + "\n"
    run = subprocess.run([BASH, "--norc", "--noprofile"], input=dump.encode(), capture_output=True, check=False,
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert not sentinel.exists(), "an environment value was executed by the shell"
    values = run.stdout.decode().split("\0")[:-1]
    assert dict(zip(names, values, strict=True)) == env  # every value arrives byte for byte


def test_whole_script_runs_and_the_job_sees_the_exact_values(tmp_path: Path):
    sentinel = tmp_path / "pwned"
    env = hostile_values(sentinel)
    names = sorted(env)
    user = "printf '%s\\0' " + " ".join(f'"${name}"' for name in names) + " > values.bin\n"
    script = build_sbatch_script(_spec(environment=env, script=user), WORKDIR)
    run = subprocess.run([BASH, "--norc", "--noprofile"], input=script, text=True, capture_output=True,
                         check=False, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert "[hpcai] job" in run.stdout
    assert not sentinel.exists()
    values = (tmp_path / "values.bin").read_bytes().decode().split("\0")[:-1]
    assert dict(zip(names, values, strict=True)) == env


@pytest.mark.parametrize(
    "fields",
    [{"name": "x\n#SBATCH --uid=0"}, {"name": "$(touch /tmp/x)"}, {"name": "`id`"}, {"name": "a'b"},
     {"environment": {"A\nB": "1"}}, {"environment": {"A;touch x": "1"}}, {"environment": {"A": "\x00"}},
     {"resources": {"partition": "debug\n#SBATCH --uid=0"}}, {"resources": {"account": "$(id)"}},
     {"resources": {"qos": "normal'"}}, {"resources": {"constraint": "a\n#SBATCH --x"}},
     {"resources": {"constraint": "$(id)"}}, {"resources": {"constraint": "a b"}},
     {"array": "0-3\n#SBATCH --uid=0"}, {"array": "`id`"}, {"exclude_nodes": "n1\n#SBATCH --x"},
     {"exclude_nodes": "$(id)"}, {"workdir": "/scratch/../../etc"}, {"workdir": "/a\n#SBATCH --uid=0"},
     {"script": "echo \x00"}],
)
def test_hostile_fields_are_rejected_before_any_script_exists(fields):
    base = {"name": "job", "script": "echo hi"}
    if "resources" in fields:
        fields = {"resources": {"ntasks": 1, **fields["resources"]}}
    with pytest.raises(InvalidJobSpecError):
        JobSpec(**{**base, **fields})


def test_allowed_special_characters_are_quoted_in_directives():
    spec = _spec(name="run+1=@x", resources=Resources(constraint="(a100|h100)&!slow*"))
    script = build_sbatch_script(spec, "/scratch/my dir")
    assert subprocess.run([BASH, "-n"], input=script, text=True, check=False).returncode == 0
    scanned = dict(_directive(line) for line in _sbatch_scan(script))
    assert scanned["constraint"] == "(a100|h100)&!slow*" and scanned["chdir"] == "/scratch/my dir"
    assert scanned["job-name"] == "run+1=@x"


def test_workdir_argument_cannot_inject_directives():
    hostile = "/scratch/x\n#SBATCH --mem=999G\n#SBATCH --uid=0"
    try:
        script = build_sbatch_script(_spec(), hostile)
    except InvalidJobSpecError:
        return
    assert not any("999G" in d or "--uid" in d for d in _sbatch_scan(script))


def test_a_carriage_return_in_an_environment_value_is_refused():
    """sbatch refuses scripts with DOS line breaks; the provider says so before submitting."""
    with pytest.raises(InvalidJobSpecError, match="carriage return"):
        JobSpec(name="cr", script="true", environment={"CR": "ok\r\ntouch /tmp/x"})


def test_placement_directives_reach_the_sbatch_header():
    spec = _spec(resources=Resources(nodes=2, ntasks=8, ntasks_per_node=4, exclusive=True, reservation="maint_1"))
    script = build_sbatch_script(spec, WORKDIR)
    scanned = dict(_directive(line) for line in _sbatch_scan(script))
    assert scanned["ntasks-per-node"] == "4" and scanned["reservation"] == "maint_1" and scanned["exclusive"] == ""
    assert "--exclusive" not in build_sbatch_script(_spec(), WORKDIR)
