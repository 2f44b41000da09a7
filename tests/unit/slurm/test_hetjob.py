"""Heterogeneous jobs: the spec, the operator's parse-time checks, the backends that refuse them,
the sbatch script and the slurmrestd request body (checked against the servers' own OpenAPI)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from airflow_provider_hpcai.backends.gridengine import GridEngineBackend
from airflow_provider_hpcai.backends.kubernetes import KubernetesBackend
from airflow_provider_hpcai.backends.local import LocalBackend
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.jobs.digest import submission_digest
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm import rest_api
from airflow_provider_hpcai.slurm.script import build_sbatch_script
from airflow_provider_hpcai.spec import JobSpec, make_tag

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SOLVER = Resources(cpus_per_task=4, memory="8G", gpus="a100:1", time_limit=3600, partition="gpu")
POST = {"cpus_per_task": 2, "memory": "2G", "partition": "cpu", "qos": "post"}


def _spec(**changes) -> JobSpec:
    base = {"name": "coupled", "script": "srun --het-group=0 solver &\nsrun --het-group=1 post &\nwait",
            "resources": SOLVER, "components": [POST], "tag": make_tag("d", "t", "r")}
    return JobSpec(**{**base, **changes})


# ------------------------------------------------------------------ spec and operator
def test_components_become_resources_and_group_zero_stays_resources() -> None:
    spec = _spec(components=[Resources(ntasks=2), POST])
    assert spec.components == (Resources(ntasks=2), Resources.from_dict(POST))
    assert spec.het_groups == (SOLVER, Resources(ntasks=2), Resources.from_dict(POST))
    assert JobSpec(name="plain", script="true").het_groups == (Resources(),)


@pytest.mark.parametrize(("components", "message"), [
    ("cpus_per_task=2", "list of Resources or dicts"),
    ({"cpus_per_task": 2}, "list of Resources or dicts"),
    ([42], r"components\[0\] \(het group 1\) must be Resources or a dict"),
    ([{"cpus_per_task": 2}, {"memory": "lots"}], r"components\[1\] \(het group 2\)"),
])
def test_bad_components_are_refused_with_the_group_named(components, message) -> None:
    with pytest.raises(InvalidJobSpecError, match=message):
        _spec(components=components)


def test_a_hetjob_is_no_array_and_runs_in_no_container() -> None:
    with pytest.raises(InvalidJobSpecError, match="cannot also be a job array"):
        _spec(array="0-3")
    with pytest.raises(InvalidJobSpecError, match="cannot run in a container"):
        _spec(container={"image": "docker://alpine:3.20"})


def test_operator_checks_components_when_the_dag_is_parsed() -> None:
    op = SlurmJobOperator(task_id="coupled", script="srun --het-group=1 post", job_resources=SOLVER,
                          components=[Resources(cpus_per_task=2), {"memory": "1G"}])
    assert op.components == (Resources(cpus_per_task=2), Resources(memory="1G"))
    assert SlurmJobOperator(task_id="plain", script="true").components == ()
    with pytest.raises(InvalidJobSpecError, match="task bad: components must be a list"):
        SlurmJobOperator(task_id="bad", script="true", components="cpus=2")
    with pytest.raises(InvalidJobSpecError, match="cannot be combined with array"):
        SlurmJobOperator(task_id="arr", script="true", components=[POST], array="0-3")
    with pytest.raises(InvalidJobSpecError, match="cannot be combined with array_batch"):
        SlurmJobOperator(task_id="ab", script="true", components=[POST], array_batch=10)


def test_components_are_part_of_the_submission_digest() -> None:
    """A retry whose groups changed must not adopt the earlier try's job."""
    plain = _spec(components=())
    assert submission_digest(_spec()) != submission_digest(plain)
    assert submission_digest(_spec()) != submission_digest(_spec(components=[{**POST, "memory": "4G"}]))
    assert submission_digest(_spec()) == submission_digest(_spec(components=[Resources.from_dict(POST)]))


@pytest.mark.parametrize("backend", [
    lambda tmp: LocalBackend(base_dir=str(tmp)),
    lambda tmp: KubernetesBackend("kubernetes_default"),
    lambda tmp: GridEngineBackend("gridengine_default", base_dir=str(tmp)),
], ids=["local", "kubernetes", "gridengine"])
def test_other_backends_refuse_a_hetjob_before_submitting(backend, tmp_path) -> None:
    chosen = backend(tmp_path)
    with pytest.raises(InvalidJobSpecError, match="heterogeneous jobs need Slurm"):
        chosen.submit(_spec(), workdir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing started
    assert SlurmBackend.runs_hetjobs and not type(chosen).runs_hetjobs


# ------------------------------------------------------------------ the sbatch script
def test_script_has_group_zero_then_one_hetjob_block_per_component() -> None:
    spec = _spec(components=[POST, Resources(ntasks=3, time_limit=600)])
    script = build_sbatch_script(spec, "/scratch/run")
    header = script.split(": hpcai-directives-end")[0].splitlines()
    breaks = [i for i, line in enumerate(header) if line == "#SBATCH hetjob"]
    assert len(breaks) == 2
    group0, group1, group2 = header[:breaks[0]], header[breaks[0] + 1:breaks[1]], header[breaks[1] + 1:]
    assert "#SBATCH --job-name=coupled" in group0 and "#SBATCH --gres=gpu:a100:1" in group0
    assert "#SBATCH --cpus-per-task=4" in group0 and "#SBATCH --partition=gpu" in group0
    assert any(line.startswith("#SBATCH --comment=hpcai-tag=") for line in group0)
    assert group1 == ["#SBATCH --nodes=1", "#SBATCH --ntasks=1", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=2048M",
                      "#SBATCH --partition=cpu", "#SBATCH --qos=post"]
    assert group2 == ["#SBATCH --nodes=1", "#SBATCH --ntasks=3", "#SBATCH --cpus-per-task=1", "#SBATCH --time=00:10:00"]
    # job-wide options (name, output, tag) are said once: sbatch carries them over to every group
    assert sum(line.startswith("#SBATCH --output=") for line in header) == 1
    assert script.rstrip().endswith("wait") and "srun --het-group=1 post" in script


def test_plain_jobs_get_no_hetjob_line() -> None:
    assert "hetjob" not in build_sbatch_script(_spec(components=()), "/scratch/run")


def test_a_hetjob_directive_in_the_users_script_stays_inert() -> None:
    """The user's own '#SBATCH hetjob' sits after the directive block: sbatch never reads it."""
    script = build_sbatch_script(_spec(components=(), script="#SBATCH hetjob\n#SBATCH --mem=1T\ntrue"),
                                 "/scratch/run")
    head, _, body = script.partition(": hpcai-directives-end")
    assert "hetjob" not in head and "#SBATCH hetjob" in body


# ------------------------------------------------------------------ the REST body
def _schema(document: dict, name: str) -> set[str]:
    return set(document["components"]["schemas"][name]["properties"])


@pytest.mark.parametrize("version", ["v0.0.38", "v0.0.40", "v0.0.41", "v0.0.42"])
def test_rest_body_is_a_jobs_list_the_real_server_describes(version: str) -> None:
    body = rest_api.submit_body(_spec(), "/home/hpcai", version)
    assert "job" not in body and len(body["jobs"]) == 2
    solver, post = body["jobs"]
    if version == "v0.0.38":
        document = json.loads(gzip.decompress((FIXTURES / "slurm_hetjob" / "openapi-22.05.json.gz").read_bytes()))
        assert set(body) == {"script", "jobs"} and set(body) <= _schema(document, "v0.0.38_job_submission")
        fields = _schema(document, "v0.0.38_job_properties")
        assert post["cpus_per_task"] == 2 and post["memory_per_node"] == 2048 and post["partition"] == "cpu"
    else:
        document = json.loads(gzip.decompress((FIXTURES / "slurmrestd" / "openapi-24.11.json.gz").read_bytes()))
        assert set(body) <= _schema(document, f"{version}_job_submit_req")
        fields = _schema(document, f"{version}_job_desc_msg")
        assert post["memory_per_node"] == {"set": True, "infinite": False, "number": 2048}
        assert ("script" in body) == (version == "v0.0.40") and ("script" in solver) == (version != "v0.0.40")
        assert "script" not in post
    assert set(solver) <= fields and set(post) <= fields
    assert post["qos"] == "post" and "qos" not in solver and solver["partition"] == "gpu"
    assert post["comment"] == solver["comment"] and post["name"] == solver["name"] == "coupled"
    assert rest_api.submit_body(_spec(components=()), "/home/hpcai", version).get("job") is not None


def test_a_groups_values_are_validated_and_quoted_like_group_zeros() -> None:
    """Every value of a further group reaches the script through the same checks and quoting."""
    with pytest.raises(InvalidJobSpecError, match="het group 1"):
        _spec(components=[{"partition": "cpu; touch /tmp/pwned"}])
    script = build_sbatch_script(_spec(components=[{"constraint": "a100&nvlink|h100"}]), "/scratch/run")
    assert "#SBATCH --constraint='a100&nvlink|h100'" in script.split("#SBATCH hetjob")[1]


@pytest.mark.parametrize(("version", "key", "value"), [("v0.0.38", "exclude", "n1,n2"),
                                                       ("v0.0.42", "excluded_nodes", ["n1", "n2"])])
def test_excluded_nodes_reach_every_group_over_rest(version: str, key: str, value) -> None:
    """sbatch carries --exclude over to every group; the REST body must say it for each."""
    body = rest_api.submit_body(_spec(exclude_nodes="n1,n2"), "/home/hpcai", version)
    assert [job[key] for job in body["jobs"]] == [value, value]
