"""Fixtures of the hostile-input suite: the sentinel folder, checked around every test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.hostile.payloads import SENTINEL, SENTINEL_DIR


@pytest.fixture(scope="session", autouse=True)
def sentinel_dir() -> Iterator[None]:
    """A world-writable folder for the sentinel (jobs may run as another local user)."""
    SENTINEL_DIR.mkdir(exist_ok=True)
    SENTINEL_DIR.chmod(0o1777)
    SENTINEL.unlink(missing_ok=True)
    yield
    shutil.rmtree(SENTINEL_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_sentinel_after_test() -> Iterator[None]:
    """Whatever a test does, the sentinel must not exist when it ends."""
    SENTINEL.unlink(missing_ok=True)
    yield
    created = SENTINEL.exists()
    SENTINEL.unlink(missing_ok=True)
    assert not created, f"the sentinel {SENTINEL} was created during the test: a payload ran as code"
