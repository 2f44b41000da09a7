"""Hostile text in every Slurm-facing field: Resources, JobSpec, the sbatch script, REST
bodies, CLI argv, the SSH runner's command line and the connection extras.

Each input is either refused with :class:`InvalidJobSpecError` / :class:`ConfigurationError`
before anything is built, or it reaches the artefact as data: the script's directive block is
exactly what :func:`sbatch_directives` says (parsed the way sbatch parses it), the script's
header runs in bash without creating the sentinel, and environment values come out verbatim.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_provider_hpcai.exceptions import ConfigurationError, HpcAiError, InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm import commands, rest_api
from airflow_provider_hpcai.slurm.cli_transport import CliTransport, SshRunner
from airflow_provider_hpcai.slurm.rest_transport import RestTransport
from airflow_provider_hpcai.slurm.script import build_sbatch_script, sbatch_directives
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.fakes.slurmrestd import FakeSlurmRestServer
from tests.hostile.payloads import (
    HOSTILE,
    SENTINEL,
    assert_no_sentinel,
    expected_directives,
    hostile_names,
    hostile_text,
    injection,
    newline_bypass,
    non_utf8_text,
    run_bash,
    sbatch_directives_of,
)

WORKDIR = "/tmp/hpcai-hostile-jobs"
TAG = make_tag("dag", "task", "run")
_MARK = "# ---- user script ----"
_DUMP = "\n" + _MARK + "\nprintf '\\0'; env -0\n"  # NUL first: the banner must not glue onto a variable


def _header(script: str) -> str:
    """The provider's part of a batch script (directives, exports, banner), user script replaced."""
    head, found, _ = script.partition("\n" + _MARK + "\n")
    assert found, "the built script has no user-script marker"
    return head + _DUMP


def _environment(output: bytes) -> dict[str, str]:
    items = output.split(b"\x00")
    return dict(item.decode("utf-8", "surrogateescape").split("=", 1) for item in items if b"=" in item)


def _check_script(spec: JobSpec, workdir: str, tmp: Path) -> None:
    """The properties every built script must have, whatever the spec holds."""
    script = build_sbatch_script(spec, workdir)
    assert sbatch_directives_of(script) == expected_directives(sbatch_directives(spec, workdir))
    proc = run_bash(_header(script), cwd=tmp)
    assert_no_sentinel(f"running the header of:\n{script[:2000]}")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    seen = _environment(proc.stdout)
    for key, value in spec.environment.items():
        assert seen.get(key) == value, f"{key} did not come out verbatim"


def _refused_or(func, *args: Any, **kwargs: Any) -> Any:
    """Call ``func``; an :class:`InvalidJobSpecError` is a fine answer (returns ``None``)."""
    try:
        return func(*args, **kwargs)
    except InvalidJobSpecError as err:
        assert str(err), "the error says nothing"
        return None


# ------------------------------------------------------------------------------- Resources
RESOURCE_TEXT_FIELDS = ("partition", "account", "qos", "reservation", "constraint", "gpus", "memory", "time_limit",
                        "time_min")


@HOSTILE
@given(field=st.sampled_from(RESOURCE_TEXT_FIELDS), value=hostile_names())
def test_resources_refuse_or_keep_only_safe_text(field: str, value: str) -> None:
    assume(not newline_bypass(value))
    res = _refused_or(Resources, **{field: value})
    if res is None:
        return
    accepted = getattr(res, field)
    assert not any(c in accepted for c in "\n\r\x00`$;'\" <>\\"), (field, accepted)


@pytest.mark.parametrize("field", ["nodes", "ntasks", "cpus_per_task", "memory", "gpus", "time_limit", "partition",
                                   "account", "qos", "constraint", "reservation", "ntasks_per_node", "exclusive"])
@pytest.mark.parametrize("value", [b"1", ["1"], {"1": 1}, 1.5j, object(), True, -1])
def test_resources_refuse_wrong_types_with_a_clear_error(field: str, value: Any) -> None:
    if field == "exclusive" and value is True:
        return  # the one right type there
    with pytest.raises(InvalidJobSpecError):
        Resources(**{field: value})


def test_resources_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(InvalidJobSpecError, match="unknown resource fields"):
        Resources.from_dict({"partition": "debug", "$(touch x)": 1})


# ------------------------------------------------------------------------------- JobSpec and the script
SPEC_FIELDS = ("name", "env_name", "env_value", "array", "exclude_nodes", "workdir", "tag", "partition", "account",
               "qos", "reservation", "constraint", "gpus")


def _spec_with(field: str, value: str) -> JobSpec:
    kwargs: dict[str, Any] = {"name": "hostile", "script": "true\n", "tag": TAG}
    if field == "env_name":
        kwargs["environment"] = {value: "x"}
    elif field == "env_value":
        kwargs["environment"] = {"HOSTILE_VALUE": value}
    elif field in ("partition", "account", "qos", "reservation", "constraint", "gpus"):
        kwargs["resources"] = {field: value}
    else:
        kwargs[field] = value
    return JobSpec(**kwargs)


@HOSTILE
@given(field=st.sampled_from(SPEC_FIELDS), value=hostile_text())
def test_jobspec_refuses_or_quotes_every_field(field: str, value: str, tmp_path_factory) -> None:
    assume(not newline_bypass(value))
    assume(not (field in ("env_value",) and value != value.encode("utf-8", "surrogateescape")
                .decode("utf-8", "replace")))  # lone surrogates: see test_non_utf8_* below
    spec = _refused_or(_spec_with, field, value)
    if spec is None:
        return
    workdir = spec.workdir or WORKDIR
    _check_script(spec, workdir, tmp_path_factory.mktemp("hdr"))


@HOSTILE
@given(workdir=st.builds(lambda a, b: "/tmp/" + a + b, st.text(alphabet="abc/ .", max_size=4), injection()))
def test_hostile_workdir_is_refused_or_quoted_in_every_directive(workdir: str, tmp_path_factory) -> None:
    assume(not newline_bypass(workdir))
    spec = JobSpec(name="w", script="true\n", tag=TAG, environment={"A": "1"})
    try:
        script = build_sbatch_script(spec, workdir)
    except InvalidJobSpecError:
        return
    if "\\" in workdir:
        return  # sbatch unescapes backslashes inside quotes: see the xfail test below
    assert sbatch_directives_of(script) == expected_directives(sbatch_directives(spec, workdir))
    run_bash(_header(script), cwd=tmp_path_factory.mktemp("wd"))
    assert_no_sentinel()


@HOSTILE
@given(lines=st.lists(st.one_of(injection().map(lambda p: "#SBATCH --wrap=" + p),
                                st.sampled_from(["#SBATCH --partition=secret", "#SBATCH -p gpu --exclusive",
                                                 "  #SBATCH --mem=1T", "#SBATCH --output=/etc/passwd", "",
                                                 "# a comment", "#!/bin/sh"])), min_size=1, max_size=6))
def test_sbatch_lines_in_the_user_script_add_no_directive(lines: list[str]) -> None:
    spec = JobSpec(name="u", script="\n".join(lines) + "\necho done\n", tag=TAG,
                   resources=Resources(partition="debug", time_limit=60))
    script = build_sbatch_script(spec, WORKDIR)
    assert sbatch_directives_of(script) == expected_directives(sbatch_directives(spec, WORKDIR))
    assert spec.script.rstrip("\n") in script  # the user's code itself is kept as written


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "$(touch x)\x00"])
def test_nul_bytes_are_refused(value: str) -> None:
    for field in ("env_value", "workdir", "name"):
        with pytest.raises(InvalidJobSpecError):
            _spec_with(field, "/x" + value if field == "workdir" else value)
    with pytest.raises(InvalidJobSpecError, match="NUL"):
        JobSpec(name="n", script="echo " + value)


@pytest.mark.parametrize("name", sorted({"LD_PRELOAD", "BASH_ENV", "ENV", "IFS", "PS4", "SLURM_JWT",
                                         "LD_LIBRARY_PATH"}))
def test_environment_cannot_change_how_the_job_itself_is_run(name: str) -> None:
    with pytest.raises(InvalidJobSpecError, match="reserved"):
        JobSpec(name="r", script="true", environment={name: "/tmp/evil.so"})


def test_non_utf8_bytes_in_environment_are_refused() -> None:
    with pytest.raises(InvalidJobSpecError, match="UTF-8"):
        JobSpec(name="b", script="true", environment={"A": b"\xff\xfe"})


def test_oversized_values_are_refused() -> None:
    with pytest.raises(InvalidJobSpecError, match="longer"):
        JobSpec(name="big", script="true", environment={"A": "x" * (128 * 1024 + 1)})
    with pytest.raises(InvalidJobSpecError, match="longer"):
        JobSpec(name="big", script="x" * (4 * 1024 * 1024 + 1))
    with pytest.raises(InvalidJobSpecError):
        JobSpec(name="n" * 129, script="true")
    with pytest.raises(InvalidJobSpecError):
        JobSpec(name="w", script="true", workdir="/" + "d" * 1024)


# ------------------------------------------------------------------------------- REST bodies
@HOSTILE
@given(value=hostile_text(long=False), script_payload=injection(),
       version=st.sampled_from(rest_api.SUPPORTED_VERSIONS))
def test_rest_bodies_carry_hostile_values_as_json_data(value: str, script_payload: str, version: str) -> None:
    assume("\x00" not in value and value == value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    spec = JobSpec(name="rest", script="echo " + shlex.quote(script_payload) + "\n", tag=TAG,
                   environment={"HOSTILE": value})
    body = rest_api.submit_body(spec, WORKDIR, version)
    decoded = json.loads(json.dumps(body))  # what goes over the wire, read back
    job = decoded["job"]
    env = job["environment"]
    if isinstance(env, dict):
        assert env["HOSTILE"] == value
    else:
        assert f"HOSTILE={value}" in env
    script = decoded.get("script", job.get("script"))
    assert script == build_sbatch_script(spec, WORKDIR)
    assert job["name"] == "rest" and job["current_working_directory"] == WORKDIR


def test_rest_transport_sends_hostile_values_verbatim_to_slurmrestd() -> None:
    server = FakeSlurmRestServer()
    transport = RestTransport("http://slurm-head:6820", "hpcai", lambda: server.token, client=server.client())
    value = "'; touch " + str(SENTINEL) + "; '$(id)`id`\n#SBATCH --mem=1T"
    transport.submit(JobSpec(name="rest-h", script="true", tag=TAG, environment={"V": value}), WORKDIR)
    body = server.bodies[-1]
    assert body["job"]["environment"]["V"] == value
    assert not SENTINEL.exists()


# ------------------------------------------------------------------------------- CLI argv builders
@HOSTILE
@given(job_id=st.one_of(hostile_names(), st.sampled_from(["1,2", "1 2", "-1", "1;2", "1.0", "0x1f", "１２", "1_2"])))
def test_job_ids_are_refused_unless_digits(job_id: str) -> None:
    ok = job_id.strip().isascii() and job_id.strip().isdigit()
    for build in (lambda: commands.scancel_argv(job_id), lambda: commands.squeue_argv([job_id]),
                  lambda: commands.sacct_argv([job_id])):
        if ok:
            argv = build()
            assert job_id.strip() in " ".join(argv)
        else:
            with pytest.raises(InvalidJobSpecError):
                build()


@pytest.mark.parametrize("since", ["2026-01-01; touch x", "now-1hour", "$(date)", "2026-01-01\n"])
def test_sacct_since_is_refused_unless_a_date(since: str) -> None:
    with pytest.raises(InvalidJobSpecError):
        commands.sacct_argv(["1"], since=since)


# ------------------------------------------------------------------------------- the SSH runner
class _BashSshClient:
    """A paramiko-like client whose ``exec_command`` runs the command string with ``bash -c``,
    as sshd does with a login shell: what the remote shell would do, it does here."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.commands: list[str] = []

    def get_transport(self) -> Any:
        return self

    def is_active(self) -> bool:
        return True

    def exec_command(self, command: str, timeout: float = 60) -> tuple[Any, Any, Any]:
        self.commands.append(command)
        proc = subprocess.run(["bash", "-c", command], cwd=self.cwd, capture_output=True, timeout=timeout,
                              env={"PATH": "/usr/bin:/bin"}, check=False)
        return _Chan(b""), _Chan(proc.stdout, proc.returncode), _Chan(proc.stderr, proc.returncode)

    def close(self) -> None:
        return None


class _Chan:
    def __init__(self, data: bytes, code: int = 0) -> None:
        self.data, self.channel = data, self
        self.code = code

    def read(self) -> bytes:
        return self.data

    def write(self, text: str) -> None:
        return None

    def shutdown_write(self) -> None:
        return None

    def recv_exit_status(self) -> int:
        return self.code


@HOSTILE
@given(words=st.lists(hostile_text(long=False), min_size=1, max_size=4))
def test_ssh_runner_quotes_every_word_for_the_remote_shell(words: list[str], tmp_path_factory) -> None:
    words = [w.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "") for w in words]
    runner = SshRunner("unused")
    runner._client = _BashSshClient(tmp_path_factory.mktemp("ssh"))
    result = runner.run(["printf", "%s\\0", *words])
    assert_no_sentinel(f"over SSH: {runner._client.commands[-1]!r}")
    assert result.returncode == 0
    assert result.stdout.split("\x00")[:-1] == words
    assert runner._client.commands[-1] == shlex.join(["printf", "%s\\0", *words])


def test_ensure_dir_ends_options_before_the_path(tmp_path: Path) -> None:
    runner = SshRunner("unused")
    runner._client = _BashSshClient(tmp_path)
    CliTransport(runner).ensure_dir(str(tmp_path / "-rf $(touch x)"))
    assert (tmp_path / "-rf $(touch x)").is_dir()
    assert runner._client.commands[-1].startswith("mkdir -p -- ")


# ------------------------------------------------------------------------------- connection extras
@HOSTILE
@given(key=st.sampled_from(["transport", "api_version"]), value=hostile_names())
def test_connection_extras_with_hostile_choices_are_configuration_errors(key: str, value: str) -> None:
    from airflow_provider_hpcai.hooks.slurm import build_transport

    extras = {"transport": "rest", "base_url": "http://slurm-head:6820", key: value}
    assume(value.lower() not in ("rest", "ssh", "local", "auto", *rest_api.SUPPORTED_VERSIONS))
    with pytest.raises(ConfigurationError):
        build_transport(extras, login="hpcai", password="jwt")


@HOSTILE
@given(work_dir=hostile_text(long=False), partition=hostile_names())
def test_connection_work_dir_and_partition_are_checked_before_submission(work_dir: str, partition: str) -> None:
    from airflow_provider_hpcai.hooks.slurm import SlurmHook
    from tests.fakes.slurm import FakeSlurmTransport

    assume(not newline_bypass(partition) and not newline_bypass(work_dir))
    fake = FakeSlurmTransport()
    hook = SlurmHook(transport=fake)
    hook._extras = {"work_dir": work_dir, "partition": partition}
    hook.sleep = lambda _s: None
    try:
        job_id = hook.submit(JobSpec(name="c", script="true", tag=TAG))
    except InvalidJobSpecError:
        assert fake.submissions == 0
        return
    job = fake.job(job_id)
    assert sbatch_directives_of(job.script) == expected_directives(sbatch_directives(job.spec, work_dir))


@pytest.mark.parametrize("extras", [{"transport": ["rest"]},
                                    {"transport": "rest", "base_url": ["http://x"]},
                                    {"transport": {"$(x)": 1}}])
def test_wrongly_typed_extras_are_configuration_errors(extras: dict[str, Any]) -> None:
    from airflow_provider_hpcai.hooks.slurm import build_transport

    with pytest.raises(ConfigurationError):
        build_transport(extras, login="hpcai", password="jwt")


def test_missing_ca_bundle_is_a_configuration_error() -> None:
    from airflow_provider_hpcai.hooks.slurm import build_transport

    with pytest.raises(ConfigurationError, match="verify"):
        build_transport({"transport": "rest", "base_url": "http://h:1", "verify": "/nonexistent/ca.pem"},
                        login="hpcai", password="jwt")


# ------------------------------------------------------------------------------- known bugs
NEWLINE_CASES = [
    ("name", "job\n"), ("env_name", "HOSTILE\n"), ("array", "1\n"), ("exclude_nodes", "node1\n"),
    ("partition", "debug\n"), ("account", "proj\n"), ("qos", "high\n"), ("reservation", "maint\n"), ("gpus", "a100:1\n"), ("tag", TAG + "\n"),
]


@pytest.mark.parametrize(("field", "value"), NEWLINE_CASES, ids=[c[0] for c in NEWLINE_CASES])
def test_a_trailing_newline_is_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidJobSpecError):
        _spec_with(field, value)


def test_a_trailing_newline_cannot_turn_an_environment_value_into_code(tmp_path: Path) -> None:
    """The attack needs 'debug\\n' accepted as a partition: it is refused, so no script is ever built."""
    with pytest.raises(InvalidJobSpecError):
        JobSpec(name="nl", script="# don't worry\necho done\n", tag=TAG,
                resources=Resources(partition="debug\n", account="proj", time_limit=60),
                environment={"GREETING": f"; touch {tmp_path / 'pwned-by-newline'}; "})


def test_backslash_in_workdir_is_refused() -> None:
    """sbatch unescapes backslashes inside quoted #SBATCH values, so such a path cannot reach it intact."""
    spec = JobSpec(name="bs", script="true", tag=TAG)
    with pytest.raises(InvalidJobSpecError, match="backslash"):
        build_sbatch_script(spec, "/tmp/a\\b")


@HOSTILE
@given(value=non_utf8_text())
def test_non_utf8_text_in_environment_is_refused_with_a_clear_error(value: str) -> None:
    spec = _refused_or(_spec_with, "env_value", value)
    if spec is None:
        return
    server = FakeSlurmRestServer()
    transport = RestTransport("http://slurm-head:6820", "hpcai", lambda: server.token, client=server.client())
    try:
        transport.submit(spec, WORKDIR)
    except HpcAiError:
        return


def test_rest_client_errors_are_transport_errors_not_crashes() -> None:
    """A slurmrestd answering garbage gives a TransportError whose message is readable text."""
    from airflow_provider_hpcai.exceptions import TransportError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=b"\xff\xfe<html>$(touch x)</html>")

    transport = RestTransport("http://h:1", "hpcai", lambda: "t", api_version="v0.0.38",
                              client=httpx.Client(transport=httpx.MockTransport(handler), base_url="http://h:1"))
    with pytest.raises(TransportError, match="400"):
        transport.submit(JobSpec(name="g", script="true"), WORKDIR)
