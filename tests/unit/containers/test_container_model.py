"""Container: what is accepted, what is refused (and the error says what to do), and round trips."""

from __future__ import annotations

import json

import jsonschema
import pytest

from airflow_provider_hpcai.containers import CONTAINER_SCHEMA, Container, Mount
from airflow_provider_hpcai.exceptions import InvalidJobSpecError

GOOD_REFS = [
    "python",
    "python:3.11",
    "docker.io/library/python:3.11-slim",
    "registry.example.org:5000/team/stage:1.2",
    "localhost/hpcai-stage:39b6e83d27c84256",
    "ghcr.io/org/some_image__x/y-z:v1.0.0-rc.1",
    "quay.io/org/img@sha256:" + "a" * 64,
    "quay.io/org/img:tag@sha256:" + "0" * 64,
    "docker://ubuntu:24.04",
    "/var/cache/hpcai-image/39b6e83d27c84256/bundle",
    "/shared/images/stage.sif",
]


@pytest.mark.parametrize("image", GOOD_REFS)
def test_accepts_references_and_absolute_paths(image: str) -> None:
    assert Container(image=image).image == image


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("", "is empty"),
        ("Python:3.11", "invalid name"),
        ("registry.example.org/Team/stage", "invalid name"),
        ("python:3.11 ; rm -rf /", "not an image reference"),
        ("python:3.11 ; rm -rf x", "invalid tag"),
        ("python:$(id)", "invalid tag"),
        ("python@sha256:xyz", "invalid digest"),
        ("-v/etc:/x", "invalid name"),
        ("bad_domain!.org/x/y", "not an image reference"),
        ("relative/../bundle", "invalid name"),
        ("/images/../etc", "climbs out with '..'"),
        ("/images/my bundle", "characters that are not allowed"),
        ("/images/a:b", "characters that are not allowed"),
        ("/images/%j", "characters that are not allowed"),
        ("python\n#SBATCH --wrap=x", "line break"),
        ("python\x00", "NUL byte"),
        ("x" * 600, "at most 512"),
    ],
)
def test_refuses_bad_images_with_a_hint(image: str, says: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=None) as err:
        Container(image=image)
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("mount", "says"),
    [
        ("data:/data", "is relative"),
        ("/data:data", "is relative"),
        ("/data/../etc:/x", "climbs out"),
        ("/data:/x/../../etc", "climbs out"),
        ("/data:/", "cannot be '/'"),
        ("/a:/b:rx", "not 'source:target'"),
        ("/a:/b:ro:extra", "not 'source:target'"),
        ("/a b:/b", "not allowed"),
        ("/a,/c:/b", "not allowed"),
        ({"target": "/x"}, "needs 'source'"),
        ({"source": "/x", "mode": "ro"}, "needs 'source'"),
        (42, "must be 'source:target"),
    ],
)
def test_refuses_bad_mounts(mount: object, says: str) -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        Container(image="python", mounts=[mount])  # type: ignore[list-item]
    assert says in str(err.value)


def test_mount_forms_and_defaults() -> None:
    c = Container(
        image="python",
        mounts=["/scratch", "/data:/in", "/out:/out:rw", {"source": "/ref", "target": "/r", "read_only": False}],
    )
    assert c.mounts == (
        Mount("/scratch", "/scratch", True),
        Mount("/data", "/in", True),
        Mount("/out", "/out", False),
        Mount("/ref", "/r", False),
    )
    with pytest.raises(InvalidJobSpecError, match="share a target"):
        Container(image="python", mounts=["/a:/x", "/b:/x"])
    with pytest.raises(InvalidJobSpecError, match="list of"):
        Container(image="python", mounts="/a:/b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"1X": "v"}, "not allowed"),
        ({"A-B": "v"}, "not allowed"),
        ({"A B": "v"}, "not allowed"),
        ({"A": "line\nbreak"}, "line break"),
        ({"A": "nul\x00"}, "NUL byte"),
        ({"A": "x" * 5000}, "at most 4096"),
        ({"A": True}, "text or a number"),
        ({"A": "\udcff"}, "UTF-8"),
        (["A=1"], "mapping"),
    ],
)
def test_refuses_bad_environment(env: object, says: str) -> None:
    with pytest.raises(InvalidJobSpecError) as err:
        Container(image="python", env=env)  # type: ignore[arg-type]
    assert says in str(err.value)


def test_environment_keeps_any_single_line_text() -> None:
    c = Container(image="python", env={"A": "it's $(not) `run`; \"quoted\" & ok", "N": 3})
    assert c.env == {"A": "it's $(not) `run`; \"quoted\" & ok", "N": "3"}


def test_runtime_must_fit_the_image() -> None:
    with pytest.raises(InvalidJobSpecError, match="not one of auto, oci"):
        Container(image="python", runtime="docker")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobSpecError, match="OCI bundle folder"):
        Container(image="python:3.11", runtime="oci")
    with pytest.raises(InvalidJobSpecError, match="push the image"):
        Container(image="/bundles/stage", runtime="kubernetes")
    with pytest.raises(InvalidJobSpecError, match="true or false"):
        Container(image="python", gpus="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidJobSpecError, match="relative"):
        Container(image="python", workdir="work")


def test_round_trip_through_json_and_the_schema() -> None:
    c = Container(
        image="registry.example.org:5000/team/stage:1.2",
        mounts=["/data:/in", "/out:/out:rw"],
        workdir="/out",
        env={"OMP_NUM_THREADS": "1"},
        gpus=True,
        runtime="pyxis",
    )
    data = json.loads(json.dumps(c.to_dict()))
    jsonschema.validate(data, CONTAINER_SCHEMA)
    assert Container.from_dict(data) == c
    assert Container.from_dict("python:3.11") == Container(image="python:3.11")
    assert Container.from_dict(c) is c
    jsonschema.validate("python:3.11", CONTAINER_SCHEMA)
    jsonschema.validate({"image": "python", "mounts": ["/data:/in:ro"]}, CONTAINER_SCHEMA)
    with pytest.raises(InvalidJobSpecError, match="unknown container fields"):
        Container.from_dict({"image": "python", "privileged": True})
    with pytest.raises(InvalidJobSpecError, match="needs an 'image'"):
        Container.from_dict({"mounts": []})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image": "python", "privileged": True}, CONTAINER_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image": "python", "env": {"A": "x\ny"}}, CONTAINER_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image": "python", "mounts": ["data:/in"]}, CONTAINER_SCHEMA)


def test_equal_containers_hash_equal() -> None:
    a = Container(image="python", env={"A": "1", "B": "2"}, mounts=["/d:/d"])
    b = Container(image="python", env={"B": "2", "A": "1"}, mounts=[{"source": "/d"}])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


def test_replace_validates_again() -> None:
    c = Container(image="python")
    assert c.replace(workdir="/w").workdir == "/w"
    with pytest.raises(InvalidJobSpecError):
        c.replace(workdir="../w")


def test_long_hostile_input_is_refused_quickly() -> None:
    import time

    start = time.perf_counter()
    for text in ("a" * 100_000 + "!", "a-" * 200 + "!", "a." * 250 + ":" + "b" * 200, "/" + "a/" * 500 + "%"):
        with pytest.raises(InvalidJobSpecError):
            Container(image=text)
    assert time.perf_counter() - start < 0.5
