"""The run-as mapping and the sudo argv builder: pure rules, no cluster."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.config import CONFIG_OPTIONS
from airflow_provider_hpcai.exceptions import ConfigurationError
from airflow_provider_hpcai.identity.mapping import (
    IdentitySettings,
    RunAsRefusedError,
    check_user,
    parse_mapping,
    resolve,
)
from airflow_provider_hpcai.identity.runners import dd_argv, sudo_argv

SETTINGS = IdentitySettings.parse(users="hpc-alice, hpc-bob", mapping="alice=hpc-alice, genomics=hpc-bob")


def no_uid(name: str) -> int | None:
    return None


@pytest.mark.parametrize(("owner", "run_as", "user"), [
    ("alice", None, "hpc-alice"),  # the owner, through the mapping
    ("alice", "", "hpc-alice"),  # an empty run_as is no run_as
    ("anyone", "genomics", "hpc-bob"),  # run_as wins over the owner
    ("alice", "hpc-bob", "hpc-bob"),  # run_as naming an allowlisted user directly
    ("hpc-bob", None, "hpc-bob"),  # an owner that is an allowlisted user
])
def test_resolve_picks_the_mapped_or_named_user(owner, run_as, user):
    assert resolve(owner, run_as, SETTINGS, uid_of=no_uid) == user


def test_without_an_allowlist_jobs_run_as_the_connection_account_and_run_as_is_refused():
    off = IdentitySettings.parse()
    assert resolve("alice", None, off) is None
    with pytest.raises(RunAsRefusedError, match="run_as_users"):
        resolve("alice", "hpc-alice", off)


def test_an_unmapped_owner_is_refused_unless_the_site_chose_the_service_account():
    with pytest.raises(RunAsRefusedError, match="'airflow' maps to no Slurm user.*run_as_mapping"):
        resolve("airflow", None, SETTINGS, uid_of=no_uid)
    service = IdentitySettings.parse(users="hpc-alice", unmapped="service")
    assert resolve("airflow", None, service, uid_of=no_uid) is None
    with pytest.raises(RunAsRefusedError, match="neither a key"):  # an explicit run_as never falls back
        resolve("airflow", "carol", service, uid_of=no_uid)


def test_an_owner_named_root_is_refused_as_root_even_with_the_service_fallback():
    service = IdentitySettings.parse(users="hpc-alice", unmapped="service")
    for owner in ("root", "Root"):
        with pytest.raises(RunAsRefusedError, match="never run as root"):
            resolve(owner, None, service, uid_of=no_uid)


@pytest.mark.parametrize("run_as", ["root", "carol", "hpc-carol"])
def test_root_and_users_outside_the_allowlist_are_refused(run_as):
    with pytest.raises(RunAsRefusedError):
        resolve("alice", run_as, SETTINGS, uid_of=no_uid)


def test_a_user_with_uid_0_is_refused_whatever_its_name():
    settings = IdentitySettings.parse(users="toor")
    with pytest.raises(RunAsRefusedError, match="uid 0"):
        resolve("toor", None, settings, uid_of=lambda name: 0)
    assert check_user("toor", settings, uid_of=lambda name: 1000) == "toor"


@pytest.mark.parametrize(("users", "mapping", "message"), [
    ("", "alice=hpc-alice", "run_as_users is empty"),  # a mapping nobody would notice is ignored
    ("hpc-alice", "alice=hpc-bob", "does not list"),
    ("root", "", "root"),
    ("hpc-alice,alice;rm", "", "not a valid user name"),
    ("hpc-alice", "alice", "not key=user"),
    ("hpc-alice", "a=hpc-alice,a=hpc-alice", "twice"),
    ("hpc-alice", "ops=root", "root"),
])
def test_malformed_or_unsafe_options_are_configuration_errors(users, mapping, message):
    with pytest.raises(ConfigurationError, match=message):
        IdentitySettings.parse(users=users, mapping=mapping)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("ssh_conn_id", "ssh_shared", "must contain"),  # every user would share one login
    ("rest_token_conn_id", "jwt_{user}_{x}", "only"),
    ("work_dir", "scratch/{user}", "absolute"),
    ("unmapped", "maybe", "refuse or service"),
])
def test_patterns_must_name_the_user(option, value, message):
    with pytest.raises(ConfigurationError, match=message):
        IdentitySettings.parse(users="hpc-alice", **{option: value})


def test_settings_come_from_the_hpcai_section(monkeypatch):
    monkeypatch.setenv("AIRFLOW__HPCAI__RUN_AS_USERS", "hpc-alice")
    monkeypatch.setenv("AIRFLOW__HPCAI__RUN_AS_MAPPING", "alice=hpc-alice")
    monkeypatch.setenv("AIRFLOW__HPCAI__RUN_AS_WORK_DIR", "/scratch/{user}/jobs")
    settings = IdentitySettings.from_config()
    assert settings.users == {"hpc-alice"} and settings.mapping == {"alice": "hpc-alice"}
    assert settings.user_work_dir("hpc-alice") == "/scratch/hpc-alice/jobs"
    assert settings.ssh_conn_id == "ssh_{user}" and settings.unmapped == "refuse"
    assert {k for k in CONFIG_OPTIONS if k.startswith("run_as_")} == {
        "run_as_users", "run_as_mapping", "run_as_unmapped", "run_as_ssh_conn_id", "run_as_rest_token_conn_id",
        "run_as_sudo", "run_as_work_dir"}


def test_parse_mapping_keeps_keys_exact():
    assert parse_mapping(" Alice = hpc-alice ,team.bio=hpc-bob,") == {"Alice": "hpc-alice", "team.bio": "hpc-bob"}


def test_sudo_argv_never_prompts_and_ends_its_options():
    assert sudo_argv("hpc-alice", ["/usr/bin/sbatch", "--parsable"]) == [
        "sudo", "-n", "-u", "hpc-alice", "--", "/usr/bin/sbatch", "--parsable"]
    assert sudo_argv("hpc-alice", ["/usr/bin/squeue"], sudo="/usr/bin/sudo", keep_env=["SLURM_CONF", "BAD-NAME"]) == [
        "/usr/bin/sudo", "-n", "-u", "hpc-alice", "--preserve-env=SLURM_CONF", "--", "/usr/bin/squeue"]


@pytest.mark.parametrize("user", ["root", "-r", "#0", "", "a b", "alice;id"])
def test_sudo_argv_refuses_users_sudo_would_misread(user):
    with pytest.raises(RunAsRefusedError):
        sudo_argv(user, ["/usr/bin/id"])


def test_sudo_argv_refuses_nul_and_empty_commands():
    with pytest.raises(ValueError, match="NUL"):
        sudo_argv("hpc-alice", ["/usr/bin/echo", "a\0b"])
    with pytest.raises(ValueError, match="no command"):
        sudo_argv("hpc-alice", [])


def test_dd_argv_reads_a_byte_range():
    assert dd_argv("/home/a/x.out", 10, 4096) == [
        "dd", "if=/home/a/x.out", "iflag=skip_bytes,count_bytes", "skip=10", "count=4096", "bs=1M", "status=none"]
    for bad in ("relative.out", "/a\nb", "/a\0b"):
        with pytest.raises(ValueError):
            dd_argv(bad, 0, 1)


def _fake_sudo(tmp_path, body: str):
    program = tmp_path / "sudo"
    program.write_text("#!/bin/sh\n" + body)
    program.chmod(0o755)
    return str(program)


def test_the_sudo_runner_runs_the_resolved_program_as_the_user(tmp_path):
    from airflow_provider_hpcai.identity.runners import SudoRunner

    seen = tmp_path / "argv"
    sudo = _fake_sudo(tmp_path, f'printf "%s\\n" "$@" > {seen}; umask\n')
    result = SudoRunner("hpc-alice", sudo=sudo).run(["true"])
    argv = seen.read_text().splitlines()
    assert argv[:3] == ["-n", "-u", "hpc-alice"] and argv[-2] == "--" and argv[-1].endswith("/true")
    assert result.returncode == 0 and result.stdout.strip() == "0077"  # job output files are the user's alone


def test_a_missing_sudo_rule_says_what_to_add(tmp_path):
    from airflow_provider_hpcai.exceptions import TransportError
    from airflow_provider_hpcai.identity.runners import SudoRunner

    sudo = _fake_sudo(tmp_path, 'echo "sudo: a password is required" >&2; exit 1\n')
    with pytest.raises(TransportError, match="needs a sudoers rule for this user"):
        SudoRunner("hpc-alice", sudo=sudo).run(["squeue"])


def test_reading_a_file_of_another_user_is_refused_before_it_is_read(tmp_path):
    from airflow_provider_hpcai.identity.runners import SudoRunner

    calls = tmp_path / "calls"
    # stat answers "hpc-bob"; dd would print the secret if it were ever run.
    sudo = _fake_sudo(tmp_path, f'echo "$@" >> {calls}\ncase "$*" in *stat*) echo hpc-bob;; *) echo secret;; esac\n')
    with pytest.raises(RunAsRefusedError, match="belongs to 'hpc-bob'"):
        SudoRunner("hpc-alice", sudo=sudo).read_file("/home/hpc-bob/.hpcai/jobs/x.out", 0, 100)
    assert "if=" not in calls.read_text()  # dd never ran
