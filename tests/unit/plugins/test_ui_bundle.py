"""The committed Compose/HPC Jobs bundle is built from the committed sources (ui/), and ships in the package.

``ui/build.mjs`` records the SHA-256 of every input (sources, package.json, the lockfile, the build
script) and output in ``static/ui-build.json``. Without Node.js the inputs and outputs are compared
with that record; with ``ui/node_modules`` present the bundle is rebuilt in memory and compared byte
for byte (esbuild from the lockfile: a reproducible build).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import need_service

ROOT = Path(__file__).resolve().parents[3]
UI = ROOT / "ui"
STATIC = ROOT / "airflow_provider_hpcai" / "plugins" / "static"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_recorded_inputs_are_the_committed_sources():
    record = json.loads((STATIC / "ui-build.json").read_text())
    sources = {"package.json", "package-lock.json", "build.mjs", *(f"src/{p.name}" for p in (UI / "src").iterdir())}
    assert set(record["inputs"]) == sources, "a source was added or removed: run `cd ui && npm ci && npm run build`"
    stale = [name for name, digest in record["inputs"].items() if _sha(UI / name) != digest]
    assert not stale, f"{stale} changed since the bundle was built: run `cd ui && npm ci && npm run build`"


def test_the_recorded_outputs_are_the_committed_bundle():
    record = json.loads((STATIC / "ui-build.json").read_text())
    assert {"compose.js", "monitor.js", "xyflow.css"} <= set(record["outputs"])
    assert all(_sha(STATIC / name) == digest for name, digest in record["outputs"].items()), \
        "the bundle was edited by hand: rebuild it with `cd ui && npm run build`"


def test_the_lockfile_pins_the_node_editor():
    lock = json.loads((UI / "package-lock.json").read_text())
    package = json.loads((UI / "package.json").read_text())
    assert package["dependencies"]["@xyflow/react"] == lock["packages"]["node_modules/@xyflow/react"]["version"]


def test_a_rebuild_gives_the_committed_bundle_byte_for_byte():
    need_service(bool(shutil.which("node") and (UI / "node_modules" / "esbuild").is_dir()),
                 "Node.js with ui/node_modules (scripts/bootstrap runs `cd ui && npm ci`)")
    done = subprocess.run(["node", "build.mjs", "--check"], cwd=UI, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


def test_the_wheel_takes_the_built_files():
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["*"]
    built = [p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css", ".html", ".json")]
    assert {"compose.js", "monitor.js", "xyflow.css", "compose.html", "monitor.html"} <= set(built)
    assert all(any(Path(name).match(g) for g in globs) for name in built), (built, globs)
