"""Adaptive scaling options: validation with clear errors, and the arguments handed to adapt()."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.dask.adaptive import (
    AdaptiveConfig,
    adapt_kwargs,
    kubernetes_adapt_env,
    parse_adaptive,
    parse_seconds,
)
from airflow_provider_hpcai.dask.builders import kubernetes_cluster_kwargs, local_cluster_kwargs
from airflow_provider_hpcai.dask.config import parse_cluster_config, with_adaptive
from airflow_provider_hpcai.dask.errors import DaskConfigurationError

WHERE = "extra 'adaptive'"


def test_bounds_and_timing_are_parsed_with_units() -> None:
    cfg = parse_adaptive({"minimum": 1, "maximum": 8, "target_duration": "30s", "scale_down_wait": "2m",
                          "interval": "500ms"}, where=WHERE)
    assert cfg == AdaptiveConfig(minimum=1, maximum=8, target_duration=30.0, scale_down_wait=120.0, interval=0.5)
    assert cfg.wait_count == 240  # 120 s of 0.5 s checks
    assert parse_adaptive(None, where=WHERE) is None and parse_adaptive(False, where=WHERE) is None
    assert parse_adaptive(True, where=WHERE) == AdaptiveConfig()
    assert parse_seconds(90, what="x") == 90.0 and parse_seconds("1h", what="x") == 3600.0


@pytest.mark.parametrize(("value", "message"), [
    ({"minimum": 4, "maximum": 2}, r"'maximum' \(2\) is smaller than 'minimum' \(4\)"),
    ({"minimum": -1}, r"'minimum' must be a whole number from 0"),
    ({"maximum": 0}, r"'maximum' must be a whole number from 1"),
    ({"maximum": "3"}, r"'maximum' must be a whole number"),
    ({"maxium": 3}, r"unknown key\(s\) 'maxium'; allowed: minimum, maximum"),
    ({"scale_down_wait": "soon"}, r"'scale_down_wait' must be seconds \(a number or '5s', '2m', '1h'\)"),
    ({"scale_down_wait": "1s", "interval": "5s"}, r"'scale_down_wait' \(1s\) is shorter than 'interval' \(5s\)"),
    ({"target_duration": 0}, r"'target_duration' must be from 0.01 to 86400 seconds"),
    ([1, 3], r"must be a mapping such as"),
])
def test_bad_options_say_what_to_fix(value: object, message: str) -> None:
    with pytest.raises(DaskConfigurationError, match=message):
        parse_adaptive(value, where=WHERE)


def test_adapt_arguments_for_distributed_and_dask_jobqueue() -> None:
    cfg = AdaptiveConfig(minimum=1, maximum=3, target_duration=2.0, scale_down_wait=4.0, interval=1.0)
    assert adapt_kwargs(cfg) == {"minimum": 1, "maximum": 3, "interval": "1s", "wait_count": 4,
                                 "target_duration": "2s"}
    assert adapt_kwargs(cfg, jobs=True) == {"minimum_jobs": 1, "maximum_jobs": 3, "interval": "1s",
                                            "wait_count": 4, "target_duration": "2s"}
    assert kubernetes_adapt_env(cfg)["DASK_DISTRIBUTED__ADAPTIVE__TARGET_DURATION"] == "2s"


def test_connection_extra_and_operator_override() -> None:
    cfg = parse_cluster_config({"cluster": "local", "adaptive": {"minimum": 1, "maximum": 4}}, conn_id="d")
    assert cfg.adaptive == AdaptiveConfig(minimum=1, maximum=4)
    assert local_cluster_kwargs(cfg)["n_workers"] == 1, "an adaptive cluster starts at its minimum"
    assert with_adaptive(cfg, False).adaptive is None
    assert with_adaptive(cfg, None) is cfg
    assert with_adaptive(cfg, {"maximum": 9}).adaptive == AdaptiveConfig(maximum=9)
    with pytest.raises(DaskConfigurationError, match=r"dask connection 'd': extra 'adaptive': 'maximum'"):
        parse_cluster_config({"cluster": "slurm", "adaptive": {"maximum": 5000}}, conn_id="d")


def test_an_existing_scheduler_cannot_adapt() -> None:
    with pytest.raises(DaskConfigurationError, match="does not apply to cluster 'address'.*cannot add or remove"):
        parse_cluster_config({"cluster": "address", "address": "tcp://s:8786", "adaptive": {"maximum": 2}})
    cfg = parse_cluster_config({"cluster": "address", "address": "tcp://s:8786"})
    with pytest.raises(DaskConfigurationError, match="cannot add or remove its workers"):
        with_adaptive(cfg, {"maximum": 2})


def test_slurm_wait_for_workers_may_count_up_to_the_adaptive_maximum() -> None:
    cfg = parse_cluster_config({"cluster": "slurm", "jobs": 1, "wait_for_workers": 3,
                                "adaptive": {"minimum": 1, "maximum": 3}})
    assert cfg.wait_for_workers == 3


def test_kubernetes_adaptive_starts_at_the_minimum_and_tells_the_scheduler_its_timing() -> None:
    cfg = parse_cluster_config({"cluster": "kubernetes", "n_workers": 5, "env": {"A": "1"},
                                "adaptive": {"minimum": 2, "maximum": 6, "target_duration": "10s"}})
    kwargs = kubernetes_cluster_kwargs(cfg, name="c1", namespace=None)
    assert kwargs["n_workers"] == 2
    assert kwargs["env"]["A"] == "1" and kwargs["env"]["DASK_DISTRIBUTED__ADAPTIVE__TARGET_DURATION"] == "10s"


@pytest.mark.parametrize("address", ["0.0.0.0:8787; rm -rf /", "host", ":99999", "a b:1"])
def test_dashboard_address_is_validated(address: str) -> None:
    with pytest.raises(DaskConfigurationError, match="'dashboard_address'.*is not an address"):
        parse_cluster_config({"cluster": "local", "dashboard_address": address})
    assert parse_cluster_config({"cluster": "local", "dashboard_address": None}).dashboard_address is None


@pytest.mark.parametrize("tag", ["hpcai-123", "hpcai-0123456789abcdef0123\n#SBATCH --x", "x" * 26, None])
def test_only_provider_tags_reach_the_worker_jobs(tag: object) -> None:
    from airflow_provider_hpcai.dask.builders import check_tag, new_tag

    with pytest.raises(DaskConfigurationError, match="is not a provider tag"):
        check_tag(tag)
    assert check_tag(new_tag()).startswith("hpcai-")
