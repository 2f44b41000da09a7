"""Parsing and validation of dask connections, and the arguments built from them."""

from __future__ import annotations

import json
import os
import re

import pytest

from airflow_provider_hpcai.dask.builders import (
    IN_PROCESS_WORKER_MEMORY,
    kubernetes_cluster_kwargs,
    local_cluster_kwargs,
    new_tag,
    slurm_cluster_kwargs,
)
from airflow_provider_hpcai.dask.config import (
    AddressClusterConfig,
    KubernetesClusterConfig,
    LocalClusterConfig,
    SlurmClusterConfig,
    parse_cluster_config,
)
from airflow_provider_hpcai.dask.errors import DaskConfigurationError


def test_no_extras_is_a_small_local_cluster() -> None:
    cfg = parse_cluster_config(None)
    assert cfg == LocalClusterConfig(n_workers=2, threads_per_worker=1, memory_limit="2048MiB", processes=True)
    assert local_cluster_kwargs(cfg) == {
        "n_workers": 2, "threads_per_worker": 1, "memory_limit": "2048MiB", "processes": True,
        "dashboard_address": "127.0.0.1:0",
    }


def test_local_values_are_read() -> None:
    cfg = parse_cluster_config({"cluster": "local", "n_workers": 3, "threads_per_worker": 2,
                                "memory_limit": "512MiB", "processes": False})
    assert cfg == LocalClusterConfig(n_workers=3, threads_per_worker=2, memory_limit="512MiB", processes=False)


@pytest.mark.parametrize(
    ("extras", "host", "port", "address"),
    [
        ({"cluster": "address", "address": "tcp://sched.example:8786"}, None, None, "tcp://sched.example:8786"),
        ({"cluster": "address", "address": "10.0.0.5:9000"}, None, None, "tcp://10.0.0.5:9000"),
        ({"cluster": "address", "address": "tls://[::1]:8786"}, None, None, "tls://[::1]:8786"),
        ({}, "sched", None, "tcp://sched:8786"),
        ({}, "sched", 9999, "tcp://sched:9999"),
    ],
)
def test_address_forms(extras: dict, host: str | None, port: int | None, address: str) -> None:
    cfg = parse_cluster_config(extras, host=host, port=port)
    assert isinstance(cfg, AddressClusterConfig)
    assert cfg.address == address


def test_slurm_values_are_normalised() -> None:
    cfg = parse_cluster_config({
        "cluster": "slurm", "slurm_conn_id": "slurm_local", "cores": 2, "memory": "1.5GiB", "walltime": "90",
        "jobs": 3, "queue": "debug", "account": "hpcai", "python": "/opt/venv/bin/python",
        "job_extra_directives": ["--constraint=avx2", "--exclusive"], "wait_for_workers": 3,
    })
    assert isinstance(cfg, SlurmClusterConfig)
    assert cfg.memory == "1536MiB"
    assert cfg.walltime == "01:30:00"  # Slurm's bare number is minutes
    assert cfg.job_extra_directives == ("--constraint=avx2", "--exclusive")
    assert cfg.n_workers == 3


HOSTILE_SLURM = [
    ({"queue": "debug\n#SBATCH --uid=0"}, "queue"),
    ({"queue": "debug; rm -rf /"}, "queue"),
    ({"queue": "debug\n"}, "queue"),
    ({"job_extra_directives": ["--exclusive\n"]}, "job_extra_directives[0]"),
    ({"python": "/usr/bin/python3\n"}, "python"),
    ({"queue": "$(id)"}, "queue"),
    ({"account": "a b"}, "account"),
    ({"memory": "1G\n#SBATCH --exclusive"}, "memory"),
    ({"memory": "1G; touch /tmp/pwned"}, "memory"),
    ({"memory": "1024"}, "memory"),  # unit required: bytes or MiB would be a guess
    ({"memory": 1024}, "memory"),
    ({"walltime": "00:30:00\nsleep 1"}, "walltime"),
    ({"walltime": "`reboot`"}, "walltime"),
    ({"walltime": "00:00:00"}, "walltime"),
    ({"python": "python3"}, "python"),
    ({"python": "/usr/bin/python3 -c 'import os'"}, "python"),
    ({"python": "/usr/bin/python3;id"}, "python"),
    ({"python": "/opt/../bin/python"}, "python"),
    ({"log_directory": "/tmp/logs\n#SBATCH -o /etc/x"}, "log_directory"),
    ({"interface": "eth0; id"}, "interface"),
    ({"job_extra_directives": "--exclusive"}, "list of strings"),
    ({"job_extra_directives": ["--constraint=a b"]}, "job_extra_directives[0]"),
    ({"job_extra_directives": ["--exclusive", "--qos=x\n#SBATCH --uid=0"]}, "job_extra_directives[1]"),
    ({"job_extra_directives": ["--qos=$(id)"]}, "job_extra_directives[0]"),
    ({"job_extra_directives": ["#SBATCH --exclusive"]}, "job_extra_directives[0]"),
    ({"job_extra_directives": ["-p debug"]}, "job_extra_directives[0]"),
    ({"job_extra_directives": ["--comment=mine"]}, "set by the hook"),
    ({"job_extra_directives": ["--partition=long"]}, "use the extra 'queue'"),
    ({"job_extra_directives": [7]}, "job_extra_directives[0]"),
    ({"jobs": 0}, "jobs"),
    ({"jobs": True}, "jobs"),
    ({"cores": "two"}, "cores"),
    ({"wait_for_workers": 5, "jobs": 2}, "wait_for_workers"),
    ({"slurm_conn_id": "a;b"}, "slurm_conn_id"),
    ({"partition": "debug"}, "unknown extra"),
]


@pytest.mark.parametrize(("bad", "named"), HOSTILE_SLURM, ids=[json.dumps(b)[:40] for b, _ in HOSTILE_SLURM])
def test_hostile_slurm_values_are_rejected_with_the_key_named(bad: dict, named: str) -> None:
    with pytest.raises(DaskConfigurationError) as err:
        parse_cluster_config({"cluster": "slurm", **bad}, conn_id="dask_hpc")
    assert "dask connection 'dask_hpc'" in str(err.value)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("extras", "named"),
    [
        ({"cluster": "spark"}, "use one of local, address, slurm, kubernetes"),
        ({"cluster": "local", "n_workers": 0}, "n_workers"),
        ({"cluster": "local", "processes": "yes"}, "processes"),
        ({"cluster": "local", "memory_limit": "lots"}, "memory_limit"),
        ({"cluster": "local", "jobs": 2}, "unknown extra(s) 'jobs'"),
        ({"cluster": "address"}, "needs the extra 'address'"),
        ({"cluster": "address", "address": "http://x:8786"}, "not a scheduler address"),
        ({"cluster": "address", "address": "tcp://x:99999"}, "not a scheduler address"),
        ({"cluster": "address", "address": "tcp://x:8786\n"}, "not a scheduler address"),
        ({"cluster": "kubernetes", "name": "Bad_Name"}, "DNS label"),
        ({"cluster": "kubernetes", "namespace": "hpc;x"}, "DNS label"),
        ({"cluster": "kubernetes", "image": "img:1 --privileged"}, "image reference"),
        ({"cluster": "kubernetes", "resources": {"requests": {"cpu": "lots"}}}, "Kubernetes quantity"),
        ({"cluster": "kubernetes", "resources": {"requests": {"gpu": "1"}}}, "only set 'cpu' and 'memory'"),
        ({"cluster": "kubernetes", "env": {"BAD-NAME": "1"}}, "env"),
        ({"cluster": "kubernetes", "scheduler_service_type": "Ingress"}, "ClusterIP"),
    ],
)
def test_other_bad_values_are_rejected(extras: dict, named: str) -> None:
    with pytest.raises(DaskConfigurationError, match=re.escape(named)):
        parse_cluster_config(extras)


def test_slurm_kwargs_tag_the_jobs_and_keep_the_directives() -> None:
    cfg = parse_cluster_config({"cluster": "slurm", "jobs": 2, "memory": "1GiB", "walltime": "00:10:00",
                                "job_extra_directives": ["--constraint=avx2"], "interface": "lo"})
    tag = new_tag()
    kwargs = slurm_cluster_kwargs(cfg, tag=tag, python="/opt/venv/bin/python", log_directory="/tmp/logs",
                                  queue="debug")
    assert re.fullmatch(r"hpcai-[0-9a-f]{20}", tag)
    assert kwargs["job_extra_directives"] == [f"--comment=hpcai-tag={tag}", "--constraint=avx2"]
    assert kwargs["queue"] == "debug" and kwargs["memory"] == "1024MiB" and kwargs["walltime"] == "00:10:00"
    assert kwargs["interface"] == "lo" and kwargs["scheduler_options"]["interface"] == "lo"
    with pytest.raises(DaskConfigurationError, match="partition"):
        slurm_cluster_kwargs(cfg, tag=tag, python="/opt/venv/bin/python", log_directory="/tmp", queue="a\nb")
    with pytest.raises(DaskConfigurationError, match="python"):
        slurm_cluster_kwargs(cfg, tag=tag, python="/opt/my venv/python", log_directory="/tmp", queue=None)


def test_the_batch_script_dask_jobqueue_renders_holds_exactly_the_validated_values(tmp_path) -> None:
    """Render the real script (no Slurm needed: nothing is submitted before scale())."""
    from dask_jobqueue import SLURMCluster

    cfg = parse_cluster_config({"cluster": "slurm", "jobs": 2, "memory": "1GiB", "walltime": "00:10:00",
                                "queue": "debug", "account": "hpcai", "job_name": "hpcai-dask-unit",
                                "job_extra_directives": ["--constraint=avx2", "--exclusive"]})
    tag = new_tag()
    kwargs = slurm_cluster_kwargs(cfg, tag=tag, python="/opt/venv/bin/python", log_directory=str(tmp_path),
                                  queue="debug")
    cluster = SLURMCluster(**kwargs)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH -J hpcai-dask-unit",
        f"#SBATCH -e {tmp_path}/hpcai-dask-unit-%J.err",
        f"#SBATCH -o {tmp_path}/hpcai-dask-unit-%J.out",
        "#SBATCH -p debug",
        "#SBATCH -A hpcai",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=1G",
        "#SBATCH -t 00:10:00",
        f"#SBATCH --comment=hpcai-tag={tag}",
        "#SBATCH --constraint=avx2",
        "#SBATCH --exclusive",
    ]
    command = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert len(command) == 1 and command[0].startswith("/opt/venv/bin/python -m distributed.cli.dask_worker ")


def test_kubernetes_kwargs() -> None:
    cfg = parse_cluster_config({
        "cluster": "kubernetes", "image": "ghcr.io/dask/dask:2026.8.0", "n_workers": 3,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "env": {"EXTRA_PIP_PACKAGES": "xarray"}, "idle_timeout": 600,
    })
    assert isinstance(cfg, KubernetesClusterConfig)
    assert kubernetes_cluster_kwargs(cfg, name="hpcai-dask-1", namespace="hpc") == {
        "name": "hpcai-dask-1",
        "namespace": "hpc",
        "image": "ghcr.io/dask/dask:2026.8.0",
        "n_workers": 3,
        "env": {"EXTRA_PIP_PACKAGES": "xarray"},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "scheduler_service_type": "ClusterIP",
        "resource_timeout": 300,
        "idle_timeout": 600,
        "shutdown_on_close": True,
    }
    with pytest.raises(DaskConfigurationError, match="namespace"):
        kubernetes_cluster_kwargs(cfg, name="x", namespace="Not OK")


def test_the_connection_form_is_valid_provider_info() -> None:
    import airflow
    import jsonschema

    from airflow_provider_hpcai.dask.provider_info import dask_connection_type
    from airflow_provider_hpcai.get_provider_info import get_provider_info

    info = get_provider_info()
    info["connection-types"] = [*info["connection-types"], dask_connection_type()]
    with open(os.path.join(os.path.dirname(airflow.__file__), "provider_info.schema.json")) as handle:
        jsonschema.validate(info, json.load(handle))
    fields = dask_connection_type()["conn-fields"]
    assert fields["cluster"]["schema"]["enum"] == ["local", "address", "slurm", "kubernetes"]
    assert fields["adaptive"]["schema"]["type"] == ["object", "null"]
    assert fields["dashboard_address"]["schema"]["default"] == "127.0.0.1:0"


def test_workers_in_this_process_never_pause_for_memory():
    """A threaded worker measures the whole process (the Airflow task): with a limit it pauses,
    holding its tasks for ever, once the task's own memory passes 80 % of it."""
    cfg = parse_cluster_config({"cluster": "local", "processes": False, "memory_limit": "512MiB"})
    assert local_cluster_kwargs(cfg)["memory_limit"] == "512MiB"  # adaptive sizes by it
    assert IN_PROCESS_WORKER_MEMORY["distributed.worker.memory.pause"] is False
