"""Provider metadata: a schema error here would break `airflow providers list` for every provider."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

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


def _slurm_form() -> dict:
    info = get_provider_info()
    return next(c for c in info["connection-types"] if c["connection-type"] == "slurm")["conn-fields"]


def test_slurm_form_can_set_tls_verification_and_the_hook_reads_it(tmp_path):
    from airflow_provider_hpcai.exceptions import ConfigurationError
    from airflow_provider_hpcai.hooks.slurm import parse_verify

    field = _slurm_form()["verify"]
    assert field["schema"]["type"] == ["string", "null"] and field["schema"]["default"] == "true"
    assert "CA bundle" in field["description"]
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    # what the form stores (text) is what the hook understands
    assert parse_verify("true") is True and parse_verify("False") is False and parse_verify("") is True
    assert parse_verify(None) is True and parse_verify(False) is False
    assert parse_verify(str(bundle)) == str(bundle)
    with pytest.raises(ConfigurationError, match="does not exist"):
        parse_verify(str(tmp_path / "missing.pem"))


def test_slurm_rest_transport_gets_the_verify_setting(monkeypatch):
    import httpx

    from airflow_provider_hpcai.hooks.slurm import build_transport

    seen: list[object] = []
    real_client = httpx.Client

    def recording_client(*args, **kwargs):
        seen.append(kwargs.get("verify", True))
        return real_client(*args, **kwargs)

    monkeypatch.setattr(httpx, "Client", recording_client)
    for value in ("false", None):
        build_transport({"transport": "rest", "base_url": "https://slurm.example:6820", "verify": value},
                        login="alice", password="jwt")
    assert seen == [False, True]


def test_slurm_form_offers_the_job_link_template():
    field = _slurm_form()["job_url_template"]
    assert "{job_id}" in field["description"] and "{cluster}" in field["description"]
