"""The lifecycle shared by every operator that runs one job on a backend.

Submit (or reattach), defer (or wait), resume, classify, return: subclasses only say what to
run (:meth:`BaseJobOperator.build_script`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_hpcai import config
from airflow_provider_hpcai.backends import get_backend
from airflow_provider_hpcai.backends.base import JobBackend, JobRef
from airflow_provider_hpcai.exceptions import ControllerUnavailableError, HpcAiError
from airflow_provider_hpcai.jobs.digest import submission_digest
from airflow_provider_hpcai.jobs.event import CONTROLLER_UNAVAILABLE, JobEvent
from airflow_provider_hpcai.jobs.output import ResumeState
from airflow_provider_hpcai.jobs.states import JobStatus, Phase
from airflow_provider_hpcai.operators.links import KubernetesJobLink, SlurmJobLink
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.spec import JobSpec, make_tag
from airflow_provider_hpcai.triggers.job import JobTrigger

__all__ = ["BaseJobOperator", "coerce_resources"]

_STORE_KEY = "hpcai_job"
_NAME_CLEAN = re.compile(r"[^A-Za-z0-9_.\-]+")


def coerce_resources(value: Resources | dict[str, Any] | None) -> Resources:
    """Accept :class:`Resources`, a plain mapping (e.g. from ``expand``), or ``None``."""
    if isinstance(value, Resources):
        return value
    return Resources.from_dict(value)


class BaseJobOperator(BaseOperator):
    """Run one job on a backend, crash-safely.

    :param job_resources: what the job asks for (:class:`Resources` or a mapping). Not
        ``resources``: Airflow's BaseOperator owns that name.
    :param environment: variables for the job (templated); values are always quoted.
    :param job_name: the scheduler-visible name (templated); default ``<dag_id>.<task_id>``.
    :param backend: a name of the backend registry (:data:`~airflow_provider_hpcai.backends.BACKENDS`:
        ``"slurm"``, ``"kubernetes"``, ``"gridengine"``, ``"local"``).
    :param conn_id: the backend's connection (``None``: the backend's default).
    :param deferrable: free the worker slot while the job waits or runs (default: ``[hpcai]
        default_deferrable`` when set, else Airflow's ``[operators] default_deferrable``).
    :param poll_interval: seconds between status queries (batched across tasks when deferred).
    :param workdir: the job's working directory on the cluster (templated).
    :param escalate_on_retry: on a retry after an out-of-memory kill or a timeout, ask for more.
    :param avoid_failed_nodes: on a retry after a node failure, exclude the failed nodes.
    :param durable: a new try adopts the job of an earlier one (running, finished unseen, or
        succeeded) instead of submitting again, as Airflow's ``ResumableJobMixin`` does. ``False``
        submits a new job on every try (a worker crash then runs the work twice). A job is only
        ever adopted when it runs what this try would submit: the same rendered script,
        environment, resources (as requested: before the advisor and escalation), image and array (their digest is stored with
        the job), so a cleared mapped task whose input changed never takes another item's job.
    :param reuse_after_clear: when an earlier try's job already *succeeded* with the same input,
        return its stored result instead of running it again (a worker that died after the job
        ended, or a task cleared without deleting its state). ``False``: a new try after a
        success always runs the job again. Reuse reads the task's state store: where a clear
        discards the store (Airflow's coming default), a cleared task runs again either way, so
        ``False`` is the choice that behaves the same under both clear semantics.
    :param container: run the job's script in this image (:class:`~airflow_provider_hpcai.containers.Container`,
        a mapping of its fields, or an image reference): the same stage on Slurm, Kubernetes and the
        local machine. Checked here, at parse time (bad references, relative or ``..`` mounts, a
        runtime this backend cannot drive); the connection's own runtimes are checked before submission.
    :param run_as: who the job runs as: a key of ``[hpcai] run_as_mapping`` or an allowlisted Slurm
        user (``[hpcai] run_as_users``). ``None``: the task's ``owner`` is looked up instead. Not
        templated, so a run's ``conf`` cannot choose it. Root, users outside the allowlist and
        owners that map to nobody are refused before anything reaches the cluster (SECURITY.md).
    """

    #: A Slurm job array spec (``SlurmJobOperator``); ``None``: one job.
    array: str | None = None
    #: A signal before the time limit (``SlurmJobOperator(checkpoint_signal=...)``); ``None``: none.
    signal: str | None = None
    #: The container image the job runs in (``KubernetesJobStageOperator``); ``None``: none.
    image: str | None = None
    #: The further het groups of a heterogeneous job (``SlurmJobOperator(components=...)``); empty: none.
    components: tuple[Resources, ...] = ()

    template_fields: Sequence[str] = ("environment", "job_name", "workdir")
    ui_color = "#d6e4f0"
    #: Links to the job (empty unless the connection has a ``job_url_template``; each link
    #: answers only for its own backend).
    operator_extra_links = (SlurmJobLink(), KubernetesJobLink())

    def __init__(
        self,
        *,
        job_resources: Resources | dict[str, Any] | None = None,
        environment: dict[str, Any] | None = None,
        job_name: str | None = None,
        backend: str = "slurm",
        conn_id: str | None = None,
        deferrable: bool | None = None,
        poll_interval: float | None = None,
        workdir: str | None = None,
        escalate_on_retry: bool = True,
        avoid_failed_nodes: bool = True,
        durable: bool = True,
        reuse_after_clear: bool = True,
        container: Any = None,
        run_as: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if run_as is not None:
            from airflow_provider_hpcai.identity.mapping import check_key

            run_as = check_key(run_as)  # malformed or root: a clear error at parse time
        self.run_as = run_as
        from airflow_provider_hpcai.containers.runtime import container_for_backend

        self.container = container_for_backend(container, backend, task=kwargs.get("task_id"))
        # Validate now, so a bad request fails at DAG parse time with a clear message.
        self.job_resources = coerce_resources(job_resources)
        self.environment = environment or {}
        self.job_name = job_name
        self.backend = backend
        self.conn_id = conn_id
        self.deferrable = config.default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval if poll_interval is not None else config.get_float("poll_interval")
        self.workdir = workdir
        self.escalate_on_retry = escalate_on_retry
        self.avoid_failed_nodes = avoid_failed_nodes
        self.durable = durable
        self.reuse_after_clear = reuse_after_clear
        self._ref: JobRef | None = None
        self._digest: str | None = None
        self._escalations = 0
        self._outcome: dict[str, Any] | None = None

    # ------------------------------------------------------------------ for subclasses
    def build_script(self, context: Any) -> str:
        """The bash script the job runs."""
        raise NotImplementedError

    def submit_job(self, context: Any, backend: JobBackend, spec: JobSpec, previous: dict[str, Any] | None) -> JobRef:
        """Submit this try's job (subclasses may place it in a shared submission, e.g. a job array).

        :param previous: what earlier tries of this task instance recorded (``None``: the first try).
        """
        return backend.submit(spec, workdir=self.workdir)

    def advisor_key(self) -> dict[str, Any]:
        """What identifies this task as a recurring workload, for the resource advisor.

        A task in a container adds its image: each image version has its own history.
        """
        key: dict[str, Any] = {"dag_id": self.dag_id, "task_id": self.task_id, "owner": self.owner}
        image = self.container.image if self.container is not None else self.image
        if image:
            key["image"] = image
        return key

    def get_backend(self) -> JobBackend:
        user = self.job_user()
        return get_backend(self.backend, self.conn_id, **({"run_as": user} if user else {}))

    def job_user(self) -> str | None:
        """The Slurm user this task's job runs as (``None``: the connection's account).

        :raises RunAsRefusedError: root, a user outside the allowlist, an owner that maps to nobody,
            or ``run_as`` on a backend that cannot run jobs as another user.
        """
        from airflow_provider_hpcai.backends import backend_class
        from airflow_provider_hpcai.identity.mapping import IdentitySettings, RunAsRefusedError, resolve

        if not getattr(backend_class(self.backend), "runs_as_user", False):
            if self.run_as:
                raise RunAsRefusedError(f"the {self.backend} backend cannot run jobs as another user "
                                        f"(run_as={self.run_as!r}); only slurm can")
            return None
        settings = IdentitySettings.from_config()
        user = resolve(self.owner, self.run_as, settings)
        if user is None and settings.enabled:
            self.log.warning("Owner %r maps to no Slurm user; [hpcai] run_as_unmapped = service: the job runs as "
                             "the Slurm connection's own account", self.owner)
        return user

    def _backend_of(self, ref: JobRef) -> JobBackend:
        """The backend acting as the user the job ``ref`` was submitted as (checked against the allowlist again)."""
        user = ref.extra.get("run_as")
        if user or ref.backend != self.backend:
            return get_backend(ref.backend, self.conn_id, **({"run_as": user} if user else {}))
        return self.get_backend()

    @property
    def job_ref(self) -> JobRef | None:
        """The job this task submitted or adopted (``None`` before that)."""
        return self._ref

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: inlets/outlets (and the job's output folder), and a run facet with the job.

        ``None`` when the OpenLineage provider is not installed (see :mod:`airflow_provider_hpcai.lineage`).
        """
        from airflow_provider_hpcai.lineage import job_lineage

        return job_lineage(self, self._outcome)

    # ------------------------------------------------------------------ lifecycle
    def execute(self, context: Any) -> Any:
        user = self.job_user()  # refused here, before anything reaches the cluster
        if user:
            self.log.info("The job runs as Slurm user %r (%s)", user,
                          f"run_as={self.run_as!r}" if self.run_as else f"owner {self.owner!r}")
        backend = self.get_backend()
        ti = context["ti"]
        store = context.get("task_state_store")
        previous = _store_get(store)
        resources, components, exclude = self._resources_for_try(previous)
        map_index = getattr(ti, "map_index", None)
        tag = make_tag(self.dag_id, self.task_id, context["run_id"], -1 if map_index is None else map_index)
        self._log_decision(resources, superseded=self._escalations > 0)
        spec = JobSpec(
            name=self._job_name(),
            script=self.build_script(context),
            resources=resources,
            environment=self.environment,
            tag=tag,
            array=self.array or None,
            exclude_nodes=exclude,
            image=self.image or None,
            container=self.container,
            signal=self.signal or None,
            components=components,
        )
        # What this task runs, whatever the advisor or the retry policy changed (escalation, excluded nodes).
        self._digest = digest = submission_digest(spec.replace(resources=self._requested_resources(),
                                                               components=self.components or ()))
        spec = spec.replace(digest=digest)

        ref, ended = self._reattach(backend, tag, previous, digest) if self.durable else (None, None)
        if ref is not None and previous and previous.get("succeeded_job") == ref.job_id:
            self.log.warning(
                "Job %s of an earlier try of this task already succeeded: returning its result without "
                "running it again. To run it again, delete the task's state (REST: DELETE /api/v2/dags/"
                "%s/dagRuns/%s/taskInstances/%s/state-store) before clearing it, or set reuse_after_clear=False (durable=False also stops adopting running jobs).",
                ref.job_id, self.dag_id, context["run_id"], self.task_id)
            self._ref = ref
            ti.xcom_push(key="job_id", value=ref.job_id)  # this try's links and lineage name the job too
            self._outcome = {"ref": ref.to_dict(), "result": previous["result"]}
            self._outcome["returned"] = returned = self.post_process(context, previous["result"])
            return returned
        if ref is not None and ended is not None:
            # An earlier try lost sight of its job (controller outage, worker crash) and it has
            # since finished: collect its result instead of running the work again.
            self._ref = ref
            ti.xcom_push(key="job_id", value=ref.job_id)
            self.log.info("Job %s of an earlier try ended %s while nobody watched: collecting its result",
                          ref.job_id, ended.state)
            return self._finish(context, backend, ref, ended.state, ended.exit_code,
                                previous.get("requested") or resources.to_dict(), None)
        if ref is None:
            from airflow_provider_hpcai.advisor.live_guard import admit  # the advisor's guard (never raises)

            resources, bind = admit(getattr(self, "hpcai_decision", None), resources, log_to=self.log)
            ref = self.submit_job(context, backend, spec.replace(resources=resources), previous)
            bind(ref.job_id)
        self._ref = ref
        requested = resources.to_dict()
        _store_set(store, {"ref": ref.to_dict(), "requested": requested, "try": getattr(ti, "try_number", None),
                           "digest": digest})
        ti.xcom_push(key="job_id", value=ref.job_id)

        if self.deferrable and backend.can_defer:
            self.defer(
                trigger=JobTrigger.for_job(backend, ref, poll_interval=self.poll_interval,
                                           echo={"ref": ref.to_dict(), "requested": requested, "digest": digest}),
                method_name="execute_complete",
            )
        status = backend.wait(ref, poll_interval=self.poll_interval, log=self.log)
        return self._finish(context, backend, ref, status.state, status.exit_code, requested, None)

    def execute_complete(self, context: Any, event: dict[str, Any], ref: dict[str, Any] | None = None,
                         requested: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: account, classify, return or raise."""
        job_event = JobEvent.from_payload(event)
        echo = job_event.echo
        ref = ref or echo.get("ref") or {"backend": self.backend, "job_id": job_event.job_id}
        requested = requested or echo.get("requested")
        self._digest = echo.get("digest")
        job_ref = JobRef.from_dict(ref)
        self._ref = job_ref
        if job_event.status == "error":
            if job_event.error_type == CONTROLLER_UNAVAILABLE:
                raise ControllerUnavailableError(job_event.message or "the controller stayed unreachable")
            raise HpcAiError(f"waiting on job {job_event.job_id} failed: {job_event.message}")
        return self._finish(context, self._backend_of(job_ref), job_ref, job_event.state or "UNKNOWN",
                            job_event.exit_code, requested or {}, job_event.resume_state())

    def _finish(self, context: Any, backend: JobBackend, ref: JobRef, state: str, exit_code: int | None,
                requested: dict[str, Any], resume: ResumeState | None) -> dict[str, Any]:
        outcome = backend.outcome(ref, state=state, exit_code=exit_code, requested=requested, resume=resume,
                                  log=self.log)
        result, failure = outcome.result, outcome.failure
        decision = getattr(self, "hpcai_decision", None)
        if decision:
            result["advisor"] = decision
        result["energy"] = _energy(result, decision, self.log)
        store = context.get("task_state_store")
        record = {"ref": ref.to_dict(), "requested": requested, "result": result,
                  "escalations": self._escalations, "digest": self._digest}
        _record_history(result, self.advisor_key(), self.log)
        self._outcome = {"ref": ref.to_dict(), "result": result}
        if failure is None:
            _store_set(store, {**record, "succeeded_job": ref.job_id})
            peak = result.get("max_rss_bytes")
            self.log.info("Job %s %s in %s s, peak memory %s", ref.job_id, result["state"],
                          result.get("elapsed_seconds"),
                          f"{peak / 2**20:.1f} MiB" if peak else "not sampled (shorter than the accounting interval)")
            returned = self.post_process(context, result)
            self._outcome["returned"] = returned
            return returned
        _store_set(store, {**record, "failure": result["failure"]})
        raise failure

    def post_process(self, context: Any, result: dict[str, Any]) -> Any:
        """Turn the job result into the task's return value (subclasses add to it)."""
        return result

    def on_kill(self) -> None:
        if self._ref is not None:
            self.log.info("Task killed: cancelling job %s", self._ref.job_id)
            self._backend_of(self._ref).cancel(self._ref)

    # ------------------------------------------------------------------ helpers
    def _job_name(self) -> str:
        if self.job_name:
            return self.job_name
        return _NAME_CLEAN.sub("_", f"{self.dag_id}.{self.task_id}")[:128]

    def _requested_resources(self) -> Resources:
        """The resources the user asked for: before the advisor's policy (its decision keeps the
        request) and before escalation. The submission digest names these, so a retry whose advice
        differs (the guard's live state moved on) still adopts the job of the try before it."""
        decision = getattr(self, "hpcai_decision", None)
        if isinstance(decision, dict) and isinstance(decision.get("requested"), dict):
            try:
                return Resources.from_dict(decision["requested"])
            except (TypeError, ValueError):
                pass  # a decision from another version: fall back to what the task holds
        return coerce_resources(self.job_resources)

    def _reattach(self, backend: JobBackend, tag: str, previous: dict[str, Any] | None,
                  digest: str) -> tuple[JobRef | None, JobStatus | None]:
        """The job this try should adopt, and its final status when it already ended unseen.

        An earlier try's job is adopted while it runs, and also once it has ended if no try ever
        collected its outcome (neither success nor failure was recorded), and only when it runs
        what this try would submit (the same submission digest).
        """
        if previous and previous.get("ref"):
            ref = JobRef.from_dict(previous["ref"])
            if previous.get("digest") not in (None, digest):
                self.log.warning("Job %s was submitted for other input (submission digest %s, this try's %s: the "
                                 "rendered script, environment, resources or image changed, e.g. a cleared "
                                 "mapped task whose upstream list changed): not reusing it", ref.job_id,
                                 previous.get("digest"), digest)
                return None, None
            if previous.get("succeeded_job") == ref.job_id:
                if self.reuse_after_clear:
                    return ref, None
                self.log.info("Job %s of an earlier try succeeded; reuse_after_clear=False: running it again",
                              ref.job_id)
                return None, None
            status = backend.status(ref)
            if status is not None and status.phase is Phase.ACTIVE:
                self.log.info("Reattaching to job %s (%s) submitted by an earlier try", ref.job_id, status.state)
                return ref, None
            collected = "failure" in previous or "result" in previous
            if status is not None and status.phase is not Phase.UNKNOWN and not collected \
                    and (status.tag in (None, tag, ref.tag)):
                return ref, status
        found = backend.find_live(tag, workdir=self.workdir)
        if found is not None and found.extra.get("digest") not in (None, digest):
            self.log.warning("Live job %s carries this task's tag but runs other input (submission digest %s, "
                             "this try's %s): not adopting it", found.job_id, found.extra.get("digest"), digest)
            return None, None
        if found is not None:
            self.log.info("Reattaching to live job %s carrying this task's tag %s", found.job_id, tag)
        return found, None

    def _resources_for_try(
        self, previous: dict[str, Any] | None,
    ) -> tuple[Resources, tuple[Resources, ...], str | None]:
        """This try's resources, het groups 1, 2 ... (a hetjob's) and nodes to exclude.

        After an out-of-memory kill or a timeout they are escalated; in a hetjob only the groups
        that ran out (:func:`~airflow_provider_hpcai.slurm.hetjob.groups_that_failed`).
        """
        resources = coerce_resources(self.job_resources)
        components = tuple(self.components or ())
        if not previous or not previous.get("failure"):
            return resources, components, None
        failure = previous["failure"]
        exclude = None
        if failure == "node_failure" and self.avoid_failed_nodes:
            exclude = (previous.get("result") or {}).get("node_list")
            if exclude:
                self.log.warning("The previous try hit a node failure on %s: excluding it", exclude)
        from airflow_provider_hpcai.policy.escalation import undo_cut

        restored = None if components else undo_cut(resources, self._requested_resources(), failure,
                                                     previous.get("requested"))
        if restored is not None:
            self.log.warning("The previous try ran out of the advisor's cut (%s): this try runs with your request",
                             failure)
            return restored, components, exclude
        if failure in ("oom", "timeout") and self.escalate_on_retry:
            from airflow_provider_hpcai.policy import EscalationExhaustedError, escalate

            attempt = int(previous.get("escalations") or 0) + 1
            result = previous.get("result") or {}
            groups = [resources, *components]
            if components:
                from airflow_provider_hpcai.slurm.hetjob import groups_that_failed

                grow = groups_that_failed(result, failure, len(groups))
                peaks = {c.get("het_group"): c.get("max_rss_bytes") for c in result.get("het_components") or []}
            else:
                grow, peaks = [0], {0: result.get("max_rss_bytes")}
            try:
                escalated = [escalate(res, failure, attempt, observed_peak_bytes=peaks.get(group))
                             if group in grow else res for group, res in enumerate(groups)]
            except EscalationExhaustedError as err:
                self.log.error("The previous try ended %s and the request is at its ceiling: %s", failure, err)
                raise
            for group in grow:
                where = f" (het group {group})" if components else ""
                self.log.warning("The previous try ended %s%s: retrying with more (%s -> %s)", failure, where,
                                 _brief(groups[group]), _brief(escalated[group]))
            self._escalations = attempt
            return escalated[0], tuple(escalated[1:]), exclude
        return resources, components, exclude

    def _log_decision(self, resources: Resources, *, superseded: bool = False) -> None:
        decision = getattr(self, "hpcai_decision", None)
        if decision:
            note = " (superseded on this retry by the escalation above)" if superseded else ""
            self.log.info("Resource advisor%s: %s", note, decision)
        self.log.info("Requesting %s", _brief(resources))


def _record_history(result: dict[str, Any], key: dict[str, Any], log: Any) -> None:
    """Add the finished job to the advisor's history (best effort: never fails the task)."""
    try:
        from airflow_provider_hpcai.advisor.history import HistoryStore, record_from_accounting
        from airflow_provider_hpcai.policy.settings import read_settings

        home = read_settings().home
        if home:
            HistoryStore(home).add(record_from_accounting(result, key))
    except Exception as err:
        log.debug("Job history not recorded: %s", err)


def _energy(result: dict[str, Any], decision: dict[str, Any] | None, log: Any) -> dict[str, Any] | None:
    """The job's energy and the advisor's saving (``advisor.energy.result_energy``); ``None`` if unknown."""
    from airflow_provider_hpcai.advisor.energy import result_energy

    try:
        return result_energy(result, decision)
    except (TypeError, ValueError, KeyError) as err:  # a figure the result lacks must not fail the task
        log.warning("energy of job %s not computed: %s", result.get("job_id"), err)
        return None


def _brief(res: Resources) -> str:
    return (f"ntasks={res.ntasks} cpus_per_task={res.cpus_per_task} memory={res.memory_bytes} "
            f"time_limit={res.time_limit_seconds}s")


def _store_get(store: Any) -> dict[str, Any] | None:
    if store is None:
        return None
    try:
        value = store.get(_STORE_KEY)
    except Exception:  # the state store is a convenience; the tag lookup still protects us
        return None
    return value if isinstance(value, dict) else None


def _store_set(store: Any, value: dict[str, Any]) -> None:
    if store is None:
        return
    try:
        store.set(_STORE_KEY, value)
    except Exception as err:  # the job's tag still finds it on a retry: say so, carry on
        logging.getLogger(__name__).warning("Could not record the job in the task state store (%s); "
                                            "a retry will find it by its tag", err)
