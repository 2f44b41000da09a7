"""What one status query for our jobs costs the controller when it holds 10,000 jobs of others.

A site's controller holds thousands of jobs the provider does not own. Every way of asking for the
state of *our* jobs is measured twice, with no foreign jobs and with ``--foreign`` held jobs of
another user (root) in the queue: the controller's time per query (``sdiag``: the total time of
every RPC type over the rounds, divided by the rounds), the client's wall time, and the bytes
that come back. A way of asking is fit for a real site when its controller time stays flat as
the foreign jobs grow.

Ways of asking (each for ``--own`` held jobs of the REST user):

* ``squeue --jobs=<ids>`` (the CLI poller today, text format);
* ``squeue --json --jobs=<ids>`` (Slurm 21.08+);
* ``squeue --only-job-state --jobs=<ids>`` (24.11+: the light REQUEST_JOB_STATE RPC);
* REST ``GET /slurm/<v>/jobs`` (the REST poller today: every job of every user);
* REST ``GET /slurm/<v>/job/<id>`` once per job (one light RPC each);
* REST ``GET /slurm/<v>/jobs?update_time=<t>`` (only jobs changed since the last poll);
* REST ``GET /slurm/<v>/jobs/state/?job_id=<id>&job_id=...`` (24.11+; a comma list is refused);
* ``sacct --jobs=<ids>`` (slurmdbd, not the controller: its wall time only).

Run on a local cluster as root, with that cluster's environment::

    eval "$(HPCAI_SLURM_VERSION=26.05 scripts/local-slurm env)"
    .venv/bin/python bench/bench_foreign_jobs.py --foreign 10000 --json out/bench_foreign_26.05.json

It submits the foreign jobs held (``--hold``, named ``hpcai-foreign``) and cancels them, and its
own, by name at the end. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

FOREIGN_NAME = "hpcai-foreign"
OWN_NAME = "hpcai-own"
_RPC = re.compile(r"^\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)\s+ave_time:\d+\s+total_time:(\d+)", re.MULTILINE)


def run(argv: Sequence[str], *, user: str | None = None, timeout: float = 120) -> str:
    """Run a Slurm command (as ``user`` through runuser when given); its stdout."""
    full = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def slurm_series() -> str:
    """``26.05`` from ``sinfo --version`` (``slurm 26.05.3``)."""
    return ".".join(run(["sinfo", "--version"]).split()[1].split(".")[:2])


def rpc_totals() -> dict[str, tuple[int, int]]:
    """``sdiag``'s RPC table by message type: ``{type: (count, total microseconds)}``, less sdiag's own
    REQUEST_STATS_INFO (the table by user that follows is left out: it counts the same RPCs again)."""
    text = run(["sdiag"])
    by_type = text.split("by message type", 1)[-1].split("by user", 1)[0]
    return {
        name: (int(count), int(total))
        for name, count, total in _RPC.findall(by_type)
        if name != "REQUEST_STATS_INFO"
    }


def submit_held(count: int, name: str, user: str | None, workers: int = 8) -> list[str]:
    """``count`` held one-second jobs named ``name``; their ids."""
    argv = [
        "sbatch",
        "--parsable",
        "--hold",
        f"--job-name={name}",
        "-t",
        "1",
        "-o",
        "/dev/null",
        "--wrap",
        "true",
    ]
    done: list[str] = []
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        for i, out in enumerate(pool.map(lambda _: run(argv, user=user).strip().split(";")[0], range(count))):
            done.append(out)
            if (i + 1) % 1000 == 0:
                print(
                    f"  submitted {i + 1}/{count} {name} jobs ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
    return done


def cancel_named(name: str) -> None:
    run(["scancel", f"--name={name}"])
    deadline = time.monotonic() + 300
    while run(["squeue", "-h", f"--name={name}", "-o", "%i"]).strip() and time.monotonic() < deadline:
        time.sleep(1)


class Rest:
    """Bare slurmrestd requests with the REST user's token (from ``scripts/local-slurm env``)."""

    def __init__(self) -> None:
        self.url = os.environ["HPCAI_SLURM_REST_URL"].rstrip("/")
        self.user = os.environ.get("HPCAI_SLURM_REST_USER", "hpcai")
        self.token = os.environ["HPCAI_SLURM_REST_TOKEN"]
        listed = self.get("/openapi/v3")
        found = {p.split("/")[2] for p in json.loads(listed)["paths"] if p.startswith("/slurm/v")}
        self.version = max(found, key=lambda v: tuple(int(x) for x in v[1:].split(".")))
        self.has_state = any(
            p.startswith(f"/slurm/{self.version}/jobs/state") for p in json.loads(listed)["paths"]
        )

    def get(self, path: str) -> bytes:
        req = urllib.request.Request(
            self.url + path, headers={"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": self.token}
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 304:  # 22.05's answer to update_time when nothing changed
                return b""
            raise


def ways(own: list[str], series: str, rest: Rest | None) -> dict[str, Callable[[], int]]:
    """Each way of asking for the state of ``own``: a callable returning the bytes received."""
    ids = ",".join(own)
    fmt = "--format=%i|%T|%r"
    modern = tuple(int(x) for x in series.split(".")) >= (24, 11)
    out: dict[str, Callable[[], int]] = {
        "squeue --jobs": lambda: len(run(["squeue", "-h", "--states=all", fmt, f"--jobs={ids}"])),
        "squeue --json --jobs": lambda: len(run(["squeue", "--json", "--states=all", f"--jobs={ids}"])),
        "sacct --jobs (slurmdbd)": lambda: len(
            run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", f"--jobs={ids}"])
        ),
    }
    if modern:
        out["squeue --only-job-state --jobs"] = lambda: len(
            run(["squeue", "--only-job-state", "-h", f"--jobs={ids}"])
        )
    if rest is not None:
        last = {"poll": int(time.time())}

        def changed_since_last_poll() -> int:
            """As a poller would: only what changed since its previous query."""
            since, last["poll"] = last["poll"], int(time.time())
            return len(rest.get(f"/slurm/{rest.version}/jobs?update_time={since}"))

        out[f"REST {rest.version} /jobs"] = lambda: len(rest.get(f"/slurm/{rest.version}/jobs"))
        out[f"REST {rest.version} /job/<id> per job"] = lambda: sum(
            len(rest.get(f"/slurm/{rest.version}/job/{job_id}")) for job_id in own
        )
        out[f"REST {rest.version} /jobs?update_time"] = changed_since_last_poll
        if rest.has_state:
            query = "&".join(f"job_id={j}" for j in own)
            out[f"REST {rest.version} /jobs/state?job_id"] = lambda: len(
                rest.get(f"/slurm/{rest.version}/jobs/state/?{query}")
            )
    return out


def measure(asks: dict[str, Callable[[], int]], rounds: int) -> dict[str, dict[str, float]]:
    """Per way: controller microseconds per query (all RPC types), wall ms, bytes."""
    figures = {}
    for name, ask in asks.items():
        ask()  # warm (connections, caches)
        before = rpc_totals()
        started = time.perf_counter()
        size = 0
        for _ in range(rounds):
            size = ask()
        wall = (time.perf_counter() - started) / rounds
        after = rpc_totals()
        ctld = sum(total - before.get(kind, (0, 0))[1] for kind, (_, total) in after.items())
        rpcs = {
            kind: count - before.get(kind, (0, 0))[0]
            for kind, (count, _) in after.items()
            if count - before.get(kind, (0, 0))[0] > 0
        }
        figures[name] = {
            "ctld_us_per_query": ctld / rounds,
            "wall_ms": wall * 1000,
            "bytes": size,
            "rpcs_per_query": {k: v / rounds for k, v in sorted(rpcs.items(), key=lambda kv: -kv[1])},
        }
        print(
            f"  {name:42s} ctld {ctld / rounds:10.0f} us  wall {wall * 1000:8.1f} ms  {size:>10,d} B",
            file=sys.stderr,
        )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--foreign", type=int, default=10000, help="held jobs of another user (default 10000)"
    )
    parser.add_argument(
        "--own", type=int, default=50, help="held jobs of the REST user to ask about (default 50)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="queries per way and load (default 10)")
    parser.add_argument("--no-rest", action="store_true", help="skip the slurmrestd ways")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root (runuser, sdiag)")
    series = slurm_series()
    rest = None if args.no_rest else Rest()
    user = os.environ.get("HPCAI_SLURM_REST_USER", "hpcai")
    print(
        f"Slurm {series}: {args.own} own held jobs of {user}, foreign jobs 0 then {args.foreign}, "
        f"{args.rounds} rounds per way",
        file=sys.stderr,
    )
    cancel_named(FOREIGN_NAME)
    cancel_named(OWN_NAME)
    result: dict[str, Any] = {
        "slurm": series,
        "own": args.own,
        "foreign": args.foreign,
        "rounds": args.rounds,
    }
    try:
        own = submit_held(args.own, OWN_NAME, user)
        asks = ways(own, series, rest)
        print("no foreign jobs:", file=sys.stderr)
        result["empty"] = measure(asks, args.rounds)
        started = time.monotonic()
        submit_held(args.foreign, FOREIGN_NAME, None)
        result["submit_seconds"] = round(time.monotonic() - started, 1)
        print(f"with {args.foreign} foreign jobs:", file=sys.stderr)
        result["loaded"] = measure(asks, args.rounds)
    finally:
        cancel_named(FOREIGN_NAME)
        cancel_named(OWN_NAME)
    print(
        f"\nSlurm {series}: controller time per status query for {args.own} own jobs "
        f"(0 -> {args.foreign} foreign jobs)"
    )
    print(
        f"{'way of asking':44s} {'ctld us (0)':>12s} {'ctld us (N)':>12s} {'growth':>7s} {'wall ms (N)':>12s} "
        f"{'bytes (N)':>12s}"
    )
    for name, loaded in result["loaded"].items():
        empty = result["empty"][name]
        growth = (
            loaded["ctld_us_per_query"] / empty["ctld_us_per_query"] if empty["ctld_us_per_query"] else 0.0
        )
        print(
            f"{name:44s} {empty['ctld_us_per_query']:12.0f} {loaded['ctld_us_per_query']:12.0f} "
            f"{growth:6.1f}x {loaded['wall_ms']:12.1f} {loaded['bytes']:12,d}"
        )
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
