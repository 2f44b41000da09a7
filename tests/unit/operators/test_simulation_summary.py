"""The summary travels as a marked output line too, for backends that cannot read files."""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_provider_hpcai.launchers import NoLauncher
from airflow_provider_hpcai.operators.simulation import SUMMARY_MARKER, simulation_script, summary_from_output


def test_script_prints_the_summary_as_one_marked_line(tmp_path):
    out = tmp_path / "out"
    script = simulation_script("seismic", {"nx": 8}, ranks=1, launcher=NoLauncher(), python=sys.executable,
                               output_dir=str(out))
    # Replace the kernel run by a stand-in that writes a summary, keep the rest of the script as built.
    fake_kernel = f"""{sys.executable} -c 'import json,sys; json.dump({{"storms": [{{"id": 1}}], "note": "a b"}}, open("{out}/summary.json", "w"))'"""
    lines = [fake_kernel if "simulation_kernels" in line and not line.startswith("printf") else line
             for line in script.splitlines()]
    run = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    marked = [line for line in run.stdout.splitlines() if line.startswith(SUMMARY_MARKER)]
    assert len(marked) == 1
    assert summary_from_output(run.stdout) == {"storms": [{"id": 1}], "note": "a b"}


def test_summary_from_output_takes_the_last_valid_line():
    text = "\n".join(["noise", SUMMARY_MARKER + "{broken", SUMMARY_MARKER + json.dumps({"a": 1}), "tail"])
    assert summary_from_output(text) == {"a": 1}
    assert summary_from_output("nothing here") is None
