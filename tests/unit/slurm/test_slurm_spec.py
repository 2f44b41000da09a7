"""Resources and JobSpec: what a user may ask for, and the messages for what they may not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import (
    Resources,
    format_duration,
    format_memory,
    parse_duration,
    parse_memory,
)
from airflow_provider_hpcai.spec import JobSpec, make_tag, validate_env

GIB = 1024**3
MIB = 1024**2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4G", 4 * GIB), ("512M", 512 * MIB), ("1.5GiB", int(1.5 * GIB)), ("2048", 2048 * MIB), ("1T", 1024 * GIB),
     ("4g", 4 * GIB), (" 8 GB ", 8 * GIB), ("1048576K", GIB), (3 * GIB, 3 * GIB), (None, None)],
)
def test_parse_memory_accepts_slurm_sizes(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("lots", "is not a size"), ("4X", "is not a size"), ("-4G", "is not a size"), ("512K", "below 1M"),
     (0, "must be positive"), (-5, "must be positive"), (True, "size like"), (4.0, "size like")],
)
def test_parse_memory_rejects_with_a_hint(value, message):
    with pytest.raises(InvalidJobSpecError, match=message):
        parse_memory(value)


def test_format_memory_rounds_up_to_whole_mib():
    assert format_memory(4 * GIB) == "4096M"
    assert format_memory(MIB + 1) == "2M"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30", 1800), ("05:30", 330), ("01:00:00", 3600), ("1-00", 86400), ("2-03:04", 2 * 86400 + 3 * 3600 + 240),
     ("1-02:03:04", 93784), (timedelta(minutes=90), 5400), (600, 600), (0.5, 1), (None, None)],
)
def test_parse_duration_understands_slurm_times(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1:2:3:4", "-5", "1d", "", True, 0, -30, timedelta(0), [60]])
def test_parse_duration_rejects_nonsense(value):
    with pytest.raises(InvalidJobSpecError):
        parse_duration(value)


def test_format_duration_round_trips():
    for seconds in (59, 3600, 86399, 86400, 3 * 86400 + 5):
        assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(93784) == "1-02:03:04"


def test_resources_derived_values():
    res = Resources(nodes=2, ntasks=8, cpus_per_task=4, memory="16G", gpus="a100:2", time_limit="02:00:00",
                    time_min="00:30:00", partition="gpu", account="proj-1", qos="normal", constraint="a100&ib")
    assert (res.memory_bytes, res.time_limit_seconds, res.time_min_seconds) == (16 * GIB, 7200, 1800)
    assert (res.gpu_type, res.gpu_count, res.total_cpus) == ("a100", 2, 32)
    assert Resources(gpus=4).gpu_count == 4 and Resources(gpus=4).gpu_type is None
    assert Resources().gpu_count == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"nodes": 0}, "nodes must be a whole number"), ({"ntasks": 2.5}, "ntasks must be a whole number"),
     ({"cpus_per_task": True}, "cpus_per_task"), ({"nodes": 4, "ntasks": 2}, r"ntasks \(2\) must be at least nodes"),
     ({"memory": "huge"}, "memory 'huge' is not a size"), ({"gpus": "a100"}, "gpus 'a100' is not allowed"),
     ({"gpus": -1}, "gpus must be"), ({"gpus": "a 100:2"}, "not allowed"), ({"gpus": True}, "gpus must be"),
     ({"time_limit": "10", "time_min": "20"}, "time_min .* is longer than time_limit"),
     ({"partition": "debug;rm"}, "partition 'debug;rm' is not allowed"), ({"account": "-x"}, "account"),
     ({"qos": "a b"}, "qos"), ({"constraint": "a100 && $(id)"}, "constraint"), ({"partition": ""}, "partition"),
     ({"ntasks": 9, "nodes": 2, "ntasks_per_node": 4}, r"ntasks \(9\) do not fit on 2 node\(s\) at ntasks_per_node=4"),
     ({"ntasks_per_node": 0}, "ntasks_per_node must be"), ({"exclusive": "yes"}, "exclusive must be true or false"),
     ({"reservation": "maint;reboot"}, "reservation 'maint;reboot' is not allowed")],
)
def test_resources_rejects_bad_values_with_clear_messages(fields, message):
    with pytest.raises(InvalidJobSpecError, match=message):
        Resources(**fields)


def test_resources_dict_round_trip_and_unknown_keys():
    res = Resources(ntasks=4, memory="2G", time_limit=timedelta(hours=1), gpus="v100:1", partition="gpu")
    data = res.to_dict()
    assert data["memory"] == 2 * GIB and data["time_limit"] == 3600
    again = Resources.from_dict(data)
    assert again.to_dict() == data
    assert Resources.from_dict(None) == Resources()
    with pytest.raises(InvalidJobSpecError, match=r"unknown resource fields \['mem'\]"):
        Resources.from_dict({"mem": "4G"})
    with pytest.raises(InvalidJobSpecError, match="must be a mapping"):
        Resources.from_dict(["4G"])  # type: ignore[arg-type]


def test_placement_fields_round_trip_and_stay_out_of_older_records():
    res = Resources(nodes=2, ntasks=8, ntasks_per_node=4, exclusive=True, reservation="maint_window")
    data = res.to_dict()
    assert (data["ntasks_per_node"], data["exclusive"], data["reservation"]) == (4, True, "maint_window")
    assert Resources.from_dict(data) == res
    assert not {"ntasks_per_node", "exclusive", "reservation"} & set(Resources(ntasks=8).to_dict())


def test_resources_replace_validates_again():
    with pytest.raises(InvalidJobSpecError):
        Resources(memory="1G").replace(memory="nope")


def test_make_tag_is_deterministic_and_distinguishes_map_indexes():
    tag = make_tag("dag", "task", "run1")
    assert tag == make_tag("dag", "task", "run1") and tag.startswith("hpcai-") and len(tag) == 26
    assert tag != make_tag("dag", "task", "run1", 0) != make_tag("dag", "task", "run1", 1)
    assert make_tag("a", "bc", "r") != make_tag("ab", "c", "r")  # fields are separated, not concatenated


def test_validate_env_turns_values_into_strings():
    assert validate_env({"N": 3, "B": b"bytes", "E": ""}) == {"N": "3", "B": "bytes", "E": ""}
    assert validate_env(None) == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [({"1X": "v"}, "not allowed"), ({"A-B": "v"}, "not allowed"), ({"A B": "v"}, "not allowed"),
     ({"X=Y": "v"}, "not allowed"), ({"$(id)": "v"}, "not allowed"), ({"LD_PRELOAD": "/x.so"}, "reserved"),
     ({"BASH_ENV": "/x"}, "reserved"), ({"A": "a\x00b"}, "NUL"), ({"A": b"\xff"}, "not UTF-8"),
     ({"A": "x" * (128 * 1024 + 1)}, "longer than")],
)
def test_validate_env_rejects(env, message):
    with pytest.raises(InvalidJobSpecError, match=message):
        validate_env(env)


def test_validate_env_needs_a_mapping():
    with pytest.raises(InvalidJobSpecError, match="mapping"):
        validate_env([("A", "1")])  # type: ignore[arg-type]


def test_jobspec_coerces_resources_mapping():
    spec = JobSpec(name="j", script="echo hi", resources={"ntasks": 2, "memory": "1G"})  # type: ignore[arg-type]
    assert isinstance(spec.resources, Resources) and spec.resources.memory_bytes == GIB


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"name": "my job"}, "job name"), ({"name": "x" * 129}, "job name"), ({"name": "a;b"}, "job name"),
     ({"name": "a\nb"}, "job name"), ({"name": "$(id)"}, "job name"), ({"name": ""}, "job name"),
     ({"script": "  \n"}, "script is empty"), ({"script": "echo\x00"}, "NUL"),
     ({"tag": "hpcai-xyz"}, "not a provider tag"), ({"array": "0-9;id"}, "array"), ({"array": "$(id)"}, "array"),
     ({"array": "1-3\n#SBATCH --x"}, "array"), ({"exclude_nodes": "node1 node2"}, "exclude_nodes"),
     ({"exclude_nodes": "n1;rm"}, "exclude_nodes"), ({"workdir": "relative/dir"}, "absolute"),
     ({"workdir": "/scratch/../etc"}, r"no '\.\.'"), ({"workdir": "/scratch/.."}, r"no '\.\.'"),
     ({"workdir": "/a\nb"}, "newlines"), ({"workdir": "/" + "a" * 1030}, "1024")],
)
def test_jobspec_rejects_hostile_or_bad_fields(fields, message):
    base = {"name": "job", "script": "echo hi"}
    with pytest.raises(InvalidJobSpecError, match=message):
        JobSpec(**{**base, **fields})


@pytest.mark.parametrize("array", ["0-9", "1,3,5", "0-99:2", "0-9%2", "1-3,7,10-20:5%4"])
def test_jobspec_accepts_array_specs(array):
    assert JobSpec(name="j", script="echo", array=array).array == array


def test_jobspec_accepts_node_lists_and_odd_but_safe_workdirs():
    spec = JobSpec(name="j", script="echo", exclude_nodes="node[1-3],gpu7", workdir="/scratch/a..b/c")
    assert spec.exclude_nodes == "node[1-3],gpu7"
