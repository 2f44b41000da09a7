"""The ``[hpcai]`` configuration section: declared once, read in one place.

Values come from ``airflow.cfg`` / ``AIRFLOW__HPCAI__<KEY>`` environment variables through
Airflow's configuration, with the defaults declared here.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CONFIG_OPTIONS", "airflow_home", "default_deferrable", "get", "get_bool", "get_float", "get_int"]

_TRUE = {"1", "true", "yes", "on"}


def _option(description: str, kind: str, default: Any, example: Any = None) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": kind,
        "example": example,
        "default": None if default is None else str(default),
    }


CONFIG_OPTIONS: dict[str, dict[str, Any]] = {
    "default_deferrable": _option(
        "Whether operators defer while their job waits or runs. Unset (the default): follow Airflow's "
        "[operators] default_deferrable, as the cncf.kubernetes provider does.", "boolean", None, "True"),
    "poll_interval": _option("Seconds between batched status queries per Slurm connection.", "float", "10"),
    "max_poll_interval": _option("Longest interval the poller backs off to while nothing changes.", "float", "60"),
    "retry_attempts": _option("Attempts of a status query before a controller outage fails the wait.", "integer", "8"),
    "outage_budget": _option(
        "Seconds a waiting task tolerates an unreachable controller before failing with a clear error.", "float", "600"
    ),
    "stream_logs": _option("Copy job output into the task log while the job runs.", "boolean", "True"),
    "log_output_cap": _option(
        "Bytes of each job output stream copied into the task log (0: no cap). Past the cap the output stays "
        "on the cluster and the task log says where.", "integer", str(64 * 1024 * 1024), str(1024 * 1024 * 1024)),
    "accounting_wait": _option(
        "Seconds a task whose Slurm job ended waits for the job's accounting record while slurmdbd is down or "
        "behind, so the result is not classified without it.", "float", "300", "900"),
    "default_backend": _option("Backend of SimulationOperator when none is given: a name of the backend registry "
                               "(airflow_provider_hpcai.backends.BACKENDS).", "string", "local", "slurm"),
    "local_work_dir": _option("Where the local backend runs jobs.", "string", None, "/var/lib/hpcai/jobs"),
    "advisor_mode": _option("Resource advisor: off, advise, estimate (sets --time-min only) or enforce.", "string", "advise", "enforce"),
    "advisor_enforce_time_min": _option(
        "In enforce mode also set --time-min to the advisor's q0.3 run-time estimate for every job, so the "
        "backfill scheduler plans with it while the guarded limit still kills. Applied only with "
        "advisor_time_min_soft. Unset (the default): follows advisor_time_min_soft. Without --time-min, enforce "
        "waited longer than the users' own requests on all six replayed traces (docs/advisor.md).",
        "boolean", None, "True"),
    "advisor_time_min_soft": _option(
        "The cluster runs with SchedulerParameters=time_min_as_soft_limit (Slurm 23.11+): a job plans with "
        "--time-min and may run to --time. Only then does estimate mode (and advisor_enforce_time_min) set "
        "--time-min: without it Slurm gives a job the backfill scheduler starts a hard limit of its "
        "--time-min (exactly time_min on 22.05 and 24.11) and kills it there.", "boolean", "False", "True"),
    # The guarded policy (advisor/guard.py GuardSpec; docs/advisor.md, "What the policy does"): read in advisor/settings.py.
    "advisor_kill_budget": _option(
        "The site's kill budget: the share of advised jobs the guard may see killed by a cut time limit, on "
        "average and per brake window (between 0 and 1, both excluded).", "float", "0.05", "0.02"),
    "advisor_guard_aim": _option(
        "Share of jobs the guard's kill-calibrated margins let exceed their limit (between 0 and 1, both "
        "excluded; keep it below the kill budget).", "float", "0.04", "0.015"),
    "advisor_guard_max_in_flight": _option(
        "Advised jobs of one series (DAG task) whose outcome is not known yet; a job beyond it keeps its "
        "request (0: no cap).", "integer", "5", "2"),
    "advisor_guard_probation": _option(
        "After a kill, the series keeps its request until this many of its jobs in a row would have fitted "
        "the guard's limit (0: no probation).", "integer", "3", "5"),
    "advisor_guard_brake": _option(
        "Nobody is advised while the kills among the last advisor_guard_brake_window submissions reach this "
        "share of the kill budget (0 to 1; 0: no brake).", "float", "0.85", "0.5"),
    "advisor_guard_brake_window": _option(
        "Submissions the brake looks back over (1 or more).", "integer", "1000", "200"),
    "advisor_guard_abstain_ratio": _option(
        "A limit at or above this share of the request saves too little to risk a kill: the job keeps its "
        "request (above 0, at most 1).", "float", "0.85", "0.7"),
    "advisor_guard_extra_candidates": _option(
        "Opt-in history candidates the guard also weighs per series by their shadow net saving "
        "(comma-separated, out of user_max20_x1.1, user_max20_x1.5 and user_procs_max20: 1.1 and 1.5 x the max "
        "of the series' last 20 run times, 1.2 x the max of its last 20 at the same cores; empty: none).",
        "string", None, "user_max20_x1.1,user_max20_x1.5,user_procs_max20"),
    "advisor_guard_min_saving_share": _option(
        "A job whose cut would save less than this share of a machine-hour (advisor_machine_cores x 3600 "
        "core-seconds) keeps its request: a kill costs the budget the same whatever the job's size (0 to 1, 1 "
        "excluded; 0: off; above 0 needs advisor_machine_cores).", "float", "0.0", "0.01"),
    "advisor_machine_cores": _option(
        "The cluster's cores in all: what advisor_guard_min_saving_share is a share of, per hour.",
        "integer", None, "4096"),
    "advisor_home": _option("Folder for job history and the cached champion model (empty: "
                            "$AIRFLOW_HOME/hpcai/advisor).", "string", None, "/var/lib/hpcai"),
    "mlflow_tracking_uri": _option("MLflow tracking URI for the advisor.", "string", None, "sqlite:////var/lib/hpcai/mlflow.db"),
    "results_dir": _option(
        "Where the case-study workflows write plots and JSON (empty: $HPCAI_RESULTS_DIR, else "
        "$AIRFLOW_HOME/hpcai/results).", "string", None, "/data/hpcai/results"),
    "templates_dir": _option("Folder of the workflow template repository.", "string", None, "/var/lib/hpcai/templates"),
    "templates_backend": _option("Template repository storage: local or git.", "string", "local", "git"),
    "templates_git_remote": _option("Remote the git template backend pushes to.", "string", None,
                                    "git@example.org:hpc/templates.git"),
    "template_factory_allowlist": _option("Module prefixes template DAG factories may come from (comma-separated).",
                                          "string", "airflow_provider_hpcai.,dags_templates.", None),
    "template_bash_programs": _option(
        "Programs a template's bash stage may run, comma-separated: a name or absolute path, or "
        "'python3 -m module' ('*' at the end: any module under that prefix). Arguments stay data.",
        "string", "echo,printf,true,false,sleep,python3 -m simulation_kernels.*,"
        "python3 -m airflow_provider_hpcai.templates.greet", "echo,/opt/site/bin/solver"),
    "template_job_scripts": _option(
        "Allow slurm_job stages in published templates: their script is the publisher's shell code, run on the "
        "cluster as the Slurm connection's account (publishing becomes a code-review act).", "boolean", "False", "True"),
    "templates_builtin": _option("List the templates shipped with the provider next to the site's own.",
                                 "boolean", "True", "False"),
    "template_instance_quota": _option("Template instances one user may hold (0: no limit).", "integer", "50", "200"),
    "template_instance_rate": _option("Template instances one user may create per minute (0: no limit).",
                                      "integer", "10", "30"),
    "template_max_instances": _option(
        "Instances the loader DAG file builds in one parse; the rest are skipped with a logged error "
        "(0: no limit).", "integer", "1000", "2000"),
    "kubernetes_namespace": _option("Namespace of Kubernetes jobs.", "string", None, "hpc"),
    "kubernetes_image": _option("Default image of Kubernetes jobs.", "string", None, "ghcr.io/example/hpcai:0.1.0"),
    "kubernetes_gpu_priority_class": _option("Priority class of GPU jobs on Kubernetes.", "string", None, "hpcai-gpu"),
    "cluster_status_conn_ids": _option(
        "Connections the HPC Resources page may query, comma-separated; the first is its default "
        "(empty: slurm_default and any connection of type slurm).", "string", None, "slurm_cluster,slurm_gpu"),
    "cluster_status_timeout": _option(
        "Seconds each call to the cluster may take when the HPC Resources page asks (one try, no retries).",
        "float", "5", "10"),
    # Jobs that run as their owner (airflow_provider_hpcai.identity; SECURITY.md, "Jobs that run as their owner").
    "run_as_users": _option(
        "Allowlist of Slurm users jobs may run as, comma-separated (empty: every job runs as the Slurm "
        "connection's own account and a task's run_as is refused). root and uid 0 are always refused.",
        "string", None, "hpc-alice,hpc-bob"),
    "run_as_mapping": _option(
        "Which Slurm user a DAG owner or a task's run_as runs as: key=user pairs, comma-separated. A key "
        "that is not here may name an allowlisted user directly.", "string", None,
        "alice=hpc-alice,genomics=hpc-bob"),
    "run_as_unmapped": _option(
        "What a task whose owner maps to no allowlisted user does when run_as_users is set: refuse "
        "(default) or service (run as the connection's account, with a warning in the task log).",
        "string", "refuse", "service"),
    "run_as_ssh_conn_id": _option(
        "The SSH connection of each user ({user}: the Slurm user); used by the ssh transport, and by rest "
        "to read output when the connection has log_ssh_conn_id. Its login must be that user.",
        "string", "ssh_{user}", "ssh_cluster_{user}"),
    "run_as_rest_token_conn_id": _option(
        "rest: the connection whose password is each user's own JWT ({user}: the Slurm user). Empty: "
        "impersonation, the Slurm connection's token (of SlurmUser or root) sent with X-SLURM-USER-NAME.",
        "string", None, "slurm_jwt_{user}"),
    "run_as_sudo": _option("local transport (and rest output read on this host): the sudo program run as "
                           "'sudo -n -u <user> -- <command>'.", "string", "sudo", "/usr/bin/sudo"),
    "run_as_work_dir": _option(
        "Where impersonated jobs run and write output ({user}: the Slurm user; empty: ~user/.hpcai/jobs, "
        "created with mode 0700). The connection's work_dir is not used for them.", "string", None,
        "/scratch/{user}/hpcai"),
}


def get(key: str, fallback: str | None = None) -> str | None:
    """Read ``[hpcai] key``; the declared default when unset (and outside Airflow, the env var)."""
    if key not in CONFIG_OPTIONS:
        raise KeyError(f"[hpcai] has no option {key!r}; known: {sorted(CONFIG_OPTIONS)}")
    default = CONFIG_OPTIONS[key]["default"] if fallback is None else fallback
    try:
        from airflow.configuration import conf

        return conf.get("hpcai", key, fallback=default)
    except Exception:  # outside an Airflow installation (kernels, CLI without airflow.cfg)
        return os.environ.get(f"AIRFLOW__HPCAI__{key.upper()}", default)


def get_bool(key: str) -> bool:
    return str(get(key)).strip().lower() in _TRUE


def get_float(key: str) -> float:
    return float(get(key) or 0)


def get_int(key: str) -> int:
    return int(float(get(key) or 0))


def default_deferrable() -> bool:
    """Whether operators defer when a task does not say.

    ``[hpcai] default_deferrable`` when it is set; otherwise Airflow's own ``[operators]
    default_deferrable`` (``False`` unless the deployment turns it on), read the way the
    cncf.kubernetes provider reads it.
    """
    own = get("default_deferrable")
    if own is not None and str(own).strip():
        return str(own).strip().lower() in _TRUE
    try:
        from airflow.configuration import conf

        return conf.getboolean("operators", "default_deferrable", fallback=False)
    except Exception:  # outside an Airflow installation
        return os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "").strip().lower() in _TRUE


def airflow_home() -> str:
    """``$AIRFLOW_HOME`` resolved as Airflow resolves it (``~/airflow`` when unset; variables expanded)."""
    try:
        from airflow.configuration import get_airflow_home

        return os.path.abspath(get_airflow_home())
    except Exception:  # outside an Airflow installation: the same rule
        return os.path.abspath(os.path.expanduser(os.path.expandvars(os.environ.get("AIRFLOW_HOME", "~/airflow"))))
