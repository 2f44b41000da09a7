"""How long the loader DAG file takes to build N template instances (issue 20, finding 5).

The dag processor parses ``dags/hpcai_template_instances.py`` in a fresh process each time and
gives up after ``[core] dagbag_import_timeout`` (30 s by default): every instance DAG then
vanishes. This writes N instance records of the ``hello-local`` template (three tasks each)
straight into a temporary repository, then times ``load_instance_dags`` in a new process (a
first parse), and a second call in that process (what the in-process cache saves).

Usage::

    .venv/bin/python bench/bench_template_loader.py --count 300 --count 3000

``--shards 4`` times one of four loader files (``load_instance_dags(shard=(0, 4))``);
``--max-instances 1000`` applies the shipped cap (the default here is no cap). Run it
from another checkout (``PYTHONPATH=/path/to/checkout``) to compare versions. Prints
one line per count and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from airflow_provider_hpcai.templates.loader import load_instance_dags
from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings
root, shards, cap = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
repo = TemplateRepository(root, TemplateSettings(root=root, **({"max_instances": cap} if cap else {})))
kwargs = {"shard": (0, shards)} if shards > 1 else {}
t1 = time.perf_counter()
dags = load_instance_dags(repo, **kwargs)
t2 = time.perf_counter()
again = load_instance_dags(repo, **kwargs)
t3 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "first_s": t2 - t1, "second_s": t3 - t2, "dags": len(dags),
                  "dags_second": len(again)}))
"""


def _manifest() -> Path:
    import airflow_provider_hpcai

    package = Path(airflow_provider_hpcai.__file__).resolve().parent
    for candidate in (package / "templates/builtin/hello-local", package.parent / "templates/hello-local"):
        if (candidate / "template.yaml").is_file():
            return candidate
    raise SystemExit("cannot find the hello-local template in this checkout")


def prepare(root: Path, count: int) -> None:
    """A repository holding hello-local 1.0.0 and ``count`` instance records of it."""
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    repo = TemplateRepository(root, TemplateSettings(root=root))
    template = repo.publish(_manifest(), publisher="bench")
    instances = root / "instances"
    instances.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        suffix = f"{index:08x}"
        record = {
            "schema": 1, "id": f"hello-local-{suffix}", "template": "hello-local", "version": "1.0.0",
            "checksum": template.checksum, "params": {"greeting": f"hello {index}", "repeats": 1 + index % 10},
            "resources": None, "owner": f"user{index % 50}", "created": "2026-12-06T12:00:00+00:00",
            "dag_id": f"tpl_hello_local_{suffix}",
        }
        (instances / f"hello-local-{suffix}.json").write_text(json.dumps(record))


def measure(count: int, shards: int = 1, cap: int = 0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        prepare(root, count)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(shards), str(cap)], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"instances": count, "shards": shards, "max_instances": cap, "process_s": round(wall, 2), **{k: round(v, 2) if isinstance(v, float) else v
                                                                   for k, v in result.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, action="append", help="instances (repeatable; default 300 and 3000)")
    parser.add_argument("--shards", type=int, default=1, help="time one loader file of this many shards")
    parser.add_argument("--max-instances", type=int, default=0,
                        help="set [hpcai] template_max_instances for the loader (0: leave the loader's default)")
    args = parser.parse_args()
    rows = []
    for count in args.count or [300, 3000]:
        row = measure(count, args.shards, args.max_instances)
        rows.append(row)
        print(f"{count:>6} instances, 1 of {args.shards} loader files: first parse {row['first_s']:.2f} s ({row['dags']} DAGs), second parse "
              f"{row['second_s']:.2f} s, whole process {row['process_s']:.2f} s", flush=True)
    print(json.dumps({"benchmark": "template_loader", "rows": rows}))


if __name__ == "__main__":
    main()
