"""Example ``entrypoint`` factory for templates whose DAG is written in Python.

A manifest points at it with ``entrypoint: airflow_provider_hpcai.templates.examples:parameter_sweep``.
A factory receives validated parameters and resources and returns a DAG with the given id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_provider_hpcai.resources import Resources

__all__ = ["parameter_sweep"]


def parameter_sweep(
    *, dag_id: str, params: Mapping[str, Any], resources: Resources, instance: Mapping[str, Any]
) -> DAG:
    """A fan-out of ``params["points"]`` local runs of ``python -c`` followed by a gather step.

    :param dag_id: the id the DAG must have.
    :param params: validated parameters: ``points`` (int) and ``label`` (str).
    :param resources: the instance's resources (unused by local stages; shown in the docs).
    :param instance: the instance record.
    """
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from airflow_provider_hpcai.templates.bash_stage import QuotedBashOperator

    created = datetime.fromisoformat(str(instance["created"]))
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=created if created.tzinfo else created.replace(tzinfo=UTC),
        catchup=False,
        tags=["hpcai-template", str(instance.get("template", "sweep"))],
        doc_md=f"Parameter sweep over {int(params['points'])} points; resources {resources.to_dict()}",
    ) as dag:
        gather = EmptyOperator(task_id="gather")
        for point in range(int(params["points"])):
            run = QuotedBashOperator(
                task_id=f"point_{point}",
                argv=["python3", "-c", "import sys; print(sys.argv[1], sys.argv[2])", str(params["label"]), str(point)],
            )
            run >> gather
    return dag
