"""Run every benchmark in ``bench/`` in turn and collect their final JSON lines.

``make bench`` calls this after ``make cluster``. Each benchmark runs as its own process (its
output streams through as it goes); the last line of each that parses as JSON is gathered into
``out/bench/summary.json``. Benchmarks are measurements, not tests: a failing one is reported
and the others still run; the exit status is 1 when any failed.

Usage::

    .venv/bin/python bench/run_all.py            # quick forms (about 15 minutes)
    .venv/bin/python bench/run_all.py --full     # the full forms docs/benchmarks.md reports
    .venv/bin/python bench/run_all.py --only kernels,advisor
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (script, arguments of the quick form, arguments of the full form)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "kernels": ("bench_kernels.py", ["--quick"], []),
    "advisor": ("bench_advisor.py", [], []),
    "controller_load": ("bench_controller_load.py", ["--quick"], []),
    "advisor_enforce": ("bench_advisor_enforce.py", ["--budgets", "0.05,0.01"], []),
    "advisor_cluster": ("bench_advisor_cluster.py", ["--quick"], []),
    "load_deferred": ("bench_load_deferred.py", ["--quick"], []),
    "foreign_jobs": ("bench_foreign_jobs.py", ["--foreign", "2000", "--rounds", "3"], []),
    "dask_adaptive": ("bench_dask_adaptive.py", ["--quick"], []),
}


def last_json_line(text: str) -> dict | None:
    """Return the last line of *text* that is a JSON object, or ``None``."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_one(name: str, script: str, args: list[str]) -> dict:
    """Run one benchmark, streaming its output, and return its summary record."""
    print(f"\n=== {name}: {script} {' '.join(args)}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    rc = proc.wait()
    seconds = round(time.monotonic() - start, 1)
    print(f"=== {name}: exit {rc} after {seconds} s", flush=True)
    return {"exit_code": rc, "seconds": seconds, "result": last_json_line("".join(lines))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full forms instead of the quick ones")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default="out/bench/summary.json", help="where the summary JSON goes")
    opts = parser.parse_args(argv)
    names = [n for n in opts.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    summary = {}
    for name in names:
        script, quick, full = BENCHMARKS[name]
        summary[name] = run_one(name, script, full if opts.full else quick)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    failed = [n for n, r in summary.items() if r["exit_code"] != 0]
    print(f"\nsummary: {len(names) - len(failed)} of {len(names)} benchmarks finished; written to {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    print(json.dumps({n: r["result"] for n, r in summary.items()}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
