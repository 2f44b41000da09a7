"""Part of airflow-provider-hpcai."""
