"""KubernetesBackend through the real cncf hooks, against the stateful fake API server."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.backends import get_backend
from airflow_provider_hpcai.backends.kubernetes import KubernetesBackend
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.outcome import failure_for
from airflow_provider_hpcai.slurm.states import Phase
from airflow_provider_hpcai.spec import JobSpec, make_tag
from tests.unit.kubernetes.fake_k8s import FakeCluster, Outcome
from tests.unit.kubernetes.helpers import ListLog, validate_k8s, validate_mpijob

TAG = make_tag("dag", "stage", "run-1")


def _spec(**resources: object) -> JobSpec:
    return JobSpec(
        name="dag.stage",
        script="echo hello",
        tag=TAG,
        resources=Resources(**({"memory": "2G", "time_limit": 600} | resources)),
    )


def _run(backend: KubernetesBackend, spec: JobSpec, log: ListLog) -> tuple[dict, Exception | None]:
    ref = backend.submit(spec)
    status = backend.wait(ref, poll_interval=0, log=log)
    requested = spec.resources.to_dict()
    result = backend.result(
        ref,
        state=status.state,
        exit_code=status.exit_code,
        requested=requested,
        offsets=ref.extra.get("offsets"),
        log=log,
    )
    return result, failure_for(result, backend.stderr_tail(ref))


def test_registry_builds_this_backend(cluster: FakeCluster) -> None:
    backend = get_backend("kubernetes")
    assert isinstance(backend, KubernetesBackend) and backend.can_defer
    assert backend.conn_id == "kubernetes_default"


def test_job_runs_and_its_log_reaches_the_task_log(cluster: FakeCluster, task_log: ListLog) -> None:
    cluster.plan(Outcome("succeed", log="step 1\nstep 2\nresult=42\n", running_reads=2))
    result, failure = _run(KubernetesBackend(), _spec(), task_log)
    assert failure is None
    assert result["state"] == "COMPLETED" and result["exit_code"] == 0
    assert result["namespace"] == "hpc" and result["kind"] == "Job" and result["tag"] == TAG
    assert result["elapsed_seconds"] == 100.0 and result["node_list"] == "node-1"
    # every log line exactly once, in order, although the log was read while it grew
    lines = [line for line in task_log.lines if line.startswith(f"[{result['job_id']}]")]
    assert [line.split("] ", 1)[1] for line in lines] == ["step 1", "step 2", "result=42"]
    assert "is RUNNING" in task_log.text
    created = cluster.created[0]
    validate_k8s({k: v for k, v in created.items() if k != "status"})  # what reached the API server
    assert created["metadata"]["namespace"] == "hpc"  # from the connection's namespace extra
    assert created["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/hpcai:1.0"


@pytest.mark.parametrize(
    ("outcome", "error", "text"),
    [
        ("fail", exc.SlurmJobFailed, "exit code 3"),
        ("oom", exc.SlurmOutOfMemory, "OOMKilled"),
        ("deadline", exc.SlurmJobTimeout, "time limit"),
        ("evicted", exc.SlurmJobPreempted, "evicted"),
        ("preempted", exc.SlurmJobPreempted, "PreemptionByScheduler"),
        ("node_lost", exc.SlurmNodeFailure, "DeletionByTaintManager"),
        ("image_pull", exc.SlurmJobFailed, "Check the image name"),
    ],
)
def test_each_failure_raises_the_shared_exception(
    cluster: FakeCluster, task_log: ListLog, outcome: str, error: type, text: str
) -> None:
    cluster.plan(Outcome(outcome))
    result, failure = _run(KubernetesBackend(), _spec(), task_log)
    assert type(failure) is error
    assert text in str(failure)
    assert result["failure"] is not None


def test_a_job_stuck_on_a_bad_image_is_deleted(cluster: FakeCluster, task_log: ListLog) -> None:
    cluster.plan(Outcome("image_pull"))
    result, _ = _run(KubernetesBackend(), _spec(), task_log)
    assert cluster.deleted == [("Job", "hpc", result["job_id"])]
    assert not cluster.pods


def test_cancel_deletes_the_job_and_its_pods(cluster: FakeCluster, task_log: ListLog) -> None:
    cluster.plan(Outcome("hang"))
    backend = KubernetesBackend()
    ref = backend.submit(_spec())
    assert backend.status(ref).phase is Phase.ACTIVE
    backend.cancel(ref)
    assert cluster.deleted == [("Job", "hpc", ref.job_id)] and not cluster.pods
    backend.cancel(ref)  # already gone: no error
    assert backend.status(ref) is None
    # a wait on a deleted job ends as cancelled, and says why
    status = backend.wait(ref, poll_interval=0, log=task_log)
    assert status.state == "CANCELLED" and "deleted" in status.reason


def test_reattach_finds_the_live_job_by_its_tag(cluster: FakeCluster) -> None:
    backend = KubernetesBackend()
    cluster.plan(Outcome("succeed"), Outcome("hang"))
    finished = backend.submit(_spec())
    backend.wait(finished, poll_interval=0, log=ListLog())
    live = backend.submit(_spec())
    other = backend.submit(_spec().replace(tag=make_tag("dag", "other", "run-1")))
    found = backend.find_live(TAG)
    assert found is not None and found.job_id == live.job_id != other.job_id
    assert found.extra == {"namespace": "hpc", "kind": "Job", "conn_id": "kubernetes_default"}
    assert backend.find_live(make_tag("dag", "never", "run-1")) is None


def test_reattach_skips_a_job_that_can_never_start(cluster: FakeCluster) -> None:
    backend = KubernetesBackend()
    cluster.plan(Outcome("image_pull"))
    ref = backend.submit(_spec())
    backend.status(ref)
    assert backend.find_live(TAG) is None


def test_reattach_works_without_the_mpi_operator(cluster: FakeCluster) -> None:
    cluster.crd_installed = False
    assert KubernetesBackend().find_live(TAG) is None


def test_multi_node_job_runs_as_an_mpijob(cluster: FakeCluster, task_log: ListLog) -> None:
    cluster.plan(Outcome("succeed", log="rank 0 of 8\nsum=3.14\n"))
    backend = KubernetesBackend(namespace="mpi", mpi_implementation="MPICH")
    result, failure = _run(backend, _spec(nodes=2, ntasks=8), task_log)
    assert failure is None and result["kind"] == "MPIJob" and result["namespace"] == "mpi"
    manifest = cluster.created[0]
    validate_mpijob({k: v for k, v in manifest.items() if k != "status"})
    assert manifest["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 2
    assert "sum=3.14" in task_log.text  # the launcher's log
    assert result["node_list"] == "node-1,node-2,node-3"


def test_mpijob_worker_oom_raises_out_of_memory(cluster: FakeCluster, task_log: ListLog) -> None:
    cluster.plan(Outcome("oom"))
    _, failure = _run(KubernetesBackend(), _spec(nodes=2, ntasks=4), task_log)
    assert isinstance(failure, exc.SlurmOutOfMemory)


def test_mpijob_cancel_and_reattach(cluster: FakeCluster) -> None:
    cluster.plan(Outcome("hang"))
    backend = KubernetesBackend()
    ref = backend.submit(_spec(nodes=2, ntasks=2))
    assert backend.find_live(TAG).job_id == ref.job_id
    backend.cancel(ref)
    assert cluster.deleted == [("MPIJob", "hpc", ref.job_id)] and not cluster.pods


def test_mpijob_without_the_operator_fails_clearly(cluster: FakeCluster) -> None:
    cluster.crd_installed = False
    with pytest.raises(Exception, match="mpijobs.kubeflow.org"):
        KubernetesBackend().submit(_spec(nodes=2, ntasks=2))


def test_options_and_bad_input(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidJobSpecError, match="mpi=False"):
        KubernetesBackend(mpi=False).submit(_spec(nodes=2, ntasks=2))
    with pytest.raises(InvalidJobSpecError, match="unknown Kubernetes options"):
        KubernetesBackend(namespce="x").submit(_spec())
    monkeypatch.delenv("AIRFLOW__HPCAI__KUBERNETES_IMAGE")
    with pytest.raises(InvalidJobSpecError, match="no container image"):
        KubernetesBackend().submit(_spec())
    assert not cluster.created


def test_slurm_only_options_are_ignored_with_a_warning(cluster: FakeCluster) -> None:
    backend, hook_log = KubernetesBackend(), ListLog()
    backend.hook._log = hook_log
    spec = JobSpec(name="dag.stage", script="true", tag=make_tag("d", "t", "r"),
                   resources=Resources(partition="gpu", reservation="maint", exclusive=True, memory="1G"))
    backend.submit(spec)
    (warning,) = [line for line in hook_log.lines if line.startswith("Ignoring")]
    assert "partition, reservation, exclusive" in warning and "node_selector" in warning
    backend.submit(JobSpec(name="dag.stage2", script="true", resources=Resources(memory="1G")))
    assert sum(line.startswith("Ignoring") for line in hook_log.lines) == 1
