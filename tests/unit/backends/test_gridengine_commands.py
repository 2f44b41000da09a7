"""Grid Engine's commands and answers, string-tested (shapes recorded from Debian 12's gridengine 8.1.9)."""

from __future__ import annotations

import pytest

from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.gridengine import commands
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag

QSTAT = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>7</JB_job_number>
      <JB_name>hpcai-0123456789abcdef0123</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>8</JB_job_number>
      <JB_name>t</JB_name>
      <JB_owner>hpcai</JB_owner>
      <state>Eqw</state>
    </job_list>
  </job_info>
</job_info>
"""

QACCT = """==============================================================
qname        all.q
hostname     vm
jobname      t
jobnumber    3
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 3s
cpu          0.010s
maxvmem      3.387MB
"""


def test_qstat_xml_gives_each_job_and_its_shared_state():
    jobs = commands.parse_qstat_xml(QSTAT)
    assert jobs["7"]["name"] == "hpcai-0123456789abcdef0123" and commands.live_state(jobs["7"]["state"]) == "RUNNING"
    assert commands.live_state(jobs["8"]["state"]) == "FAILED"  # Eqw never runs by itself
    assert [commands.live_state(s) for s in ("qw", "hqw", "dr", "t", "s")] == [
        "PENDING", "PENDING", "COMPLETING", "RUNNING", "SUSPENDED"]


@pytest.mark.parametrize(("failed", "exit_status", "wall", "vmem", "state"), [
    ("0", "0", "1s", "1MB", "COMPLETED"),
    ("0", "3", "1s", "1MB", "FAILED"),
    ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137", "3s", "3.387MB", "TIMEOUT"),
    ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137", "1s", "290MB", "OUT_OF_MEMORY"),
    ("100 : assumedly after job", "137", "4s", "3MB", "CANCELLED"),
    ("11  : before job", "0", "0s", "0B", "FAILED"),
])
def test_qacct_failed_code_says_who_ended_the_job(failed, exit_status, wall, vmem, state):
    record = commands.parse_qacct(QACCT.replace("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", failed)
                                  .replace("137                  (Killed)", exit_status)
                                  .replace("ru_wallclock 3s", f"ru_wallclock {wall}")
                                  .replace("maxvmem      3.387MB", f"maxvmem      {vmem}"))
    got, code, _ = commands.final_state(record, time_limit=2, memory_limit=300 * 2**20)
    assert got == state and code == int(exit_status)


def test_qsub_argv_names_the_job_by_its_tag_and_passes_every_value_as_its_own_argument():
    tag = make_tag("d", "t", "r")
    spec = JobSpec(name="d.t", script="echo 'hi'", tag=tag, environment={"X": "a b; rm -rf /"},
                   resources=Resources(memory="1G", time_limit=120))
    argv = commands.qsub_argv(spec, script_path="/w/s.sh", stdout_path="/w/o", stderr_path="/w/e", workdir="/w")
    assert argv[:4] == ["qsub", "-terse", "-N", tag] and argv[-1] == "/w/s.sh"
    assert "h_rt=120" in argv and f"h_vmem={2**30}" in argv
    assert "export X='a b; rm -rf /'" in commands.job_script(spec)
    with pytest.raises(InvalidJobSpecError, match="job id"):
        commands.check_job_id("7; qdel -u '*'")
    with pytest.raises(InvalidJobSpecError, match="arrays"):
        commands.qsub_argv(spec.replace(array="0-3"), script_path="/s", stdout_path="/o", stderr_path="/e",
                           workdir="/w")
