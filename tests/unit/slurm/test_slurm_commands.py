"""CLI argv builders and the parsers of squeue / sacct / sinfo / scontrol output.

The sacct, sinfo and scontrol texts are what Slurm 22.05.8 printed on the local cluster.
"""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.slurm import commands
from airflow_provider_hpcai.slurm.commands import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    parse_partitions,
    parse_sacct,
    parse_sbatch,
    parse_sinfo,
    parse_size_bytes,
    parse_slurm_seconds,
    parse_squeue,
)
from airflow_provider_hpcai.slurm.states import Phase
from tests.fakes.slurm_cli import render_squeue

TAG = "hpcai-0123456789abcdef0123"

# sacct --parsable2 --noheader --format=<SACCT_FIELDS>, captured from Slurm 22.05.8
SACCT_REAL = """\
35|it-exit3|FAILED|3:0|00:00:00||00:00.002|vm|64M|00:02:00|1|2026-11-28T23:29:52|2026-11-28T23:29:53|2026-11-28T23:29:53|
35.batch|batch|FAILED|3:0|00:00:00||00:00.002|vm|||1|2026-11-28T23:29:53|2026-11-28T23:29:53|2026-11-28T23:29:53|
38|it-oom|FAILED|0:9|00:00:02||00:00.002|vm|50M|00:02:00|1|2026-11-28T23:30:00|2026-11-28T23:30:02|2026-11-28T23:30:04|
38.batch|batch|CANCELLED by 0|0:9|00:00:02|426044K|00:00.002|vm|||1|2026-11-28T23:30:02|2026-11-28T23:30:02|2026-11-28T23:30:04|
40|wrap|RUNNING|0:0|00:00:20||00:00:00|vm|90M|01:00:00|1|2026-11-28T23:30:10|2026-11-28T23:30:11|Unknown|
40.batch|batch|RUNNING|0:0|00:00:20||00:00:00|vm|||1|2026-11-28T23:30:11|2026-11-28T23:30:11|Unknown|
43|it-cancel|CANCELLED by 1001|0:0|00:00:00||00:00.002|vm|32M|00:05:00|1|2026-11-28T23:30:20|2026-11-28T23:30:22|2026-11-28T23:30:22|
43.batch|batch|CANCELLED|0:15|00:00:00||00:00.002|vm|||1|2026-11-28T23:30:22|2026-11-28T23:30:22|2026-11-28T23:30:22|
45|it-mpi|COMPLETED|0:0|00:00:00||00:00.151|vm|400M|00:02:00|2|2026-11-28T23:30:25|2026-11-28T23:30:28|2026-11-28T23:30:28|
45.batch|batch|COMPLETED|0:0|00:00:00||00:00.008|vm|||2|2026-11-28T23:30:28|2026-11-28T23:30:28|2026-11-28T23:30:28|
45.0|hydra_pmi_proxy|COMPLETED|0:0|00:00:00||00:00.143|vm|||2|2026-11-28T23:30:28|2026-11-28T23:30:28|2026-11-28T23:30:28|
46|it_slurm_operator.job|PENDING|0:0|00:00:00||00:00:00|None assigned|64M|00:05:00|1|2026-11-28T23:30:28|Unknown|Unknown|
"""


# ------------------------------------------------------------------------------------ builders
def test_sbatch_reads_the_script_from_stdin():
    assert commands.sbatch_argv() == ["sbatch", "--parsable"]


def test_squeue_asks_about_many_jobs_in_one_call():
    argv = commands.squeue_argv(["11", "12", " 13 "])
    assert argv[0] == "squeue" and argv[-1] == "--jobs=11,12,13"
    assert sum(a.startswith("--jobs") for a in argv) == 1
    assert "--states=all" in argv and f"--format={SQUEUE_FORMAT}" in argv


@pytest.mark.parametrize("bad", ["1;rm -rf /", "abc", "12_", "_3", "12_3_4", "12_3;id", "-1", "", "1 2", "$(id)",
                                 "1\n2"])
def test_job_ids_are_validated_before_reaching_a_command_line(bad):
    for build in (lambda: commands.squeue_argv([bad]), lambda: commands.sacct_argv([bad]),
                  lambda: commands.scancel_argv(bad)):
        with pytest.raises(InvalidJobSpecError, match="not a Slurm job id"):
            build()


def test_sacct_argv():
    argv = commands.sacct_argv(["5", "6"], since="2026-01-31T12:00:00", allocations=True)
    assert argv[:3] == ["sacct", "--parsable2", "--noheader"]
    assert f"--format={','.join(SACCT_FIELDS)}" in argv and SACCT_FIELDS[-1] == "Comment"
    assert "--jobs=5,6" in argv and "--allocations" in argv and "--starttime=2026-01-31T12:00:00" in argv
    with pytest.raises(InvalidJobSpecError, match="since"):
        commands.sacct_argv(["5"], since="yesterday; rm")


def test_other_argv():
    assert commands.scancel_argv(42) == ["scancel", "42"]  # type: ignore[arg-type]
    assert commands.squeue_mine_argv()[:2] == ["squeue", "--noheader"] and "--me" in commands.squeue_mine_argv()
    assert commands.sinfo_argv()[0] == "sinfo" and commands.partitions_argv()[:3] == ["scontrol", "show", "partition"]


def test_chunk_keeps_command_lines_short():
    groups = commands.chunk(str(i) for i in range(1201))
    assert [len(g) for g in groups] == [500, 500, 201]


# ------------------------------------------------------------------------------------ sbatch
@pytest.mark.parametrize(("out", "job_id"), [("123\n", "123"), ("123;cluster\n", "123"),
                                             ("sbatch: warning: x\n456\n", "456")])
def test_parse_sbatch(out, job_id):
    assert parse_sbatch(out) == job_id


@pytest.mark.parametrize("out", ["", "Submitted batch job\n", "abc;x"])
def test_parse_sbatch_without_an_id(out):
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch(out)


# ------------------------------------------------------------------------------------ sacct
def test_parse_sacct_real_output():
    jobs = parse_sacct(SACCT_REAL)
    assert sorted(jobs) == ["35", "38", "40", "43", "45", "46"]
    exit3 = jobs["35"]
    assert (exit3["state"], exit3["exit_code"], exit3["signal"]) == ("FAILED", 3, None)
    assert exit3["requested_memory_bytes"] == 64 * 1024**2 and exit3["time_limit_seconds"] == 120
    oom = jobs["38"]
    assert (oom["state"], oom["exit_code"], oom["signal"]) == ("FAILED", 137, 9)  # sacct "0:9": 128 + 9
    assert oom["steps"][0]["state"] == "CANCELLED" and oom["steps"][0]["step"] == "batch"
    assert oom["max_rss_bytes"] == 426044 * 1024  # the job's peak comes from its steps
    assert oom["elapsed_seconds"] == 2 and oom["node_list"] == "vm" and oom["alloc_cpus"] == 1
    assert jobs["43"]["state"] == "CANCELLED" and jobs["43"]["steps"][0]["signal"] == 15
    # job line "0:0", batch step "0:15": the job takes the step's signal, as 22.05's REST reports it
    assert (jobs["43"]["exit_code"], jobs["43"]["signal"]) == (143, 15)
    mpi = jobs["45"]
    assert [s["step"] for s in mpi["steps"]] == ["batch", "0"]
    assert mpi["total_cpu_seconds"] == pytest.approx(0.151)
    assert jobs["40"]["end"] == "Unknown" and jobs["40"]["state"] == "RUNNING"
    assert jobs["46"]["node_list"] is None and jobs["46"]["steps"] == []


def test_parse_sacct_extern_steps_tags_and_free_text_comments():
    line = f"77|x|COMPLETED|0:0|00:01:00||00:00:30|n1|4G|01:00:00|4|s|s|e|{'hpcai-tag=' + TAG}\n"
    extern = "77.extern|extern|COMPLETED|0:0|00:01:00|1024K|00:00:00|n1|||4|s|s|e|\n"
    batch = "77.batch|batch|COMPLETED|0:0|00:01:00|1.5G|00:00:29|n1|||4|s|s|e|\n"
    jobs = parse_sacct(line + extern + batch + "78|y|FAILED|1:0|00:00:01||00:00:00|n1|1G|UNLIMITED|1|s|s|e|a|b|c\n")
    job = jobs["77"]
    assert job["tag"] == TAG
    assert {s["step"] for s in job["steps"]} == {"extern", "batch"}
    assert job["max_rss_bytes"] == int(1.5 * 1024**3)  # the peak over its steps
    assert jobs["78"]["time_limit_seconds"] is None and jobs["78"]["tag"] is None  # "a|b|c" is free text


def test_parse_sacct_array_tasks_share_one_record():
    text = (
        "900_1|arr|COMPLETED|0:0|00:00:05||00:00:01|n1|1G|00:10:00|1|s|s|e|\n"
        "900_1.batch|batch|COMPLETED|0:0|00:00:05|10M|00:00:01|n1|||1|s|s|e|\n"
        "900_2|arr|COMPLETED|0:0|00:00:06||00:00:01|n1|1G|00:10:00|1|s|s|e|\n"
        "900_2.batch|batch|COMPLETED|0:0|00:00:06|30M|00:00:01|n1|||1|s|s|e|\n"
    )
    jobs = parse_sacct(text)
    assert list(jobs) == ["900"]
    assert [t["task"] for t in jobs["900"]["array_tasks"]] == ["900_1", "900_2"]
    assert jobs["900"]["max_rss_bytes"] == 30 * 1024**2


def test_parse_sacct_array_with_a_failed_task_is_failed():
    text = (
        "900_1|arr|COMPLETED|0:0|00:00:05||00:00:01|n1|1G|00:10:00|1|s|s|e|\n"
        "900_2|arr|FAILED|1:0|00:00:06||00:00:01|n1|1G|00:10:00|1|s|s|e|\n"
        "900_[3-5]|arr|PENDING|0:0|00:00:00||00:00:00|None assigned|1G|00:10:00|1|s|Unknown|Unknown|\n"
    )
    from airflow_provider_hpcai.slurm.states import phase_of

    assert phase_of(parse_sacct(text)["900"]["state"]) is Phase.ACTIVE
    assert phase_of(parse_sacct(text.rsplit("900_[", 1)[0])["900"]["state"]) is Phase.FAILED


def test_parse_sacct_ignores_short_and_blank_lines():
    assert parse_sacct("\n\n1|x|RUNNING\n") == {}


@pytest.mark.parametrize(("text", "size"), [("426044K", 426044 * 1024), ("2G", 2 * 1024**3), ("1.5M", 1572864),
                                            ("0", 0), ("", None), (None, None), ("4000Mn", 4000 * 1024**2),
                                            ("64Mc", 64 * 1024**2), ("n/a", None), ("12", 12)])
def test_parse_size_bytes(text, size):
    assert parse_size_bytes(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("00:00.002", 0.002), ("01:02:03", 3723), ("2-00:00:01", 172801),
                                               ("05:30", 330), ("UNLIMITED", None), ("", None),
                                               ("Partition_Limit", None)])
def test_parse_slurm_seconds(text, seconds):
    assert parse_slurm_seconds(text) == pytest.approx(seconds) if seconds is not None else \
        parse_slurm_seconds(text) is None


# ------------------------------------------------------------------------------------ squeue
def test_parse_squeue_states_reasons_and_tags():
    text = (f"11|hpcai|PENDING|Priority|hpcai-tag={TAG}\n"
            "12|hpcai|RUNNING|None|(null)\n"
            "13|hpcai|COMPLETING|None|some free text | with bar\n"
            "14|hpcai|CANCELLED|None|\n\ngarbage\n")
    jobs = parse_squeue(text)
    assert jobs["11"].state == "PENDING" and jobs["11"].reason == "Priority" and jobs["11"].tag == TAG
    assert jobs["12"].reason == "" and jobs["12"].tag is None and jobs["12"].phase is Phase.ACTIVE
    assert jobs["13"].phase is Phase.ACTIVE and jobs["14"].phase is Phase.FAILED


def test_parse_squeue_folds_rows_of_one_job():
    running = "7|a|RUNNING|None|x\n7|a|COMPLETED|None|x\n"
    failed = "8|a|COMPLETED|None|x\n8|a|FAILED|NonZeroExitCode|x\n"
    jobs = parse_squeue(running + failed)
    assert jobs["7"].phase is Phase.ACTIVE
    assert jobs["8"].state == "FAILED" and jobs["8"].reason == "NonZeroExitCode"


def test_squeue_array_tasks_fold_into_the_array_job_as_squeue_prints_them():
    # Array 500 (tasks 0-4): tasks 0-3 were split off as jobs 501-504; the master record 500
    # now is task 4. Rendered with squeue's documented meaning of each format letter.
    def row(job_id: str, index: str, state: str) -> str:
        return render_squeue(SQUEUE_FORMAT, {"A": job_id, "a": "hpcai", "F": "500", "K": index, "i": f"500_{index}",
                                             "T": state, "r": "None", "k": "hpcai-tag=" + TAG})
    text = "\n".join([row("501", "0", "RUNNING"), row("502", "1", "COMPLETED"), row("503", "2", "COMPLETED"),
                      row("504", "3", "COMPLETED"), row("500", "4", "COMPLETED")]) + "\n"
    jobs = parse_squeue(text)
    assert set(jobs) == {"500"}
    assert jobs["500"].phase is Phase.ACTIVE


# ------------------------------------------------------------------------------------ sinfo / scontrol
def test_parse_sinfo_real_output():
    nodes = parse_sinfo("vm|debug*|mixed|1/255/0/256|23081|21407\nvm|long|mixed|1/255/0/256|23081|21407\n"
                        "gpu1|gpu|drained|0/0/16/16|N/A|N/A\nbad line\n")
    assert nodes[0] == {"name": "vm", "partition": "debug", "state": "mixed", "cpus_allocated": 1, "cpus_idle": 255,
                        "cpus_total": 256, "memory_mb": 23081, "free_memory_mb": 21407}
    assert nodes[1]["partition"] == "long"
    assert nodes[2]["memory_mb"] is None and nodes[2]["cpus_total"] == 16
    assert len(nodes) == 3


SCONTROL_REAL = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=01:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 "
    "RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=256 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
    "TRES=cpu=256,mem=23081M,node=1,billing=256\n"
    "PartitionName=long AllowGroups=ALL Default=NO MaxTime=1-00:00:00 Nodes=vm State=UP TotalCPUs=256 "
    "MaxMemPerNode=64000 TRES=cpu=256,mem=23081M,node=1,billing=256\n"
)


def test_parse_partitions_real_output():
    parts = parse_partitions(SCONTROL_REAL)
    assert parts["debug"]["max_time_seconds"] == 3600 and parts["debug"]["default"] is True
    assert parts["debug"]["total_cpus"] == 256 and parts["debug"]["max_memory_per_node_mb"] is None
    assert parts["long"]["max_time_seconds"] == 86400 and parts["long"]["default"] is False
    assert parts["long"]["max_memory_per_node_mb"] == 64000 and parts["long"]["nodes"] == "vm"
