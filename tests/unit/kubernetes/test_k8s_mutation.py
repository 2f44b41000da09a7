"""The pod_mutation_hook applying advisor decisions to pods."""

from __future__ import annotations

import json

from kubernetes.client import models as k8s

from airflow_provider_hpcai.kubernetes.mutation import (
    DECISION_ANNOTATION,
    apply_advisor_decision,
    pod_mutation_hook,
)


def _pod(annotation: object = None, containers: list[str] | None = None) -> k8s.V1Pod:
    annotations = (
        {DECISION_ANNOTATION: annotation if isinstance(annotation, str) else json.dumps(annotation)}
        if annotation is not None
        else None
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="p", annotations=annotations),
        spec=k8s.V1PodSpec(
            containers=[
                k8s.V1Container(
                    name=name,
                    image="img:1",
                    resources=k8s.V1ResourceRequirements(
                        requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi"}
                    ),
                )
                for name in containers or ["airflow-xcom-sidecar", "base"]
            ]
        ),
    )


def _res(pod: k8s.V1Pod, name: str) -> k8s.V1ResourceRequirements:
    return next(c for c in pod.spec.containers if c.name == name).resources


def test_decision_rewrites_the_main_container_and_the_deadline() -> None:
    pod = _pod(
        {
            "applied": {
                "memory": 6 * 1024**3,
                "time_limit": 5400,
                "cpus_per_task": 2,
                "ntasks": 2,
                "gpus": 1,
            },
            "model": "champion",
        }
    )
    pod_mutation_hook(pod)
    res = _res(pod, "base")
    assert res.requests == {"cpu": "4", "memory": "6Gi", "nvidia.com/gpu": "1"}
    assert res.limits == {"cpu": "4", "memory": "6Gi", "nvidia.com/gpu": "1"}
    assert pod.spec.active_deadline_seconds == 5400
    assert _res(pod, "airflow-xcom-sidecar").limits == {"cpu": "1", "memory": "1Gi"}  # sidecar untouched


def test_only_given_keys_change() -> None:
    pod = apply_advisor_decision(_pod(containers=["job"]), {"applied": {"memory": 3 * 1024**3 + 1}})
    assert _res(pod, "job").limits == {"cpu": "1", "memory": "3073Mi"}
    assert pod.spec.active_deadline_seconds is None


def test_pods_without_a_decision_are_left_alone_and_bad_ones_never_break_the_pod() -> None:
    for annotation in (None, "not json", {"applied": {"memory": -5, "time_limit": 60}}, {"applied": "x"}):
        pod = _pod(annotation)
        before = pod.to_dict()
        pod_mutation_hook(pod)  # never raises
        assert pod.to_dict() == before
