"""Fixtures of the Dask unit tests (helpers live in support.py)."""

from __future__ import annotations

import pytest

from tests.unit.dask.support import RecordingFactory


@pytest.fixture()
def recording() -> RecordingFactory:
    return RecordingFactory()
