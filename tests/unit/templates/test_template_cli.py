from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.cli import main, parse_param

ROOT = Path(__file__).resolve().parents[3]


def run(capsys, root, *argv):
    code = main([*argv, "--root", str(root)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_publish_list_show_instantiate_instances(tmp_path, capsys):
    root = tmp_path / "repo"
    assert run(capsys, root, "publish", str(ROOT / "airflow_provider_hpcai/templates/builtin/hello-local"))[0] == 0
    code, out, _ = run(capsys, root, "list")
    assert code == 0 and "hello-local" in out and "1.0.0" in out
    code, out, _ = run(capsys, root, "search", "zebra", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, root, "search", "hello", "--json")
    assert [t["name"] for t in json.loads(out)] == ["hello-local"]
    code, out, _ = run(capsys, root, "show", "hello-local")
    assert code == 0 and "greeting, repeats" in out
    code, out, _ = run(capsys, root, "instantiate", "hello-local", "--param", "repeats=3", "--param", "greeting=hey there", "--owner", "ann", "--json")
    record = json.loads(out)
    assert code == 0 and record["params"] == {"greeting": "hey there", "repeats": 3} and record["owner"] == "ann"
    code, out, _ = run(capsys, root, "instances")
    assert record["dag_id"] in out
    assert run(capsys, root, "instances", "--delete", record["id"])[0] == 0
    assert "no instances" in run(capsys, root, "instances")[1]


def test_exit_codes_and_messages(tmp_path, capsys):
    root = tmp_path / "repo"
    run(capsys, root, "publish", str(ROOT / "airflow_provider_hpcai/templates/builtin/hello-local"))
    code, _, err = run(capsys, root, "validate", "--template", "hello-local", "--param", "repeats=30")
    assert code == 2 and "maximum of 10" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "airflow_provider_hpcai/templates/builtin/hello-local/template.yaml").read_text().replace("Hello, local", "Changed"))
    code, _, err = run(capsys, root, "publish", str(bad))
    assert code == 1 and "immutable" in err
    code, _, err = run(capsys, root, "show", "nothing")
    assert code == 1 and "no template named" in err
    code, _, err = run(capsys, root, "deprecate", "hello-local", "1.0.0", "--reason", "old")
    assert code == 0
    code, out, _ = run(capsys, root, "versions", "hello-local")
    assert "deprecated" in out


def test_parse_param_reads_json_values():
    assert parse_param("n=3") == ("n", 3)
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("s=a=b") == ("s", "a=b")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        parse_param("novalue")


def test_a_fresh_install_lists_the_built_in_templates(tmp_path, capsys, monkeypatch):
    """No repository yet: 'hpcai templates list' shows the templates shipped in the wheel."""
    monkeypatch.delenv("AIRFLOW__HPCAI__TEMPLATES_BUILTIN", raising=False)
    code, out, _ = run(capsys, tmp_path / "never-created", "list")
    assert code == 0 and "no templates" not in out
    for name in ("hello-local", "param-sweep", "climate-adaptive", "seismic-risk", "manufacturing-optimization"):
        assert name in out
    assert out.count("built-in") == 5
    code, out, _ = run(capsys, tmp_path / "never-created", "instantiate", "hello-local", "--owner", "ann", "--json")
    assert code == 0 and json.loads(out)["template"] == "hello-local"


def test_a_built_in_template_is_replaced_only_with_take_over(tmp_path, capsys):
    root = tmp_path / "repo"
    folder = tmp_path / "mine"
    folder.mkdir()
    text = (ROOT / "airflow_provider_hpcai/templates/builtin/hello-local/template.yaml").read_text()
    (folder / "template.yaml").write_text(text.replace("version: 1.0.0", "version: 2.0.0"))
    code, _, err = run(capsys, root, "publish", str(folder), "--publisher", "ann")
    assert code == 1 and "built-in" in err and "--take-over" in err
    assert run(capsys, root, "publish", str(folder), "--publisher", "ann", "--take-over")[0] == 0
    code, out, _ = run(capsys, root, "list")
    line = next(row for row in out.splitlines() if row.startswith("hello-local"))
    assert "2.0.0" in line and "site" in line
