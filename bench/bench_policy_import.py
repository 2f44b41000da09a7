"""What the provider's task policy adds to every ``import airflow``.

Airflow loads the ``airflow.policy`` entry point while it imports itself (scheduler, workers,
triggerer, dag processor, every CLI call), so whatever the policy module imports is paid there.
Each sample is a fresh interpreter that imports Airflow with our entry point blocked, then
loads the entry point exactly as Airflow would and times that step alone; a second set of
fresh interpreters times ``import airflow`` with and without the entry point. Prints the
medians and, last, one JSON line.

Usage::

    .venv/bin/python bench/bench_policy_import.py [--runs 15]
    # the same for another revision of the package:
    git archive <rev> airflow_provider_hpcai | tar -x -C /tmp/rev && \
        PYTHONPATH=/tmp/rev .venv/bin/python bench/bench_policy_import.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

#: Import the package from $HPCAI_BENCH_SRC (another revision) instead of the editable install.
_SOURCE = """
import os, sys
if os.environ.get("HPCAI_BENCH_SRC"):
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path.insert(0, os.environ["HPCAI_BENCH_SRC"])
"""

_BLOCK = """
import pluggy
_load = pluggy.PluginManager.load_setuptools_entrypoints
def _blocked(self, group, name=None):
    self.set_blocked("hpcai")
    return _load(self, group, name)
pluggy.PluginManager.load_setuptools_entrypoints = _blocked
"""

#: Airflow imported without our policy, then the entry point loaded and timed on its own.
_MARGINAL = _BLOCK + """
import time, sys, importlib.metadata as md
import airflow
ep = next(e for e in md.entry_points(group="airflow.policy") if e.name == "hpcai")
start = time.perf_counter()
ep.load()
took = time.perf_counter() - start
heavy = sorted(m for m in ("numpy", "pandas", "mlflow", "statsmodels", "sklearn", "dask", "distributed",
                            "airflow_provider_hpcai.advisor.models", "airflow_provider_hpcai.policy.decision")
               if m in sys.modules)
print(took, ",".join(heavy))
"""

_WHOLE = """
import time
start = time.perf_counter()
import airflow
print(time.perf_counter() - start)
"""


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", _SOURCE + code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", help="a folder holding another revision of airflow_provider_hpcai to measure")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="hpcai-bench-home-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AIRFLOW_HOME": home, "HOME": home}
    if args.src:
        env["HPCAI_BENCH_SRC"] = os.path.abspath(args.src)
    marginal, heavy = [], ""
    with_ep, without_ep = [], []
    for i in range(args.runs):
        took, _, heavy = _run(_MARGINAL, env).partition(" ")
        marginal.append(float(took) * 1000)
        pair = [(with_ep, _WHOLE), (without_ep, _BLOCK + _WHOLE)]
        for samples, code in pair if i % 2 else pair[::-1]:  # alternate the order: the machine drifts
            samples.append(float(_run(code, env)) * 1000)
    result = {
        "policy_entry_point_load_ms": round(statistics.median(marginal), 2),
        "import_airflow_with_policy_ms": round(statistics.median(with_ep), 1),
        "import_airflow_without_policy_ms": round(statistics.median(without_ep), 1),
        "heavy_modules_after_load": heavy.split(",") if heavy else [],
        "runs": args.runs,
        "source": args.src or "installed",
    }
    print(f"loading the policy entry point after airflow: {result['policy_entry_point_load_ms']} ms (median)")
    print(f"import airflow: {result['import_airflow_with_policy_ms']} ms with the policy, "
          f"{result['import_airflow_without_policy_ms']} ms without (medians; noisy on a shared machine)")
    print(f"modules the load pulled in (of the watched ones): {result['heavy_modules_after_load'] or 'none'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
