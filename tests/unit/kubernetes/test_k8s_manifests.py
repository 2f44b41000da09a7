"""Job and MPIJob manifests: valid against the official schemas, and saying what the spec asked."""

from __future__ import annotations

import kubernetes_validate
import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.kubernetes.manifests import (
    KubernetesSettings,
    format_quantity,
    job_manifest,
    tag_selector,
    workload_name,
)
from airflow_provider_hpcai.kubernetes.mpijob import mpijob_manifest, slots_per_worker
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.unit.kubernetes.helpers import validate_k8s, validate_mpijob

TAG = make_tag("dag", "task", "run1")
SETTINGS = KubernetesSettings(namespace="hpc", image="registry.example/sim:2.1")
NASTY = 'it\'s $(rm -rf /) `id` "quoted"\nnext line; echo $HOME'


def _spec(**resources: object) -> JobSpec:
    return JobSpec(
        name="sim.heat_2d",
        script="set -e\npython -m simulation_kernels.heat --n 64\n",
        resources=Resources(**resources),
        environment={"OMP_NUM_THREADS": "4", "NASTY": NASTY},
        tag=TAG,
    )


def _container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_cpu_job_is_valid_and_carries_the_request() -> None:
    manifest = job_manifest(
        _spec(ntasks=2, cpus_per_task=3, memory="6G", time_limit="00:30:00"),
        SETTINGS,
        name="sim-heat-2d-abc12345",
    )
    validate_k8s(manifest)
    container = _container(manifest)
    assert container["resources"] == {
        "requests": {"cpu": "6", "memory": "6Gi"},
        "limits": {"cpu": "6", "memory": "6Gi"},
    }
    assert manifest["spec"]["activeDeadlineSeconds"] == 1800
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container["image"] == "registry.example/sim:2.1"
    assert manifest["metadata"]["namespace"] == "hpc"
    # no GPU scheduling on a CPU job
    pod = manifest["spec"]["template"]["spec"]
    assert "tolerations" not in pod and "nodeSelector" not in pod and "priorityClassName" not in pod


def test_script_and_environment_travel_as_data_never_through_a_shell_line() -> None:
    spec = _spec()
    container = _container(job_manifest(spec, SETTINGS, name="x-abc12345"))
    assert container["command"] == ["/bin/bash", "-c", spec.script]
    assert {"name": "NASTY", "value": NASTY} in container["env"]
    assert {"name": "OMP_NUM_THREADS", "value": "4"} in container["env"]
    assert "args" not in container


def test_tag_label_on_job_and_pods_matches_the_reattach_selector() -> None:
    manifest = job_manifest(_spec(), SETTINGS, name="x-abc12345")
    selector = dict(term.split("=") for term in tag_selector(TAG).split(","))
    for labels in (manifest["metadata"]["labels"], manifest["spec"]["template"]["metadata"]["labels"]):
        assert selector.items() <= labels.items()
        assert labels["hpcai.io/job"] == "x-abc12345"
    assert manifest["metadata"]["annotations"]["hpcai.io/job-name"] == "sim.heat_2d"


def test_gpu_job_gets_gpu_limits_selector_toleration_and_priority() -> None:
    manifest = job_manifest(_spec(gpus="NVIDIA-A100-SXM4-80GB:2", memory="32G"), SETTINGS, name="g-abc12345")
    validate_k8s(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert _container(manifest)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "hpcai-gpu"


def test_settings_reach_the_pod_spec() -> None:
    settings = KubernetesSettings(
        namespace="team-a",
        image="img:1",
        service_account="hpcai-runner",
        image_pull_secrets=("regcred",),
        priority_class="batch-low",
        node_selector={"pool": "hpc"},
        tolerations=({"key": "dedicated", "operator": "Equal", "value": "hpc", "effect": "NoSchedule"},),
        ttl_seconds_after_finished=600,
    )
    manifest = job_manifest(
        _spec().replace(exclude_nodes="node-7,node-9"), settings, name="s-abc12345", workdir="/scratch/run1"
    )
    validate_k8s(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hpcai-runner"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["nodeSelector"] == {"pool": "hpc"}
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 600
    assert _container(manifest)["workingDir"] == "/scratch/run1"
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-7", "node-9"]}
    ]


def test_schema_validation_would_catch_a_broken_manifest() -> None:
    manifest = job_manifest(_spec(), SETTINGS, name="x-abc12345")
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["comand"] = container.pop("command")  # a misspelt field: strict validation refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(manifest)
    container["command"] = " ".join(container.pop("comand"))  # a string where the API wants a list
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(manifest)


@pytest.mark.parametrize("job_name", ["sim.heat_2d", "A" * 128, "x", "UPPER+case=@odd..name", "--"])
def test_workload_names_are_dns_labels_and_unique_per_try(job_name: str) -> None:
    first, second = workload_name(job_name), workload_name(job_name)
    assert first != second
    for name in (first, second, workload_name(job_name, max_len=45)):
        assert len(name) <= 63 and name == name.lower() and name[0].isalnum() and name[-1].isalnum()
    assert len(workload_name(job_name, max_len=45)) <= 45


def test_quantities() -> None:
    assert format_quantity(4 * 1024**3) == "4Gi"
    assert format_quantity(1536 * 1024**2) == "1536Mi"
    assert format_quantity(1024**2 + 1) == "2Mi"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"array": "0-9"}, "job arrays"),
        ({"image": None}, "no container image"),
        ({"exclude_nodes": "node[1-3]"}, "one by one"),
    ],
)
def test_what_a_job_cannot_express_is_refused_with_what_to_do(change: dict, message: str) -> None:
    settings = KubernetesSettings(namespace="hpc")
    spec = _spec().replace(image="img:1").replace(**change)
    with pytest.raises(InvalidJobSpecError, match=message):
        job_manifest(spec, settings, name="x-abc12345")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidJobSpecError, match="Kubernetes name"):
        KubernetesSettings(namespace="Team_A")
    with pytest.raises(InvalidJobSpecError, match="label key"):
        KubernetesSettings(node_selector={"bad key": "x"})
    with pytest.raises(InvalidJobSpecError, match="mpi_implementation"):
        KubernetesSettings(mpi_implementation="LAM")
    with pytest.raises(InvalidJobSpecError, match="unknown Kubernetes options"):
        KubernetesSettings.from_options({"namespce": "hpc"})
    with pytest.raises(InvalidJobSpecError, match="container image"):
        KubernetesSettings(image="bad image name")


# ---------------------------------------------------------------------------------- MPIJob
def test_mpijob_is_valid_against_the_crd_and_pod_schemas() -> None:
    spec = _spec(nodes=2, ntasks=8, cpus_per_task=2, memory="16G", gpus=1, time_limit=3600)
    manifest = mpijob_manifest(
        spec,
        SETTINGS.__class__(namespace="hpc", image="img:1", mpi_implementation="MPICH"),
        name="sim-heat-2d-abc12345",
    )
    validate_mpijob(manifest)
    body = manifest["spec"]
    assert body["slotsPerWorker"] == 4
    assert body["mpiImplementation"] == "MPICH"
    assert body["runPolicy"]["activeDeadlineSeconds"] == 3600
    launcher = body["mpiReplicaSpecs"]["Launcher"]
    worker = body["mpiReplicaSpecs"]["Worker"]
    assert launcher["replicas"] == 1 and worker["replicas"] == 2
    launch_container = launcher["template"]["spec"]["containers"][0]
    work_container = worker["template"]["spec"]["containers"][0]
    assert launch_container["command"] == ["/bin/bash", "-c", spec.script]
    assert {"name": "HPCAI_NTASKS", "value": "8"} in launch_container["env"]
    assert work_container["command"] == ["/usr/sbin/sshd", "-De"]
    # per worker: its slots' CPUs, the per-node memory and GPUs
    assert work_container["resources"]["limits"] == {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert "nvidia.com/gpu" not in launch_container["resources"]["limits"]
    assert worker["template"]["spec"]["priorityClassName"] == "hpcai-gpu"
    assert "priorityClassName" not in launcher["template"]["spec"]
    assert worker["template"]["metadata"]["labels"]["hpcai.io/role"] == "worker"
    assert launcher["template"]["metadata"]["labels"]["hpcai.io/tag"] == TAG


def test_crd_schema_catches_a_misspelt_field() -> None:
    import jsonschema

    manifest = mpijob_manifest(_spec(nodes=2, ntasks=2), SETTINGS, name="m-abc12345")
    manifest["spec"]["slotPerWorker"] = manifest["spec"].pop("slotsPerWorker")
    with pytest.raises(jsonschema.ValidationError):
        validate_mpijob(manifest)


@pytest.mark.parametrize(("ntasks", "nodes", "slots"), [(8, 2, 4), (7, 2, 4), (3, 3, 1), (64, 4, 16)])
def test_slots_per_worker(ntasks: int, nodes: int, slots: int) -> None:
    assert slots_per_worker(ntasks, nodes) == slots


def test_one_node_job_refuses_several_nodes() -> None:
    with pytest.raises(InvalidJobSpecError, match="MPIJob"):
        job_manifest(_spec(nodes=2, ntasks=2), SETTINGS, name="x-abc12345")


def test_ntasks_per_node_sets_the_mpi_slots_per_worker() -> None:
    manifest = mpijob_manifest(_spec(nodes=3, ntasks=6, ntasks_per_node=4), SETTINGS, name="m-abc12345")
    assert manifest["spec"]["slotsPerWorker"] == 4  # asked for, not 6 spread over 3 (= 2)
    validate_mpijob(manifest)
    spread = mpijob_manifest(_spec(nodes=3, ntasks=6), SETTINGS, name="m-abc12346")
    assert spread["spec"]["slotsPerWorker"] == 2
