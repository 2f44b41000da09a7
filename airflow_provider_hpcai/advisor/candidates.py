"""History candidates of the guarded policy (:data:`~.guard.EXTRA_CANDIDATES`), for a whole trace.

Each extra candidate is ``(series kind, feature, factor)``: the jobs whose history it reads
(the *series kind*), one of the recency :data:`~.features.FEATURES` of that history, and a
factor. Series kinds:

* ``user``: all the user's jobs; ``factor x`` the feature's run time;
* ``user_request``: the user's jobs with the same request (a round-value request usually names
  one application);
* ``user_procs``: the user's jobs with the same number of cores (one application at one size);
* ``user_ratio``: all the user's jobs, but the history holds each job's *share of its request*
  used (run / request): the candidate is ``factor x`` the feature's share ``x`` the job's own
  request, so it scales with the request when a user's requests track their work.

Every candidate reads only jobs that had finished when the job was submitted; NaN where the
series has no history yet.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SERIES_KINDS", "history_candidate"]

SERIES_KINDS: tuple[str, ...] = ("user", "user_request", "user_procs", "user_ratio")


def _codes(user: Any, other: Any) -> Any:
    """Integer codes of the (user, other) pairs."""
    import numpy as np

    _, inverse = np.unique(np.stack([np.asarray(user, dtype=float), np.asarray(other, dtype=float)], axis=1),
                           axis=0, return_inverse=True)
    return inverse.ravel().astype(np.int64)


def history_candidate(
    *, submit: Any, run: Any, request: Any, procs: Any, user: Any, kind: str, feature: str, factor: float,
) -> Any:
    """One extra candidate limit per job (seconds; NaN without history).

    :param submit: submission times; ``run``: run times (capped at the request); ``request``:
        the users' limits; ``procs``: cores; ``user``: integer user codes (1-D arrays, same length).
    :param kind: one of :data:`SERIES_KINDS`.
    :param feature: a history feature of :data:`~.features.FEATURES` (``log_max_last20``, ...).
    :param factor: multiplies the feature's value.
    """
    import numpy as np

    from airflow_provider_hpcai.advisor.features import FEATURES, history_features

    if kind not in SERIES_KINDS:
        raise ValueError(f"unknown series kind {kind!r}; known: {SERIES_KINDS}")
    if feature not in FEATURES or feature in ("const", "has_hist", "log_request", "log_procs"):
        raise ValueError(f"{feature!r} is not a history feature of {FEATURES}")
    if not factor > 0:
        raise ValueError(f"the factor must be above 0, not {factor!r}")
    submit = np.asarray(submit, dtype=float)
    run = np.asarray(run, dtype=float)
    request = np.asarray(request, dtype=float)
    user = np.asarray(user)
    codes = {"user": user, "user_ratio": user}.get(kind)
    if codes is None:
        codes = _codes(user, request if kind == "user_request" else procs)
    value = run / request if kind == "user_ratio" else run
    X = history_features(submit, submit + run, codes, value, request, procs)
    has = X[:, FEATURES.index("has_hist")] > 0
    out = factor * np.exp(X[:, FEATURES.index(feature)])
    if kind == "user_ratio":
        out = out * request
    return np.where(has, out, np.nan)
