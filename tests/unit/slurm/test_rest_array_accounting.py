"""REST accounting of an array job by its array id folds the elements as sacct does.

``GET /slurmdb/<v>/job/<array id>`` lists every element under its own job id, and the array id
itself is one element's (the last one Slurm created). Read as is, the array's record was that
element's: over REST a 3-element array whose element ``i`` exits ``i`` ended ``FAILED 2`` where
the CLI said ``FAILED 1`` (the first failed element), and an array whose only failure was in
another element would have read as that element's ``COMPLETED``. Recorded answers of the real 24.11.5 and 26.05.3 slurmrestd.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_hpcai.slurm import cli_json
from airflow_provider_hpcai.slurm.rest_transport import RestTransport

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm_cli_json"


def _recorded(series: str) -> tuple[dict[str, Any], str, str]:
    ids = json.loads((FIXTURES / series / "ids.json").read_text())
    return json.loads((FIXTURES / series / "rest_db.json").read_text()), str(ids["jobs"]["array"]), ids["rest_version"]


def _rest(series: str) -> tuple[RestTransport, str, list[str]]:
    payload, array, version = _recorded(series)
    jobs = [job for job in payload["jobs"] if (job.get("array") or {}).get("job_id") == int(array)]
    asked: list[str] = []

    element = json.loads((FIXTURES / series / "rest_db_element.json").read_text())  # GET .../job/<array>_1

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=element if request.url.path.endswith("_1") else {**payload, "jobs": jobs})

    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://head")
    return RestTransport("http://head", "hpcai", lambda: "t", api_version=version, client=client), array, asked


@pytest.mark.parametrize("series", ["24.11", "26.05"])
def test_the_array_id_gets_the_folded_record_the_cli_gives(series):
    rest, array, asked = _rest(series)
    record = rest.accounting([array])[array]
    cli = cli_json.parse_sacct_json((FIXTURES / series / "sacct.json").read_text())[array]
    assert asked == [f"/slurmdb/{rest.version}/job/{array}"]
    assert (record["state"], record["exit_code"]) == ("FAILED", 1) == (cli["state"], cli["exit_code"])
    assert [t["task"] for t in record["array_tasks"]] == [f"{array}_{i}" for i in range(3)]
    assert [t["exit_code"] for t in record["array_tasks"]] == [0, 1, 2]


@pytest.mark.parametrize("series", ["24.11", "26.05"])
def test_an_element_asked_by_name_keeps_its_own_record(series):
    rest, array, _ = _rest(series)
    element = rest.accounting([f"{array}_1"])
    assert list(element) == [f"{array}_1"] and element[f"{array}_1"]["exit_code"] == 1
