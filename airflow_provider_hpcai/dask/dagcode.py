"""Functions defined in a DAG file reach the Dask workers by value.

Airflow loads a DAG file as a module named ``unusual_prefix_<sha1>_<file name>``
(``airflow.sdk._shared.module_loading.dag_file``) that exists only in the process that parsed it.
distributed pickles a task with the standard ``pickle`` first and uses cloudpickle only when that
fails; ``pickle`` stores a function by reference (module and name) whenever it finds the very
same object in ``sys.modules``. In a task the LocalExecutor (or any real task runner) runs, the
DAG file was parsed once, so a worker receiving ``client.map(square, ...)`` for a ``square``
defined in the DAG file fails with ``ModuleNotFoundError: No module named 'unusual_prefix_...'``;
distributed then closes that worker, and with every worker gone the futures wait for ever.
(``airflow dags test`` parses the file twice, so there ``pickle`` fails, cloudpickle takes over and
the bug does not show.)

While the task's function runs, :func:`dag_functions_by_value` takes the DAG file's module out of
``sys.modules`` (the module object lives on: functions keep their globals). ``pickle`` then cannot
find it and distributed falls back to cloudpickle, which ships the code of every function of that
module by value, to any worker: local process, Slurm job or pod. Modules the workers can import
are left alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["DAG_MODULE_PREFIX", "dag_functions_by_value", "dag_module_name"]

#: The prefix Airflow gives the module of every parsed DAG file.
DAG_MODULE_PREFIX = "unusual_prefix_"


def dag_module_name(func: Callable[..., Any]) -> str | None:
    """The name of the loaded DAG-file module ``func`` (or what it wraps) comes from, else ``None``."""
    seen: set[int] = set()
    current: Any = func
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = getattr(current, "__module__", None)
        if isinstance(name, str) and name.startswith(DAG_MODULE_PREFIX) and name in sys.modules:
            return name
        current = getattr(current, "__wrapped__", None)
    return None


@contextmanager
def dag_functions_by_value(func: Callable[..., Any]) -> Iterator[str | None]:
    """Hide ``func``'s DAG-file module from ``sys.modules`` for the block; yields its name (``None``: nothing hidden).

    The module is put back when the block ends, also on errors.
    """
    name = dag_module_name(func)
    module = sys.modules.pop(name, None) if name else None
    try:
        yield name if module is not None else None
    finally:
        if name and module is not None:
            sys.modules.setdefault(name, module)
