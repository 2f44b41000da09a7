"""Hostile input to the simulation stage and the local backend.

The kernel's parameters reach the job as a JSON file written by a quoted heredoc: the
script is run here in bash (with the hostile values in the parameters, the output folder and
the interpreter path) and the file must hold exactly the parameters, with no sentinel.
The local backend really runs jobs whose environment is hostile and must print it verbatim.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_provider_hpcai.backends.local import LocalBackend
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.launchers import NoLauncher
from airflow_provider_hpcai.operators.simulation import INPUT_FILE, SimulationOperator, simulation_script
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from simulation_kernels.params import KERNELS, SPECS, validate
from tests.hostile.payloads import (
    HOSTILE,
    assert_no_sentinel,
    hostile_names,
    hostile_text,
    injection,
    run_bash,
)
from tests.support import make_context

log = logging.getLogger(__name__)

_json_leaf = st.one_of(hostile_text(long=False), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.booleans(), st.none())
json_values = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                               st.dictionaries(hostile_names(), inner, max_size=3)),
                           max_leaves=8)


def _segment(text: str) -> str:
    seg = text.replace("/", "_").replace("\x00", "")
    return seg if seg not in ("", ".", "..") else "x" + seg


# ------------------------------------------------------------------------------- the script
@HOSTILE
@given(params=st.dictionaries(hostile_names(), json_values, max_size=4), out=hostile_names(),
       python=hostile_names())
def test_simulation_script_writes_parameters_as_data(params: dict[str, Any], out: str, python: str,
                                                     tmp_path_factory) -> None:
    tmp = tmp_path_factory.mktemp("sim")
    output_dir = str(tmp / _segment(out))
    python = python.replace("\x00", "") or "python"
    script = simulation_script("seismic", params, ranks=1, launcher=NoLauncher(), python=python, output_dir=output_dir)
    proc = run_bash(script, cwd=tmp)
    assert_no_sentinel(f"running the simulation script:\n{script[:2000]}")
    written = json.loads((Path(output_dir) / INPUT_FILE).read_bytes())
    assert written == json.loads(json.dumps(params)), "the parameters did not reach the job verbatim"
    # The hostile interpreter is looked up as one word: not found (127), or a path that names a
    # directory or a non-executable file (126, e.g. "../.."); never run as shell code.
    assert proc.returncode in (126, 127), proc.stderr


def test_heredoc_delimiter_cannot_be_forged(tmp_path: Path) -> None:
    """A value that is a guess of the delimiter (or any 'EOF') stays inside the JSON line."""
    import hashlib

    params = {"a": "x"}
    payload = json.dumps(params, sort_keys=True, ensure_ascii=True, allow_nan=False)
    guess = "HPCAI_CONFIG_" + hashlib.sha256(payload.encode()).hexdigest()[:16]
    hostile = {"note": f"\n{guess}\ntouch /tmp/never\n{guess}\nEOF\n"}
    script = simulation_script("seismic", hostile, ranks=1, launcher=NoLauncher(), python="true",
                               output_dir=str(tmp_path / "o"))
    run_bash(script, cwd=tmp_path)
    assert json.loads((tmp_path / "o" / INPUT_FILE).read_text()) == hostile
    assert script.count("\n" + guess + "\n") == 0  # the delimiter depends on the whole payload


@pytest.mark.parametrize("value", [math.nan, math.inf, object(), {1, 2}, b"bytes"])
def test_non_json_parameters_are_refused(value: Any) -> None:
    with pytest.raises(InvalidJobSpecError, match="plain JSON"):
        simulation_script("seismic", {"x": value}, ranks=1, launcher=NoLauncher(), python="python", output_dir="o")


# ------------------------------------------------------------------------------- the operator
@HOSTILE
@given(kernel=hostile_names(), launcher=hostile_names(), device=hostile_names(),
       output_dir=hostile_text(long=False), ranks=st.one_of(st.integers(-3, 0), st.just(True), hostile_names()))
def test_operator_refuses_hostile_arguments_at_parse_time(kernel: str, launcher: str, device: str, output_dir: str,
                                                          ranks: Any) -> None:
    import re

    assume(not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kernel))
    assume(launcher not in ("auto", "none", "mpiexec", "mpirun", "srun") and device not in ("cpu", "cuda", "auto"))
    for kwargs in ({"kernel": kernel}, {"kernel": "seismic", "launcher": launcher},
                   {"kernel": "seismic", "device": device}, {"kernel": "seismic", "ranks": ranks}):
        with pytest.raises(InvalidJobSpecError):
            SimulationOperator(task_id="t", backend="local", **kwargs)
    bad_dir = "\n" in output_dir or "\r" in output_dir or "\x00" in output_dir or not output_dir.strip()
    if bad_dir:
        with pytest.raises(InvalidJobSpecError):
            SimulationOperator(task_id="t", backend="local", kernel="seismic", output_dir=output_dir)


@HOSTILE
@given(kernel=st.sampled_from(sorted(KERNELS)), key=st.one_of(hostile_names(), st.sampled_from(["device", "nx"])),
       value=json_values)
def test_kernel_parameters_are_checked_before_submission(kernel: str, key: str, value: Any, tmp_path_factory) -> None:
    op = SimulationOperator(task_id="t", backend="local", kernel=kernel, kernel_params={key: value},
                            output_dir=str(tmp_path_factory.mktemp("op") / "out"))
    try:
        script = op.build_script(make_context())
    except InvalidJobSpecError as err:
        assert f"task t: {kernel}" in str(err) or "unknown" in str(err) or "task t" in str(err)
        return
    # accepted: only a declared parameter of the right type, and it is written as data
    assert key in SPECS[kernel]
    tmp = Path(op.output_dir).parent
    without_kernel_run = script.rsplit("\n", 2)[0] + "\n"  # everything but the last line (the kernel itself)
    run_bash(without_kernel_run, cwd=tmp)
    assert_no_sentinel()
    written = json.loads((Path(op.output_dir) / INPUT_FILE).read_text())
    assert written[key] == value or isinstance(value, (int, float))


@HOSTILE
@given(kernel=st.sampled_from(sorted(KERNELS)), value=hostile_text(long=False))
def test_validate_refuses_hostile_text_in_every_string_parameter(kernel: str, value: str) -> None:
    for name, param in SPECS[kernel].items():
        if param.kind != "str":
            with pytest.raises(ValueError):
                validate(kernel, {name: value})
            continue
        if param.choices:
            if value in param.choices:
                continue
            with pytest.raises(ValueError, match="not allowed"):
                validate(kernel, {name: value})
        else:  # free text (a station name...): kept as data in the JSON file, never interpreted
            assert validate(kernel, {name: value})[name] == value


# ------------------------------------------------------------------------------- the local backend
@HOSTILE
@given(values=st.lists(st.one_of(injection(), hostile_text(long=False)), min_size=1, max_size=3))
def test_local_backend_job_sees_hostile_environment_verbatim(values: list[str], tmp_path_factory) -> None:
    values = [v.replace("\x00", "") for v in values]
    env = {f"HOSTILE_{i}": v for i, v in enumerate(values)}
    script = "for n in " + " ".join(sorted(env)) + '; do printf "%s\\0" "${!n}"; done\n'
    try:
        spec = JobSpec(name="local-hostile", script=script, environment=env,
                       tag=make_tag("hostile", "local", str(values)), resources=Resources(time_limit=30))
    except InvalidJobSpecError:
        return  # refused with the provider's clear error (e.g. a carriage return): acceptable
    backend = LocalBackend(base_dir=str(tmp_path_factory.mktemp("local")), sample_interval=0.02)
    ref = backend.submit(spec)
    status = backend.wait(ref, poll_interval=0.02, log=log)
    assert status.state == "COMPLETED"
    out = Path(ref.stdout_path).read_bytes().split(b"\x00")[:-1]
    assert [o.decode("utf-8", "surrogateescape") for o in out] == [env[k] for k in sorted(env)]
    assert_no_sentinel()


def test_local_backend_refuses_job_arrays_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidJobSpecError, match="array"):
        LocalBackend(base_dir=str(tmp_path)).submit(JobSpec(name="a", script="true", array="0-3"))


@pytest.mark.parametrize("workdir", ["../../escape", "relative/dir", "{tmp}/inside/../escaped"])
def test_local_backend_refuses_relative_and_parent_workdirs(workdir: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")  # whatever happens stays under tmp_path
    workdir = workdir.format(tmp=tmp_path)
    backend = LocalBackend(base_dir=str(tmp_path))
    with pytest.raises(InvalidJobSpecError):
        ref = backend.submit(JobSpec(name="w", script="true"), workdir=workdir)
        backend.wait(ref, poll_interval=0.02, log=log)
