"""Efficiency in the result: the same keys and meaning over sacct (CLI) and slurmdbd (REST).

The recorded pair is one job on the local 22.05 cluster (2 CPUs, 200M, a 120 MiB buffer and a busy
loop), read through sacct and through slurmrestd v0.0.38; the element pair is element 2 of a job
array. GPU and energy figures need a cluster with GPUs and an energy plugin, which this one lacks:
those cases use the recorded records with the TRES such a cluster adds.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

from airflow_provider_hpcai.jobs.outcome import build_result
from airflow_provider_hpcai.slurm import commands, rest_api

DATA = Path(__file__).resolve().parents[2] / "fixtures"
PAIR = DATA / "slurm_efficiency"
KEYS = {"cpu_percent", "memory_percent", "gpus", "gpu_usage", "consumed_energy_joules"}


def _cli(name: str, elements: bool = False) -> dict:
    return commands.parse_sacct((PAIR / name).read_text(), elements=elements)


def _rest(name: str, elements: bool = False) -> dict:
    return rest_api.parse_db_job(json.loads((PAIR / name).read_text()), elements=elements)


def test_the_same_job_has_the_same_efficiency_over_sacct_and_rest():
    cli, rest = _cli("sacct-22.05-11376.txt")["11376"], _rest("slurmdb-v0.0.38-11376.json")["11376"]
    assert cli["efficiency"] == rest["efficiency"]
    # 1.387 s of CPU in 5 s on 2 CPUs; a peak of 139292 KiB of the 200 MiB allocated
    assert cli["efficiency"] == {"cpu_percent": 13.9, "memory_percent": 68.0, "gpus": 0, "gpu_usage": None,
                                 "consumed_energy_joules": None}


def test_an_array_element_has_its_own_record_and_efficiency_on_both_transports():
    cli = _cli("sacct-22.05-element-10772_2.txt", elements=True)
    rest = _rest("slurmdb-v0.0.38-element-10772_2.json", elements=True)
    assert set(cli) == set(rest) == {"10772_2"}
    assert cli["10772_2"]["efficiency"] == rest["10772_2"]["efficiency"]
    assert cli["10772_2"]["efficiency"]["memory_percent"] == round(100 * 4784 * 1024 / (50 * 1024**2), 1)
    assert cli["10772_2"]["tag"] == rest["10772_2"]["tag"] == "hpcai-880c7f594af5719e81cc"
    assert "10772_2" not in _rest("slurmdb-v0.0.38-element-10772_2.json")  # keyed by its own id otherwise


@pytest.mark.parametrize("version", ["v0.0.38", "v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"])
def test_recorded_slurmdbd_answers_of_every_version_give_the_efficiency(version):
    path = DATA / "slurmrestd" / version / "slurmdb_job_ok.json"
    if not path.exists():
        pytest.skip(f"no recorded slurmdb_job_ok.json for {version}")
    (record,) = rest_api.parse_db_job(json.loads(path.read_text())).values()
    eff = record["efficiency"]
    assert set(eff) == KEYS and eff["gpus"] == 0 and eff["consumed_energy_joules"] is None
    expected = round(100 * record["total_cpu_seconds"] / (record["elapsed_seconds"] * 1), 1)
    assert eff["cpu_percent"] == expected
    assert eff["memory_percent"] == round(100 * record["max_rss_bytes"] / (200 * 1024**2), 1)


def _gpu_sacct() -> str:
    job, step = (PAIR / "sacct-22.05-11376.txt").read_text().splitlines()
    job = job.replace("billing=2,cpu=2,mem=200M,node=1|||", "billing=2,cpu=2,gres/gpu=1,mem=200M,node=1||5400|")
    step = step.replace("mem=139292K,pages=0", "gres/gpumem=512M,gres/gpuutil=87,mem=139292K,pages=0")
    return job + "\n" + step + "\n"


def _gpu_rest() -> dict:
    payload = copy.deepcopy(json.loads((PAIR / "slurmdb-v0.0.38-11376.json").read_text()))
    job = payload["jobs"][0]
    job["tres"]["allocated"].append({"type": "gres", "name": "gpu", "id": 1001, "count": 1})
    step = job["steps"][0]
    step["tres"]["requested"]["total"] += [{"type": "gres", "name": "gpuutil", "id": 1002, "count": 87},
                                          {"type": "gres", "name": "gpumem", "id": 1003, "count": 512 * 1024**2}]
    for item in step["tres"]["consumed"]["total"]:
        if item["type"] == "energy":
            item["count"] = 5400
    return payload


def test_gpus_their_usage_and_energy_mean_the_same_on_both_transports():
    cli = commands.parse_sacct(_gpu_sacct())["11376"]["efficiency"]
    rest = rest_api.parse_db_job(_gpu_rest())["11376"]["efficiency"]
    assert cli == rest
    assert cli["gpus"] == 1 and cli["consumed_energy_joules"] == 5400
    assert cli["gpu_usage"] == {"gpu_util_percent": 87, "gpu_mem_bytes": 512 * 1024**2}


def test_a_job_that_never_ran_has_no_figures_not_zeros():
    line = ("46|x|PENDING|0:0|00:00:00||00:00:00|None assigned|64M|00:05:00|1|2026-11-28T23:30:28|Unknown|Unknown|"
            "|||")
    eff = commands.parse_sacct(line)["46"]["efficiency"]
    assert eff == {"cpu_percent": None, "memory_percent": None, "gpus": 0, "gpu_usage": None,
                   "consumed_energy_joules": None}


def test_the_task_result_carries_the_efficiency():
    record = _cli("sacct-22.05-11376.txt")["11376"]
    result = build_result("11376", accounting=record, state="COMPLETED", exit_code=0, requested={})
    assert result["efficiency"]["cpu_percent"] == 13.9
    assert build_result("1", accounting={}, state="COMPLETED", exit_code=0, requested={})["efficiency"] is None


def test_sacct_asks_for_the_efficiency_fields_with_the_comment_last():
    fields = commands.SACCT_FIELDS
    assert {"AllocTRES", "TRESUsageInTot", "ConsumedEnergyRaw"} <= set(fields) and fields[-1] == "Comment"


def test_the_openapi_documents_name_the_fields_read():
    for name in ("openapi-24.11.json.gz", "openapi-26.05.json.gz"):
        text = gzip.decompress((DATA / "slurmrestd" / name).read_bytes()).decode()
        assert '"tres"' in text and '"consumed"' in text and '"allocated"' in text
