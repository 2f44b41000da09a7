"""Reading a mapped task's results never asks for an item past the end.

Airflow's lazy XCom sequence logs ``[error] XCom not found`` for every read past the end, and
``list()`` makes one: the demo's successful runs printed an error per mapped workflow.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hpcai.casestudies.common import mapped_results


class LazySequence:
    """Behaves like ``LazyXComSequence``: a count, reads by index, iteration reads until a miss."""

    def __init__(self, items: list[Any]) -> None:
        self.items, self.misses = items, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        if index >= len(self.items):
            self.misses += 1  # where Airflow logs "XCom not found"
            raise IndexError(index)
        return self.items[index]


def test_reads_every_result_and_nothing_past_the_end() -> None:
    seq = LazySequence([{"a": 1}, {"a": 2}, {"a": 3}])
    assert mapped_results(seq) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert seq.misses == 0
    list(seq)  # what the workflows did before
    assert seq.misses == 1


def test_none_and_plain_lists() -> None:
    assert mapped_results(None) == []
    assert mapped_results([1, 2]) == [1, 2]
