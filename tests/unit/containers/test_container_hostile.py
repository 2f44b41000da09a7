"""Hostile input in every Container field: refused with InvalidJobSpecError, or carried inertly.

Whatever is accepted is built by every builder, put in a bash script the way a backend would
(``shlex``-quoted arguments, ``export NAME=<quoted>`` for the variables, ``#SBATCH`` lines), and
run: the payloads (tests/hostile/payloads.py) try to create a sentinel file; it must never
appear, and the program must receive exactly the arguments and variables that were built.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_hpcai.containers import (
    Container,
    apptainer_launch,
    job_bundle_config,
    kubernetes_container,
    oci_launch,
    oci_sbatch_directives,
    podman_launch,
    pyxis_launch,
)
from airflow_provider_hpcai.containers.launch import Launch
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from tests.hostile.payloads import (
    HOSTILE,
    SENTINEL,
    SENTINEL_DIR,
    assert_no_sentinel,
    expected_directives,
    hostile_names,
    hostile_text,
    run_bash,
    sbatch_directives_of,
)


@pytest.fixture(scope="module", autouse=True)
def sentinel_dir() -> Iterator[None]:
    SENTINEL_DIR.mkdir(exist_ok=True)
    SENTINEL_DIR.chmod(0o1777)
    SENTINEL.unlink(missing_ok=True)
    yield
    assert not SENTINEL.exists(), "a payload created the sentinel"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-containers")


def _check_inert(c: Container, scratch: Path) -> None:
    """Every builder's output, run through bash as a backend would, arrives unchanged and inert."""
    for launch in _safe_launches(c):
        record = scratch / "argv.bin"
        record.unlink(missing_ok=True)
        lines = [f"{launch.argv[0]}() {{ printf '%s\\0' \"$@\" > {shlex.quote(str(record))}; }}"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in launch.env.items()]
        lines.append(shlex.join(launch.argv))
        proc = run_bash("\n".join(lines) + "\n", cwd=scratch)
        assert_no_sentinel(f"(built by {launch.argv[:2]})")
        assert proc.returncode == 0, proc.stderr[-500:]
        got = record.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1]
        assert got == launch.argv[1:]
    if c.image.startswith("/"):
        pairs = oci_sbatch_directives(c)
        script = "#!/bin/bash\n" + "".join(f"#SBATCH --{k}={shlex.quote(v)}\n" for k, v in pairs) + "true\n"
        assert sbatch_directives_of(script) == expected_directives(pairs)
        config = job_bundle_config({"process": {"env": []}, "mounts": []}, c)
        assert json.loads(json.dumps(config)) == config
    if not c.image.startswith("/"):
        built = kubernetes_container(c)
        assert json.loads(json.dumps(built)) == built


def _safe_launches(c: Container) -> list[Launch]:
    launches = []
    for build in (lambda: pyxis_launch(c, ["printenv"]), lambda: podman_launch(c, ["printenv"]),
                  lambda: apptainer_launch(c, ["printenv"]), lambda: oci_launch(c, ["printenv"], bundle="/j/b")):
        try:
            launches.append(build())
        except InvalidJobSpecError:
            pass  # this runtime does not take this image kind: refused, clearly
    return launches


def _build(**fields: object) -> Container | None:
    try:
        return Container(**fields)  # type: ignore[arg-type]
    except InvalidJobSpecError as err:
        assert str(err), "an error must say something"
        return None


@HOSTILE
@given(text=hostile_text())
def test_hostile_image(text: str, scratch: Path) -> None:
    c = _build(image=text)
    if c is not None:
        _check_inert(c, scratch)


@HOSTILE
@given(source=hostile_text(), target=hostile_names())
def test_hostile_mounts(source: str, target: str, scratch: Path) -> None:
    for mount in (source, f"{source}:/in", f"/data:{target}", {"source": source, "target": target}):
        c = _build(image="/img/bundle", mounts=[mount])
        if c is not None:
            _check_inert(c, scratch)
            _check_inert(c.replace(image="registry.example.org/t/s:1"), scratch)


@HOSTILE
@given(workdir=hostile_text())
def test_hostile_workdir(workdir: str, scratch: Path) -> None:
    c = _build(image="/img/bundle", workdir=workdir)
    if c is not None:
        _check_inert(c, scratch)


@HOSTILE
@given(name=hostile_names(), value=hostile_text())
def test_hostile_environment(name: str, value: str, scratch: Path) -> None:
    for env in ({name: "v"}, {"HPCAI_VALUE": value}):
        c = _build(image="/img/bundle", env=env)
        if c is not None:
            _check_inert(c, scratch)
            _check_inert(c.replace(image="python:3.11"), scratch)


@HOSTILE
@given(runtime=hostile_names())
def test_hostile_runtime_name(runtime: str) -> None:
    with pytest.raises(InvalidJobSpecError, match="not one of"):
        Container(image="python", runtime=runtime)  # type: ignore[arg-type]


@HOSTILE
@given(data=st.dictionaries(hostile_names(), hostile_text(long=False), max_size=3))
def test_hostile_mapping_from_templates(data: dict[str, str]) -> None:
    """A template's ``image`` mapping with hostile keys: unknown keys are refused by name."""
    try:
        Container.from_dict({"image": "python", **data})
    except InvalidJobSpecError as err:
        assert "container" in str(err) or "mount" in str(err)


def test_accepted_values_really_reach_the_program(scratch: Path) -> None:
    """Not vacuous: a payload-looking value is accepted in env and arrives byte for byte."""
    value = f"$(touch {SENTINEL}); `touch {SENTINEL}` '\"; touch {SENTINEL}"
    c = Container(image="/img/bundle", mounts=["/data:/in"], workdir=str(scratch), env={"HPCAI_VALUE": value})
    launch = oci_launch(c, ["sh", "-c", 'pwd; printenv HPCAI_VALUE'], bundle="/j/b")
    # A stand-in srun that drops its two options and runs the rest: the real workdir wrapper.
    script = "\n".join([f"export HPCAI_VALUE={shlex.quote(value)}",
                        'srun() { shift 2; "$@"; }', shlex.join(launch.argv)])
    proc = run_bash(script + "\n", cwd="/")
    assert proc.stdout.decode() == f"{scratch}\n{value}\n", proc.stderr
    assert_no_sentinel()
