"""Train the resource advisor: refresh history, train, evaluate, promote if better.

Runs daily (and on demand). Steps, each a plain function of
:mod:`airflow_provider_hpcai.advisor.pipeline` or :mod:`~airflow_provider_hpcai.advisor.refresh`:

1. ``refresh_history``: adds the finished jobs Slurm accounting knows since the last refresh
   (through the ``slurm_conn_id`` connection's :class:`SlurmHook`: this provider's tagged
   jobs, or every job of the connection's user with ``scope="user"``) to the history store
   under ``[hpcai] advisor_home``, which the operators also feed as their jobs finish. An
   unreachable cluster is logged and skipped: the store alone is used.
2. ``train``: the compact quantile model; below ``min_jobs`` usable jobs the synthetic
   bootstrap history (DAG ``hpcai_synthetic``, see ``advisor/bootstrap.py``) is added.
3. ``evaluate``: time-ordered replay over the history: kill rate, waste cut, calibration, score.
4. ``promote``: MLflow run + registered version (``[hpcai] mlflow_tracking_uri``, default SQLite
   under the advisor home); alias ``champion`` and ``champion.json`` (what the task policy
   reads) move only when the score beats the champion's.

Nothing heavy is imported at parse time: every import of the advisor happens inside a task.
``HPCAI_ADVISOR_SLURM_CONN`` sets the default connection (``none`` skips the Slurm refresh).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

DEFAULT_CONN = os.environ.get("HPCAI_ADVISOR_SLURM_CONN", "slurm_default")


@dag(
    dag_id="hpcai_advisor_training",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["hpcai", "advisor"],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "slurm_conn_id": Param(DEFAULT_CONN, type="string", description="Slurm connection ('none': skip)"),
        "scope": Param("tagged", enum=["tagged", "user"], description="tagged jobs only, or all of the user's"),
        "lookback_days": Param(7, type="integer", minimum=1, description="how far the first refresh looks back"),
        "min_jobs": Param(200, type="integer", minimum=0, description="bootstrap below this many usable jobs"),
    },
    doc_md=__doc__,
)
def hpcai_advisor_training():
    @task
    def refresh_history(**context) -> dict:
        import logging

        from airflow_provider_hpcai.advisor.settings import read_settings

        params = context["params"]
        conn_id = (params.get("slurm_conn_id") or "").strip()
        if conn_id.lower() in ("", "none"):
            return {"skipped": "no Slurm connection configured"}
        from airflow_provider_hpcai.advisor.refresh import refresh_history as refresh
        from airflow_provider_hpcai.hooks.slurm import SlurmHook

        hook = SlurmHook(conn_id)
        try:
            summary = refresh(read_settings().home, hook, scope=params["scope"],
                              lookback_s=params["lookback_days"] * 86400.0, user=hook.extras.get("user"))
        except Exception as error:  # no cluster here: train on the store as it is
            logging.getLogger(__name__).warning("Slurm accounting not refreshed (%s: %s); using the stored "
                                                "history only", type(error).__name__, error)
            return {"skipped": f"{type(error).__name__}: {error}"}
        finally:
            hook.close()
        return summary

    @task
    def train(refreshed: dict, **context) -> dict:
        from airflow_provider_hpcai.advisor import pipeline
        from airflow_provider_hpcai.advisor.settings import read_settings

        folder = pipeline.run_folder(read_settings().home, context["run_id"])
        gathered = pipeline.gather_history(read_settings().home, folder, min_jobs=context["params"]["min_jobs"])
        return {**pipeline.train_candidate(folder), "history": gathered, "refresh": refreshed}

    @task
    def evaluate(candidate: dict) -> dict:
        from airflow_provider_hpcai.advisor import pipeline

        return {**pipeline.evaluate_candidate(candidate["folder"]), "history": candidate["history"]}

    @task
    def promote(evaluated: dict) -> dict:
        from airflow_provider_hpcai.advisor import pipeline
        from airflow_provider_hpcai.advisor.settings import read_settings

        settings = read_settings()
        history = evaluated["history"]
        params = {"training_jobs": history["training_jobs"], "bootstrapped": history["bootstrapped"],
                  "stored_jobs": history["stored_jobs"]}
        result = pipeline.promote_candidate(evaluated["folder"], home=settings.home,
                                            tracking_uri=settings.tracking_uri, params=params)
        verdict = "promoted to champion" if result["promoted"] else "kept the champion"
        print(f"advisor version {result['version']} score {result['score']:.4f}: {verdict} "
              f"(previous {result['previous_champion']} score {result['previous_score']})")
        return result

    promote(evaluate(train(refresh_history())))


hpcai_advisor_training()
