"""Reading configurations and writing results (rank 0 writes)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["load_config", "to_jsonable", "write_json"]


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or YAML configuration file into a dict.

    A file may hold the parameters directly, or under a ``params`` key (the other keys are
    then ignored, so a stage can keep metadata next to them).

    :param path: ``.json``, ``.yaml`` or ``.yml`` file.
    :raises ValueError: if the file is missing, unreadable or not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml  # lazy: only YAML configs need it

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # any parse error becomes a clear message
        raise ValueError(
            f"config file {str(p)!r} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {str(p)!r} must hold a mapping of parameters, got {type(data).__name__}"
        )
    if "params" in data and isinstance(data["params"], dict):
        data = data["params"]
    return data


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON atomically (write then rename)."""
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
