"""Discrete-event model of a serial production line (hand-written event loop).

Stations in series, each with its own input buffer of ``buffer`` slots (the first station
draws from an unbounded queue of arrivals, or from an endless supply when ``arrival`` is
``saturated``). Blocking after service: a finished part waits on its machine until the next
buffer has a free slot. Breakdowns are operation-dependent: a machine ages only while it
processes, fails after an exponential operating time (mean ``mtbf``) and is repaired in an
exponential time (mean ``mttr``), after which the part's processing resumes. The first
station consumes one unit of material per part; material arrives in lots of
``material_lot`` units at exponential intervals, so the line can starve. Understaffing
stretches service times by ``required_staff / staff``. Energy is power x time in each state
(busy, idle = starved or blocked, down).

Events are processed from a binary heap; a run is deterministic for its seed. Statistics
cover ``[warmup, horizon]``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from simulation_kernels.common.cli import KernelInputError

__all__ = ["Line", "simulate"]

_DONE, _ARRIVAL, _DELIVERY, _WARMUP = 0, 1, 2, 3


def _sampler(st: dict[str, Any], rng: random.Random) -> Callable[[], float]:
    """A function drawing one service time at full staffing."""
    mean, dist, cv = st["service_mean"], st["service_dist"], st["service_cv"]
    if dist == "deterministic":
        return lambda: mean
    if dist == "exponential":
        rate = 1.0 / mean
        return lambda: rng.expovariate(rate)
    if dist == "lognormal":
        sigma = math.sqrt(math.log(1.0 + cv * cv))
        mu = math.log(mean) - sigma * sigma / 2
        return lambda: rng.lognormvariate(mu, sigma)
    k = max(1, round(1.0 / (cv * cv)))
    return lambda: rng.gammavariate(k, mean / k)


class Line:
    """State and event loop of one replication.

    :param p: validated ``assembly_line`` parameters.
    :param seed: random seed of this replication.
    """

    def __init__(self, p: dict[str, Any], seed: int) -> None:
        self.p = p
        self.rng = random.Random(seed)
        self.st = p["stations"]
        n = len(self.st)
        self.n = n
        self.service = [_sampler(s, self.rng) for s in self.st]
        self.stretch = [s["required_staff"] / min(s["staff"], s["required_staff"]) for s in self.st]
        self.cap = [math.inf] + [s["buffer"] for s in self.st[1:]]
        self.queue: list[deque[float]] = [deque() for _ in range(n)]  # entry time of each waiting part
        self.busy = [False] * n  # holds a part (processing, down or blocked)
        self.blocked = [False] * n
        self.holding = [0.0] * n  # entry time of the part on the machine
        self.ttf = [self.rng.expovariate(1.0 / s["mtbf"]) if s["mtbf"] else math.inf for s in self.st]
        # accounting: cumulative busy / down / blocked time, with the running job's span
        self.busy_t = [0.0] * n
        self.down_t = [0.0] * n
        self.block_t = [0.0] * n
        self.job = [(0.0, 0.0, 0.0)] * n  # (start, processing, down) of the current job
        self.block_start = [0.0] * n
        self.failures = [0] * n
        self.stock = p["material_initial"] if p["material_lot"] else math.inf
        self.heap: list[tuple[float, int, int, int]] = []
        self.seq = 0
        self.now = 0.0
        self.events = 0
        self.done_after_warmup = 0
        self.lead_sum = 0.0
        self.lead_sq = 0.0
        self.snapshot: tuple[list[float], list[float], list[float]] | None = None
        self.starved_material = 0

    def _push(self, t: float, kind: int, i: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, i))

    def _has_input(self, i: int) -> bool:
        if i == 0:
            if self.stock < 1:
                return False
            return self.p["arrival"] == "saturated" or bool(self.queue[0])
        return bool(self.queue[i])

    def _room(self, i: int) -> bool:
        """Whether station ``i`` can take one more part (a free buffer slot, or an idle empty machine)."""
        return len(self.queue[i]) < self.cap[i] or (not self.busy[i] and not self.queue[i])

    def _start(self, i: int) -> None:
        """Start the next part on station ``i`` if it is idle and has input; then let a blocked
        upstream station hand over its part (which cascades further upstream)."""
        if not self.busy[i] and self._has_input(i):
            now = self.now
            if i == 0:
                self.stock -= 1
                entry = now if self.p["arrival"] == "saturated" else self.queue[0].popleft()
            else:
                entry = self.queue[i].popleft()
            self.busy[i] = True
            self.holding[i] = entry
            proc = self.service[i]() * self.stretch[i]
            down = 0.0
            left = self.ttf[i]
            if left != math.inf:
                mtbf, mttr = self.st[i]["mtbf"], self.st[i]["mttr"]
                work = proc
                while left <= work:  # fails during this job: repair, then resume
                    work -= left
                    down += self.rng.expovariate(1.0 / mttr)
                    self.failures[i] += 1
                    left = self.rng.expovariate(1.0 / mtbf)
                self.ttf[i] = left - work
            self.job[i] = (now, proc, down)
            self._push(now + proc + down, _DONE, i)
        if i > 0 and self.blocked[i - 1] and self._room(i):
            self._unblock(i - 1)

    def _finish_job(self, i: int) -> None:
        _, proc, down = self.job[i]
        self.busy_t[i] += proc
        self.down_t[i] += down
        self.job[i] = (self.now, 0.0, 0.0)

    def _unblock(self, i: int) -> None:
        """Blocked station ``i`` hands its part to buffer ``i + 1`` (which has room) and restarts."""
        self.blocked[i] = False
        self.block_t[i] += self.now - self.block_start[i]
        self.queue[i + 1].append(self.holding[i])
        self.busy[i] = False
        self._start(i + 1)
        self._start(i)

    def _done(self, i: int) -> None:
        self._finish_job(i)
        if i == self.n - 1:
            if self.now >= self.p["warmup"]:
                lead = self.now - self.holding[i]
                self.done_after_warmup += 1
                self.lead_sum += lead
                self.lead_sq += lead * lead
            self.busy[i] = False
            self._start(i)
        elif self._room(i + 1):
            self.queue[i + 1].append(self.holding[i])
            self.busy[i] = False
            self._start(i + 1)
            self._start(i)
        else:
            self.blocked[i] = True
            self.block_start[i] = self.now

    def _accrued(self, t: float) -> tuple[list[float], list[float], list[float]]:
        """Busy, down and blocked time of each station up to time ``t`` (running jobs pro rata)."""
        busy, down, block = list(self.busy_t), list(self.down_t), list(self.block_t)
        for i in range(self.n):
            start, proc, dn = self.job[i]
            if proc + dn > 0:
                frac = min(1.0, max(0.0, (t - start) / (proc + dn)))
                busy[i] += proc * frac
                down[i] += dn * frac
            if self.blocked[i]:
                block[i] += t - self.block_start[i]
        return busy, down, block

    def run(self) -> dict[str, Any]:
        """Process events up to ``horizon`` and return the statistics of ``[warmup, horizon]``."""
        p = self.p
        horizon, warmup = p["horizon"], p["warmup"]
        if p["arrival"] == "poisson":
            self._push(self.rng.expovariate(p["arrival_rate"]), _ARRIVAL, 0)
        if p["material_lot"]:
            self._push(self.rng.expovariate(1.0 / p["material_interval"]), _DELIVERY, 0)
        self._push(warmup, _WARMUP, 0)
        self._start(0)
        heap, pop, max_events = self.heap, heapq.heappop, p["max_events"]
        rate = p["arrival_rate"]
        while heap:
            t, _, kind, i = heap[0]
            if t > horizon:
                break
            pop(heap)
            self.now = t
            self.events += 1
            if kind == _DONE:
                self._done(i)
            elif kind == _ARRIVAL:
                self.queue[0].append(t)
                self._push(t + self.rng.expovariate(rate), _ARRIVAL, 0)
                self._start(0)
            elif kind == _DELIVERY:
                if self.stock < 1:
                    self.starved_material += 1
                self.stock += p["material_lot"]
                self._push(t + self.rng.expovariate(1.0 / p["material_interval"]), _DELIVERY, 0)
                self._start(0)
            else:
                self.snapshot = self._accrued(t)
            if self.events > max_events:
                raise KernelInputError(
                    f"assembly_line: more than max_events={max_events} events before the "
                    f"horizon; raise max_events or shorten horizon"
                )
        self.now = horizon
        return self._stats()

    def _stats(self) -> dict[str, Any]:
        p = self.p
        span = p["horizon"] - p["warmup"]
        end = self._accrued(p["horizon"])
        start = self.snapshot or ([0.0] * self.n, [0.0] * self.n, [0.0] * self.n)
        stations, energy = [], 0.0
        for i, s in enumerate(self.st):
            busy = end[0][i] - start[0][i]
            down = end[1][i] - start[1][i]
            block = end[2][i] - start[2][i]
            idle = max(0.0, span - busy - down)
            kwh = (s["power_busy_kw"] * busy + s["power_idle_kw"] * idle + s["power_down_kw"] * down) / 60.0
            energy += kwh
            stations.append(
                {
                    "name": s["name"],
                    "utilisation": busy / span,
                    "down_fraction": down / span,
                    "blocked_fraction": block / span,
                    "starved_fraction": max(0.0, idle - block) / span,
                    "failures": self.failures[i],
                    "energy_kwh": kwh,
                }
            )
        done = self.done_after_warmup
        mean_lead = self.lead_sum / done if done else math.nan
        return {
            "throughput": done / span,
            "parts": done,
            "mean_lead_time": mean_lead,
            "lead_time_std": math.sqrt(max(0.0, self.lead_sq / done - mean_lead**2)) if done else math.nan,
            "energy_kwh": energy,
            "energy_per_unit_kwh": energy / done if done else math.nan,
            "events": self.events,
            "material_stockouts": self.starved_material,
            "wip_end": sum(len(q) for q in self.queue) + sum(self.busy),
            "stations": stations,
        }


def simulate(p: dict[str, Any], seed: int) -> dict[str, Any]:
    """One replication of the validated parameters ``p`` with ``seed``."""
    return {"seed": seed, **Line(p, seed).run()}
