"""Concurrent publishes from separate processes, and processes killed mid-publish."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_provider_hpcai.templates.repository import TemplateRepository
from airflow_provider_hpcai.templates.settings import TemplateSettings

ROOT = Path(__file__).resolve().parents[3]


def _publish(root: str, text: str, barrier, results) -> None:  # runs in a child process
    from airflow_provider_hpcai.templates.errors import TemplateConflictError

    repo = TemplateRepository(root, TemplateSettings(root=Path(root)))
    barrier.wait()
    try:
        published = repo.publish(text)
        results.put(("ok", published.checksum))
    except TemplateConflictError as err:
        results.put(("conflict", str(err)))
    except Exception as err:  # pragma: no cover - reported to the parent
        results.put(("error", repr(err)))


def _race(root: Path, texts: list[str]) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(len(texts)), ctx.Queue()
    procs = [ctx.Process(target=_publish, args=(str(root), text, barrier, results)) for text in texts]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return outcomes


def test_concurrent_publishes_of_one_version_exactly_one_wins(tmp_path, minimal):
    texts = [minimal(title=f"Variant {i}") for i in range(4)]
    outcomes = _race(tmp_path, texts)
    winners = [o for o in outcomes if o[0] == "ok"]
    losers = [o for o in outcomes if o[0] == "conflict"]
    assert len(winners) == 1 and len(losers) == 3, outcomes
    assert all("already published with different content" in msg for _, msg in losers)
    repo = TemplateRepository(tmp_path, TemplateSettings(root=tmp_path))
    assert repo.get("mini").checksum == winners[0][1]
    assert [p.name for p in (tmp_path / "templates" / "mini").iterdir()] == ["1.0.0"]


def test_concurrent_identical_publishes_all_succeed(tmp_path, minimal):
    outcomes = _race(tmp_path, [minimal()] * 3)
    assert {o[0] for o in outcomes} == {"ok"} and len({o[1] for o in outcomes}) == 1


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from airflow_provider_hpcai.templates import storage
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    root, marker, stage = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if stage == "writing":
        real = storage._write_synced
        def slow(path, data):
            real(path, data)
            marker.write_text("x")
            time.sleep(60)
        storage._write_synced = slow
    else:
        real = storage.fsync_dir
        def slow(path):
            real(path)
            if not path.name.startswith(".tmp-") and (path / "1.0.0").exists():
                marker.write_text("x")
                time.sleep(60)
        storage.fsync_dir = slow
    TemplateRepository(root, TemplateSettings(root=Path(root))).publish(sys.stdin.read())
    """
)


@pytest.mark.parametrize("stage,present", [("writing", False), ("renamed", True)])
def test_process_killed_mid_publish_leaves_all_or_nothing(tmp_path, minimal, stage, present):
    root, marker = tmp_path / "repo", tmp_path / "marker"
    text = minimal()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), str(marker), stage],
        stdin=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    proc.stdin.write(text.encode())
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "the publishing child ended early"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    repo = TemplateRepository(root, TemplateSettings(root=root))
    if present:
        assert repo.get("mini").manifest.title == "Mini"
    else:
        assert repo.names() == [] or repo._version_names("mini") == []
        # the lock died with the process: a new publish goes through and clears the debris
        assert repo.publish(text).manifest.version == "1.0.0"
    leftovers = [p.name for p in (root / "templates" / "mini").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []
