"""Functions defined in a DAG file reach workers that cannot import the DAG file's module."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator

import pytest

from airflow_provider_hpcai.dask.dagcode import dag_functions_by_value, dag_module_name

NAME = "unusual_prefix_0123456789abcdef0123456789abcdef01234567_my_dag"


@pytest.fixture()
def dag_module() -> Iterator[types.ModuleType]:
    """A module as a task runner loads a DAG file (parsed once): in this process's sys.modules only."""
    module = types.ModuleType(NAME)
    exec("OFFSET = 1\n\ndef helper(x):\n    return x + OFFSET\n\n"  # noqa: S102
         "def square(x):\n    return helper(x * x)\n", module.__dict__)
    sys.modules[NAME] = module
    yield module
    sys.modules.pop(NAME, None)


def _run_elsewhere(payload: bytes) -> subprocess.CompletedProcess[bytes]:
    """Load ``(func, arg)`` as distributed does in a fresh process (a worker) and call it."""
    code = ("import sys; from distributed.protocol.pickle import loads; "
            "func, arg = loads(sys.stdin.buffer.read()); print(func(arg))")
    return subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, timeout=120)


def test_a_dag_file_function_runs_in_a_worker_without_the_module(dag_module: types.ModuleType) -> None:
    from distributed.protocol.pickle import dumps

    before = _run_elsewhere(dumps((dag_module.square, 7)))
    assert before.returncode != 0 and b"No module named 'unusual_prefix_" in before.stderr, "by reference before"
    with dag_functions_by_value(dag_module.square) as hidden:
        assert hidden == NAME
        payload = dumps((dag_module.square, 7))
        assert dag_module.square(7) == 50, "the function still works here meanwhile"
    after = _run_elsewhere(payload)
    assert after.returncode == 0 and after.stdout.strip() == b"50", after.stderr[-2000:]
    assert sys.modules[NAME] is dag_module, "put back after the block"


def test_the_module_is_put_back_when_the_block_raises(dag_module: types.ModuleType) -> None:
    with pytest.raises(ZeroDivisionError), dag_functions_by_value(dag_module.square):
        assert NAME not in sys.modules
        _ = 1 / 0
    assert sys.modules[NAME] is dag_module


def test_a_decorated_callable_is_followed_to_its_dag_file(dag_module: types.ModuleType) -> None:
    def wrapper(*args: object) -> object:
        return dag_module.square(*args)

    wrapper.__wrapped__ = dag_module.square  # type: ignore[attr-defined]
    assert dag_module_name(wrapper) == NAME


def test_importable_modules_are_left_alone() -> None:
    for func in (subprocess.run, len, lambda x: x):
        with dag_functions_by_value(func) as hidden:
            assert hidden is None
    assert "subprocess" in sys.modules
