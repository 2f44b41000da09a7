"""What a plugin user sees of other users' instances and jobs (see ``SECURITY.md``).

Everyone with read access sees every instance's id, DAG id, template, version, owner and
creation time, so that names and ownership stay visible. Parameters and resource overrides
are shown for one's own instances only, unless the caller manages every instance (Op and
Admin). Usage rows (finished jobs) are likewise limited to the caller's own jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["HIDDEN_FIELDS", "MAX_USAGE_ROWS", "own_usage", "visible_instances"]

#: Instance fields shown only to the owner and to those who manage every instance.
HIDDEN_FIELDS = ("params", "resources")
#: Rows read from the job history before filtering a user's own.
MAX_USAGE_ROWS = 5000


def visible_instances(records: Iterable[Mapping[str, Any]], user: str, sees_all: bool) -> list[dict[str, Any]]:
    """Instance records as ``user`` may see them.

    :param records: the repository's instance records.
    :param user: the caller's user name.
    :param sees_all: whether the caller manages every instance.
    :return: copies; other owners' records carry ``"params": null`` and ``"hidden": true``.
    """
    out = []
    for record in records:
        item = dict(record)
        if not sees_all and item.get("owner") != user:
            item.update({field: None for field in HIDDEN_FIELDS})
            item["hidden"] = True
        out.append(item)
    return out


def own_usage(rows: Iterable[Mapping[str, Any]], user: str) -> list[dict[str, Any]]:
    """The usage rows (finished jobs) whose ``user`` is ``user``."""
    return [dict(row) for row in rows if row.get("user") == user]
