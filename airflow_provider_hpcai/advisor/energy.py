"""A documented power model that turns wasted core-hours into kWh.

Two kinds of waste cost energy differently:

* a **killed attempt** ran: its cores drew active power for the whole attempt, and the node's
  share of idle power (memory, board, fans, power-supply losses) on top;
* a **reserved-but-unused** core-hour (limit minus run time) drew nothing for the job itself;
  it costs energy only in so far as the node stays powered while the reservation keeps other
  work off it. The model charges it the node's idle power per core: an upper bound, since a busy
  machine may backfill those cores.

So, per policy, ``kWh = killed core-h x (W_core + W_idle/core) + unused core-h x W_idle/core``
(plus GPU-hours x ``W_gpu`` where a job reserves GPUs), divided by 1000. Where Slurm accounting
records ``ConsumedEnergy`` for a job, :func:`job_energy_kwh` uses it instead of the model.

Default constants (configurable per site, :class:`PowerModel`):

* ``watts_per_core = 3.75``: AMD EPYC 9654 (Genoa, 96 cores), default TDP 360 W (AMD's product
  specification), 360 / 96; a package figure at full load.
* ``node_idle_watts = 150`` for a 2-socket node of 192 cores (0.78 W per core): an
  *assumption* in the range SPECpower_ssj2008 "active idle" results show for current
  2-socket servers, not a published figure for one system; set it from your own nodes' idle
  power (IPMI/BMC or Slurm's ``ConsumedEnergy`` of an idle period).
* ``watts_per_gpu = 700``: NVIDIA H100 SXM5 maximum TDP (NVIDIA's H100 datasheet). The public
  SWF traces record no GPUs, so their figures use CPUs only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from airflow_provider_hpcai.exceptions import InvalidJobSpecError

__all__ = ["DEFAULT_POWER", "PowerModel", "job_energy_kwh", "limit_savings", "result_energy", "waste_energy_kwh"]


@dataclasses.dataclass(frozen=True)
class PowerModel:
    """Watts per allocated core and per GPU, and a node's idle power.

    :param watts_per_core: active power of one allocated core (CPU package share).
    :param node_idle_watts: power of an idle, powered-on node.
    :param cores_per_node: cores in that node (to share its idle power per core).
    :param watts_per_gpu: active power of one allocated GPU.
    :param source: where the constants come from (recorded with every figure).
    """

    watts_per_core: float = 3.75
    node_idle_watts: float = 150.0
    cores_per_node: int = 192
    watts_per_gpu: float = 700.0
    source: str = (
        "core: AMD EPYC 9654 TDP 360 W / 96 cores; GPU: NVIDIA H100 SXM5 TDP 700 W; "
        "node idle: 150 W per 192-core 2-socket node (assumed; set your site's)"
    )

    def __post_init__(self) -> None:
        for name in ("watts_per_core", "node_idle_watts", "watts_per_gpu"):
            if getattr(self, name) < 0:
                raise InvalidJobSpecError(f"{name} must be 0 or more watts, not {getattr(self, name)!r}")
        if self.cores_per_node < 1:
            raise InvalidJobSpecError(f"cores_per_node must be at least 1, not {self.cores_per_node!r}")

    @property
    def idle_watts_per_core(self) -> float:
        return self.node_idle_watts / self.cores_per_node

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_POWER = PowerModel()


def waste_energy_kwh(
    killed_core_hours: float,
    unused_core_hours: float,
    *,
    killed_gpu_hours: float = 0.0,
    power: PowerModel = DEFAULT_POWER,
) -> float:
    """kWh of a policy's waste: killed attempts at active power, unused reservations at idle power."""
    if killed_core_hours < 0 or unused_core_hours < 0 or killed_gpu_hours < 0:
        raise InvalidJobSpecError("core-hours and GPU-hours must be 0 or more")
    watts_hours = (
        killed_core_hours * (power.watts_per_core + power.idle_watts_per_core)
        + unused_core_hours * power.idle_watts_per_core
        + killed_gpu_hours * power.watts_per_gpu
    )
    return watts_hours / 1000.0


def job_energy_kwh(result: Mapping[str, Any], *, power: PowerModel = DEFAULT_POWER) -> tuple[float | None, str]:
    """Energy of one finished job: Slurm's ``ConsumedEnergy`` (joules) when accounting has it,
    else the model from its cores, GPUs and elapsed time.

    :param result: the hook's accounting dict or a task result (``consumed_energy_joules``, at
        the top or under ``efficiency``; ``elapsed_seconds``,
        ``requested`` with ``ntasks``, ``cpus_per_task``, ``gpus``).
    :return: (kWh or ``None`` when the run time is unknown, ``"ConsumedEnergy"`` or ``"model"``).
    """
    joules = result.get("consumed_energy_joules")
    if joules is None:  # the task result keeps accounting's figures under "efficiency"
        joules = (result.get("efficiency") or {}).get("consumed_energy_joules")
    if joules is not None and float(joules) > 0:
        return float(joules) / 3.6e6, "ConsumedEnergy"
    elapsed = result.get("elapsed_seconds")
    if elapsed is None:
        return None, "model"
    requested = result.get("requested") or {}
    cores = float((requested.get("ntasks") or 1) * (requested.get("cpus_per_task") or 1))
    gpus = float(requested.get("gpus") or 0)
    hours = float(elapsed) / 3600.0
    watts = cores * (power.watts_per_core + power.idle_watts_per_core) + gpus * power.watts_per_gpu
    return watts * hours / 1000.0, "model"


def limit_savings(
    cores: Any, run: Any, request: Any, limit: Any, *, power: PowerModel = DEFAULT_POWER
) -> dict[str, float]:
    """What a set of advised wall-time limits saved against the requests, in core-hours and kWh.

    Per job: ``cores``, the run time it needed, its request and the advised limit (the request
    where the advisor kept it). A job that needed more than its limit is counted as killed and
    rerun with its request: its attempt (``cores x limit``) is wasted at active power. Unused
    reservations (``cores x (limit - run)``) are charged the node's idle power per core.

    :return: ``jobs``, ``advised`` (limits below the request), ``killed``, the reserved-but-unused
        core-hours with the requests and with the limits (killed attempts included),
        ``core_hours_saved`` and ``kwh_saved`` (users' waste minus the advisor's; negative when the
        kills cost more than the cuts saved).
    """
    rows = list(zip(cores, run, request, limit, strict=True))
    users_unused = sum(max(c, 0) * max(q - r, 0.0) for c, r, q, _ in rows) / 3600.0
    killed_h = unused_h = 0.0
    killed = advised = 0
    for c, r, q, lim in rows:
        lim = min(lim, q)
        advised += lim < q
        if r > lim:  # killed at its limit, rerun with the request
            killed += 1
            killed_h += c * lim / 3600.0
            unused_h += c * max(q - r, 0.0) / 3600.0
        else:
            unused_h += c * (lim - r) / 3600.0
    users_kwh = waste_energy_kwh(0.0, users_unused, power=power)
    advisor_kwh = waste_energy_kwh(killed_h, unused_h, power=power)
    return {"jobs": len(rows), "advised": advised, "killed": killed,
            "users_waste_core_hours": users_unused, "advisor_waste_core_hours": killed_h + unused_h,
            "core_hours_saved": users_unused - killed_h - unused_h, "kwh_saved": users_kwh - advisor_kwh}


def result_energy(result: Mapping[str, Any], decision: Mapping[str, Any] | None, *,
                  power: PowerModel = DEFAULT_POWER) -> dict[str, Any]:
    """The ``energy`` entry of a task's result: what the job used, and what the advisor saved.

    :param result: the task result (``elapsed_seconds``, ``requested``, ``efficiency``...).
    :param decision: the advisor's decision for the task (``Decision.to_dict()``), or ``None``.
    :return: ``kwh`` and ``source`` (:func:`job_energy_kwh`); with a decision, the wall-time limit
        the job ran under against the user's request as :func:`limit_savings` counts it:
        ``core_hours_saved``/``kwh_saved`` where the limit was enforced, else
        ``core_hours_would_save``/``kwh_would_save`` for the advised limit (``advise`` mode).
    """
    kwh, source = job_energy_kwh(result, power=power)
    out: dict[str, Any] = {"kwh": kwh, "source": source}
    elapsed = result.get("elapsed_seconds")
    if not decision or elapsed is None:
        return out
    requested = decision.get("requested") or {}
    request = requested.get("time_limit")
    enforced = decision.get("mode") == "enforce"
    limit = (decision.get("applied") or {}).get("time_limit") if enforced else \
        (decision.get("predicted") or {}).get("time_limit")
    if not request or not limit:
        return out
    cores = (requested.get("ntasks") or 1) * (requested.get("cpus_per_task") or 1)
    saved = limit_savings([cores], [float(elapsed)], [float(request)], [float(limit)], power=power)
    word = "saved" if enforced else "would_save"
    out[f"core_hours_{word}"] = saved["core_hours_saved"]
    out[f"kwh_{word}"] = saved["kwh_saved"]
    return out

