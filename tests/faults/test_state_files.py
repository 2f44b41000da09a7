"""Files the provider reads break: the advisor's champion export and MLflow store, the template
repository under a publisher killed mid-write. DAGs still parse and tasks still run.

Not disruptive to the cluster.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings
from airflow_provider_hpcai.templates.storage import TMP_PREFIX
from tests.faults import checks, cluster
from tests.faults.cluster import TaskDef
from tests.faults.conftest import CORRUPT_CHAMPION
from tests.faults.stack import ROOT, AirflowStack

pytestmark = [pytest.mark.faults, pytest.mark.integration]

MIB = 1024**2


def _per_parse(events: list[dict], needle: str) -> list[int]:
    """How many events mention ``needle`` after each "Filling up the DagBag" (one per parse)."""
    counts: list[int] = []
    for event in events:
        text = str(event.get("event", ""))
        if text.startswith("Filling up the DagBag"):
            counts.append(0)
        elif counts and needle in text:
            counts[-1] += 1
    return counts


def _dag_processor_events(stack: AirflowStack, dag_file: str) -> list[dict]:
    events: list[dict] = []
    for path in sorted((stack.home / "logs" / "dag_processor").glob(f"*/dags-folder/{dag_file}.log")):
        events += cluster.log_events(path.read_text(errors="replace"))
    return events


@pytest.mark.slurm
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_policy_falls_back_when_the_registry_export_is_unusable(stack: AirflowStack, deploy, advisor_home: Path,
                                                               damage: str) -> None:
    """Enforce mode with a corrupt (or no) champion and MLflow store: the users' requests run, said once."""
    champion, store = advisor_home / "champion.json", advisor_home / "mlflow.db"
    if damage == "missing":
        champion.unlink()
        store.unlink()
    expected = "unreadable" if damage == "corrupt" else "No advisor champion"
    try:
        dag_id = f"hpcai_fx_advisor_{damage}"
        tasks = [TaskDef("small", script="echo small-done", memory="48M", time_limit=240),
                 TaskDef("large", script="echo large-done", memory="72M", time_limit=360)]
        deploy(dag_id, tasks)
        run_id = stack.trigger(dag_id)
        stack.wait_done(dag_id, run_id, timeout=240)
        assert stack.import_errors() == []
        for task in tasks:
            checks.finished_task(stack, dag_id, run_id, task.task_id)
            result = checks.result_in_xcom(stack, dag_id, run_id, task.task_id)
            decision = result["advisor"]
            assert decision["mode"] == "enforce" and decision["model_version"] is None, decision
            assert "kept the request" in decision["reason"] and decision["applied"] == decision["requested"]
            assert result["requested"]["memory"] == int(task.memory[:-1]) * MIB
            assert result["requested"]["time_limit"] == task.time_limit
            minutes = task.time_limit // 60
            expected_row = f"{task.memory}|00:{minutes:02d}:00"
            deadline = time.monotonic() + 60
            while True:  # slurmdbd fills a job's record in stages: wait for the final one
                # --duplicates: job ids are reused after a controller state loss; the tag picks ours.
                rows = subprocess.run(["sacct", "-j", result["job_id"], "-X", "-n", "-P", "--duplicates",
                                       "--format=ReqMem,Timelimit,Comment"], capture_output=True, text=True,
                                      check=True).stdout.split()
                accounted = [row.rsplit("|", 1)[0] for row in rows if row.endswith(str(result["tag"]))]
                if accounted == [expected_row] or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert accounted == [expected_row], accounted  # what Slurm was asked for
            checks.one_job_per_try(dag_id, run_id, task.task_id, settle=0)
            # Each worker process (submit, then resume) parses the two-task file once: one warning each.
            worker = _per_parse(cluster.log_events(stack.task_log(dag_id, run_id, task.task_id, 1)), expected)
            assert worker == [1, 1], worker
        dag_processor = _per_parse(_dag_processor_events(stack, f"{dag_id}.py"), expected)
        assert dag_processor and set(dag_processor) == {1}, dag_processor
    finally:
        champion.write_text(CORRUPT_CHAMPION)
        store.write_bytes(b"this is not an SQLite database\0" * 8)


MANIFEST = """\
name: fx-crash
version: {version}
title: Crash test {version}
description: Published over and over by a process that gets killed.
parameters:
  type: object
  additionalProperties: false
  properties:
    word: {{type: string, maxLength: 50, default: hello}}
stages:
  - id: say
    kind: bash
    args:
      argv: [echo, "{{{{ params.word }}}}"]
"""

_PUBLISHER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings
    root, start, text = Path(sys.argv[1]), int(sys.argv[2]), sys.stdin.read()
    repo = TemplateRepository(root, TemplateSettings(root=root))
    for minor in range(start, start + 100000):
        repo.publish(text.replace("VERSION", f"1.{minor}.0"), publisher="crash-test")
        print(minor, flush=True)
""")


def test_publisher_killed_mid_write_leaves_whole_versions(tmp_path: Path) -> None:
    """SIGKILL a process publishing versions back to back at random moments, at least eight times
    and until one kill has landed mid-write.

    Unlike the unit test (which stops the writer at chosen points), nothing is patched here:
    the kills land wherever the publisher happens to be.
    """
    root = tmp_path / "repo"
    text = MANIFEST.format(version="VERSION")
    rng = random.Random(8)
    start, mid_write = 0, 0
    for attempt in range(60):
        if attempt >= 8 and mid_write >= 1:
            break
        proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(root), str(start)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, cwd=ROOT, text=True)
        proc.stdin.write(text)
        proc.stdin.close()
        assert proc.stdout.readline().strip() == str(start), "the publisher never published"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        mid_write += any(p.name.startswith(TMP_PREFIX) for p in (root / "templates" / "fx-crash").iterdir())
        repo = TemplateRepository(root, TemplateSettings(root=root))
        listed = [v["version"] for v in repo.versions("fx-crash")]
        for version in listed:  # every visible version is whole: its bytes match the recorded checksum
            assert repo.get("fx-crash", version).manifest.title == f"Crash test {version}"
        on_disk = [p.name for p in (root / "templates" / "fx-crash").iterdir()
                   if not p.name.startswith(TMP_PREFIX) and p.is_dir()]
        assert sorted(on_disk) == sorted(listed), "a version folder is visible but not readable"
        start = max(int(v.split(".")[1]) for v in listed) + 1
    assert start >= 8
    assert mid_write >= 1, "no kill landed inside a publish in 60 tries (about 60 % of them do)"
    # The next publish (the lock died with the killer's victim) goes through and clears the debris.
    latest = repo.publish(text.replace("VERSION", f"1.{start}.0"))
    assert latest.manifest.version == f"1.{start}.0"
    assert [p.name for p in (root / "templates" / "fx-crash").iterdir() if p.name.startswith(TMP_PREFIX)] == []
    cli = subprocess.run([str(Path(sys.executable).parent / "hpcai"), "templates", "versions", "fx-crash"],
                         capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "AIRFLOW__HPCAI__TEMPLATES_DIR": str(root)})
    assert cli.returncode == 0 and f"1.{start}.0" in cli.stdout, cli.stderr[-2000:]
