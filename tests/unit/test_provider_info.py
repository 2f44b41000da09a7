"""Provider metadata: a schema error here would break `airflow providers list` for every provider."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from airflow_provider_hpcai.config import CONFIG_OPTIONS
from airflow_provider_hpcai.get_provider_info import get_provider_info


def test_provider_info_validates_against_airflows_schema():
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-hpcai"
    assert {c["connection-type"] for c in info["connection-types"]} >= {"slurm", "dask"}
    assert set(info["config"]["hpcai"]["options"]) == set(CONFIG_OPTIONS)


def test_airflow_lists_the_provider_and_its_connection_types(tmp_path):
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path), "HOME": str(tmp_path)}
    listed = subprocess.run([airflow, "providers", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert "airflow-provider-hpcai" in listed.stdout, listed.stderr[-2000:]
    hooks = subprocess.run([airflow, "providers", "hooks"], capture_output=True, text=True, env=env, timeout=120)
    assert "airflow_provider_hpcai.hooks.slurm.SlurmHook" in hooks.stdout
