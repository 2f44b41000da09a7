"""Small stand-ins for Airflow runtime objects used by operator tests."""

from __future__ import annotations

import uuid
from typing import Any


class FakeStore:
    """A dict-backed stand-in for Airflow 3.3's ``task_state_store`` (persists across tries)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


class FakeTI:
    """The few task-instance attributes the operators use."""

    def __init__(self, map_index: int = -1, try_number: int = 1) -> None:
        self.map_index = map_index
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def make_context(run_id: str | None = None, store: FakeStore | None = None, **ti_kwargs: Any) -> dict[str, Any]:
    return {"ti": FakeTI(**ti_kwargs), "run_id": run_id or f"test__{uuid.uuid4().hex}",
            "task_state_store": store if store is not None else FakeStore()}
