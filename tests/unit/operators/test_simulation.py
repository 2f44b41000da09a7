"""SimulationOperator: validation before submission, the script it builds, and its result.

The script is executed for real by bash; a stand-in interpreter (a small shell script passed
as ``python``) plays the kernel, so these tests need neither numba nor MPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai import exceptions as exc
from airflow_provider_hpcai.backends.local import LocalBackend
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.launchers import MpiexecLauncher, NoLauncher
from airflow_provider_hpcai.operators.simulation import INPUT_FILE, SimulationOperator, simulation_script
from airflow_provider_hpcai.resources import Resources
from tests.fakes.slurm import FakeSlurmTransport
from tests.support import FakeStore, make_context

SMALL_SEISMIC = {"nx": 64, "nz": 32, "steps": 5, "sponge_cells": 8}
#: Plays ``python -m simulation_kernels.<k> --config C --output D``: echoes the config, writes a summary.
FAKE_KERNEL = r"""#!/bin/bash
while [ $# -gt 0 ]; do
  case "$1" in --config) cfg="$2"; shift;; --output) out="$2"; shift;; -m) mods="$mods $2"; shift;; esac; shift
done
echo "modules:$mods"
echo "config:$(cat "$cfg")"
sleep "${FAKE_SLEEP:-0}"
if [ -n "${FAKE_SUMMARY:-}" ]; then printf '%s' "$FAKE_SUMMARY" > "$out/summary.json"; fi
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    path = tmp_path / "bin" / "python"
    path.parent.mkdir()
    path.write_text(FAKE_KERNEL)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def local_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every backend the operator builds is a fast-sampling local one under ``tmp/jobs``."""
    jobs = tmp_path / "jobs"
    monkeypatch.setattr("airflow_provider_hpcai.operators.base.get_backend",
                        lambda name, conn_id=None, **o: LocalBackend(base_dir=str(jobs), sample_interval=0.05))
    return jobs


def make_op(**kwargs: Any) -> SimulationOperator:
    fields: dict[str, Any] = {"task_id": "seis", "kernel": "seismic", "kernel_params": dict(SMALL_SEISMIC),
                              "backend": "local", "poll_interval": 0.05}
    fields.update(kwargs)
    with DAG("simdag", schedule=None):
        return SimulationOperator(**fields)


def run_script(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)


# ---------------------------------------------------------------------- the script
HOSTILE = ["EOF", "a\nEOF\necho escaped > pwned1\n", "it's \"quoted\"", "$(touch pwned2)", "`touch pwned3`",
           "HPCAI_CONFIG_0000\n$(touch pwned4)", "\\$HOME ${HOME}", "é ☃ \t"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_parameter_values_reach_the_kernel_verbatim_and_never_run(value, tmp_path, fake_python):
    params = {"title": value, "nested": [value, {"k": value}], value: 1}
    script = simulation_script("seismic", params, ranks=1, launcher=NoLauncher(), python=fake_python,
                               output_dir="out dir/$(touch pwned5)")
    proc = run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    config_line = next(line for line in proc.stdout.splitlines() if line.startswith("config:"))
    assert json.loads(config_line[len("config:"):]) == params
    assert not list(tmp_path.rglob("pwned*")) and not list(tmp_path.rglob("*escaped*"))
    assert (tmp_path / "out dir" / "$(touch pwned5)" / INPUT_FILE).exists()


def test_one_rank_runs_the_module_directly_and_several_through_the_launcher(tmp_path):
    one = simulation_script("climate", {}, ranks=1, launcher=NoLauncher(), python="/env/bin/python",
                            output_dir="/data/out")
    assert "\n/env/bin/python -m simulation_kernels.climate --config /data/out/hpcai-input.json --output /data/out\n" in one
    four = simulation_script("climate", {}, ranks=4, launcher=MpiexecLauncher(path="/env/bin/mpiexec"),
                             python="/env/bin/python", output_dir="/data/out")
    assert ("\n/env/bin/mpiexec -n 4 /env/bin/python -m mpi4py -m simulation_kernels.climate --config "
            "/data/out/hpcai-input.json --output /data/out\n") in four
    assert four.startswith("set -euo pipefail\n")


def test_parameters_that_are_not_json_are_refused():
    with pytest.raises(exc.InvalidJobSpecError, match="plain JSON"):
        simulation_script("seismic", {"x": float("nan")}, ranks=1, launcher=NoLauncher(), python="p", output_dir="o")
    with pytest.raises(exc.InvalidJobSpecError, match="plain JSON"):
        simulation_script("seismic", {"x": object()}, ranks=1, launcher=NoLauncher(), python="p", output_dir="o")


def test_auto_launcher_follows_ranks_and_the_interpreter():
    ctx = make_context(run_id="manual__1")
    assert "mpiexec" not in make_op(ranks=1).build_script(ctx)
    script = make_op(ranks=2, python="/opt/sim/bin/python").build_script(ctx)
    assert "/opt/sim/bin/mpiexec -n 2 /opt/sim/bin/python -m mpi4py -m simulation_kernels.seismic" in script
    default = make_op(ranks=2).build_script(ctx)
    assert f"{os.path.dirname(sys.executable)}/mpiexec -n 2 {sys.executable} -m mpi4py" in default
    assert "\nmpirun -np 2 " in make_op(ranks=2, launcher="mpirun").build_script(ctx)
    assert "srun --ntasks=2 " in make_op(ranks=2, launcher="srun").build_script(ctx)


def test_slurm_connection_can_choose_srun(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLURM_SRUN",
                       json.dumps({"conn_type": "slurm", "extra": {"transport": "local", "launcher": "srun"}}))
    script = make_op(ranks=2, backend="slurm", conn_id="slurm_srun").build_script(make_context())
    assert "\nsrun --ntasks=2 " in script


def test_default_output_dir_is_per_run_and_per_map_index():
    op = make_op()
    assert op._output_dir(make_context(run_id="manual__2027-01-01T00:00:00+00:00")) == \
        "hpcai-sim/simdag/manual__2027-01-01T00_00_00_00_00/seis"
    assert op._output_dir(make_context(run_id="r", map_index=3)) == "hpcai-sim/simdag/r/seis-3"


def test_device_goes_into_the_parameters_and_cuda_asks_for_a_gpu_off_the_local_machine():
    op = make_op(device="cpu")
    assert '"device": "cpu"' in op.build_script(make_context())
    assert make_op(device="cuda", backend="slurm").job_resources.gpu_count == 1
    assert make_op(device="cuda", backend="local").job_resources.gpu_count == 0
    with pytest.raises(exc.InvalidJobSpecError, match="give it once"):
        make_op(device="cpu", kernel_params={**SMALL_SEISMIC, "device": "cuda"}).build_script(make_context())
    with pytest.raises(exc.InvalidJobSpecError, match="no GPU version"):
        make_op(kernel="assembly_line", kernel_params={}, device="cuda").build_script(make_context())


# ---------------------------------------------------------------------- validation
def test_ntasks_follows_ranks_unless_it_contradicts_them():
    assert make_op(ranks=4).job_resources.ntasks == 4
    assert make_op(ranks=2, job_resources={"memory": "1G"}).job_resources.ntasks == 2
    assert make_op(ranks=2, job_resources=Resources(ntasks=2, memory="1G")).job_resources.memory_bytes == 2**30
    with pytest.raises(exc.InvalidJobSpecError, match="ntasks=3 but ranks=2"):
        make_op(ranks=2, job_resources={"ntasks": 3})


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "pbs"}, "unknown backend 'pbs'"),
    ({"launcher": "aprun"}, "unknown launcher 'aprun'"),
    ({"device": "tpu"}, "device 'tpu' is not allowed"),
    ({"ranks": 0}, "ranks must be"),
    ({"kernel": "../evil"}, "not a kernel name"),
    ({"output_dir": "a\nb"}, "one line"),
])
def test_bad_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(exc.InvalidJobSpecError, match=message):
        make_op(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "tsunami"}, r"unknown kernel 'tsunami'; choose one of .*seismic"),
    ({"kernel_params": {**SMALL_SEISMIC, "steps": 0}}, "steps must be >= 1"),
    ({"kernel_params": {**SMALL_SEISMIC, "stepz": 3}}, "did you mean 'steps'"),
    ({"kernel_params": {"nx": 64, "nz": 36, "sponge_cells": 8}, "ranks": 5}, "5 ranks do not divide"),
    ({"kernel_params": "nx=3"}, "must be a mapping"),
])
def test_bad_input_fails_before_anything_is_submitted(kwargs, message, local_jobs):
    op = make_op(**kwargs)
    with pytest.raises(exc.InvalidJobSpecError, match=message):
        op.execute(make_context())
    assert not local_jobs.exists()  # no job folder: nothing was started


def test_kernel_modules_are_not_imported_at_parse_time():
    code = ("import sys; from airflow_provider_hpcai.operators.simulation import SimulationOperator; "
            "SimulationOperator(task_id='t', kernel='seismic', ranks=2); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('simulation_kernels', 'numba', 'mpi4py')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------- running (local backend)
def test_execute_returns_the_kernel_summary_and_job_accounting(local_jobs, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_SUMMARY", json.dumps({"kernel": "seismic", "finite": True}))
    op = make_op(python=fake_python, ranks=1)
    out = op.execute(make_context(run_id="manual__1"))
    assert out["kernel"] == "seismic" and out["summary"] == {"kernel": "seismic", "finite": True}
    assert out["output_dir"].startswith(str(local_jobs)) and out["output_dir"].endswith("hpcai-sim/simdag/manual__1/seis")
    assert json.loads((Path(out["output_dir"]) / INPUT_FILE).read_text()) == SMALL_SEISMIC
    assert out["job"]["state"] == "COMPLETED" and out["job"]["backend"] == "local"
    assert "modules: simulation_kernels.seismic" in Path(out["job"]["stdout_path"]).read_text()


def test_a_static_output_dir_is_used_and_declared_as_an_asset(local_jobs, fake_python, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_SUMMARY", "{}")
    target = tmp_path / "results" / "seismic"
    op = make_op(python=fake_python, output_dir=str(target))
    assert [o.uri for o in op.outlets] == [f"file://{target}"]
    assert op.execute(make_context())["output_dir"] == str(target) and (target / "summary.json").exists()
    assert make_op(output_dir="/data/{{ ds }}").outlets == []


def test_a_kernel_that_writes_no_summary_fails_clearly(local_jobs, fake_python):
    with pytest.raises(exc.HpcAiError, match=r"wrote no .*summary.json"):
        make_op(python=fake_python).execute(make_context())


def test_a_retry_after_a_missing_summary_does_not_succeed_silently(local_jobs, fake_python, monkeypatch):
    store, op = FakeStore(), make_op(python=fake_python)
    with pytest.raises(exc.HpcAiError, match="wrote no"):
        op.execute(make_context(run_id="manual__r", store=store))
    with pytest.raises(exc.HpcAiError, match="wrote no"):  # the job is not run again, the summary still missing
        op.execute(make_context(run_id="manual__r", store=store))
    folder = next(local_jobs.glob("hpcai-*"))
    (next(folder.rglob(INPUT_FILE)).parent / "summary.json").write_text('{"late": 1}')
    out = op.execute(make_context(run_id="manual__r", store=store))
    assert out["summary"] == {"late": 1} and len(list(folder.glob("hpcai-*.sh"))) == 1


def test_a_failing_kernel_raises_the_classified_failure_with_its_output(local_jobs, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "2")
    with pytest.raises(exc.SlurmJobFailed) as info:
        make_op(python=fake_python).execute(make_context())
    assert info.value.exit_code == 2 and info.value.state == "FAILED"


_WORKER = """
import sys
from airflow.sdk import DAG
from airflow_provider_hpcai.operators.simulation import SimulationOperator
from tests.support import FakeStore, make_context
with DAG("simdag", schedule=None):
    op = SimulationOperator(task_id="seis", kernel="seismic", kernel_params={"steps": 5}, backend="local",
                            python=sys.argv[1], workdir=sys.argv[2], poll_interval=0.05)
print(op.execute(make_context(run_id="manual__crash")))
"""


def test_a_retry_after_the_worker_died_reattaches_instead_of_running_twice(tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("FAKE_SUMMARY", '{"done": true}')
    monkeypatch.setenv("FAKE_SLEEP", "3")
    jobs = tmp_path / "work"
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, fake_python, str(jobs)],
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(jobs.glob("hpcai-*/hpcai-local.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.kill()  # the worker dies; its job (its own session) keeps running
    worker.wait()
    op = make_op(python=fake_python, workdir=str(jobs), kernel_params={"steps": 5})
    out = op.execute(make_context(run_id="manual__crash"))  # a new try; the state store was lost with the worker
    assert out["summary"] == {"done": True} and out["job"]["state"] == "COMPLETED"
    assert len(list(jobs.glob("hpcai-*/hpcai-*.sh"))) == 1  # one job for the task instance, not two


# ---------------------------------------------------------------------- running (Slurm backend, fake cluster)
def test_on_slurm_the_summary_is_read_through_the_hook(monkeypatch):
    fake = FakeSlurmTransport(auto_advance=True)
    hook = SlurmHook(transport=fake)
    monkeypatch.setattr("airflow_provider_hpcai.operators.base.get_backend",
                        lambda name, conn_id=None, **o: SlurmBackend(conn_id, hook=hook))
    fake.files["/scratch/w/hpcai-sim/simdag/manual__9/seis/summary.json"] = b'{"steps": 5}'
    op = make_op(backend="slurm", ranks=2, deferrable=False, workdir="/scratch/w",
                 job_resources={"memory": "1G", "time_limit": 300})
    out = op.execute(make_context(run_id="manual__9"))
    assert out["summary"] == {"steps": 5} and out["output_dir"] == "/scratch/w/hpcai-sim/simdag/manual__9/seis"
    job = fake.only_job()
    assert "#SBATCH --ntasks=2" in job.script and "-m mpi4py -m simulation_kernels.seismic" in job.script
    assert out["job"]["requested"]["ntasks"] == 2


def test_advisor_key_names_the_kernel_its_sizes_and_ranks():
    key = make_op(ranks=2, kernel_params={**SMALL_SEISMIC, "peak_map": True, "velocity_model": "basin"}).advisor_key()
    assert key["kernel"] == "seismic" and key["ranks"] == 2 and key["nx"] == 64 and key["steps"] == 5
    assert "peak_map" not in key and "velocity_model" not in key and key["task_id"] == "seis"


def test_mapped_parameter_sweeps_serialise():
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("sweep", schedule=None) as dag:
        SimulationOperator.partial(task_id="sweep", kernel="climate", backend="local").expand(
            kernel_params=[{"steps": 10}, {"steps": 20}])
        SimulationOperator(task_id="one", kernel="seismic", kernel_params={"steps": "{{ params.steps }}"}, ranks=2)
    again = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    assert again.get_task("sweep").expand_input.value["kernel_params"] == [{"steps": 10}, {"steps": 20}]
    one = again.get_task("one")
    assert one.task_type == "SimulationOperator" and "kernel_params" in one.template_fields


@pytest.mark.parametrize("python", ["%1", "if", "A=b", "{"])
def test_an_interpreter_name_bash_would_read_as_syntax_is_looked_up_as_a_program(python, tmp_path):
    """``%1`` would resume a job, ``if`` open a statement, ``A=b`` assign: each is a program not found."""
    script = simulation_script("seismic", {"nx": 8}, ranks=1, launcher=NoLauncher(), python=python,
                               output_dir=str(tmp_path / "out"))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 127, done.stderr
    assert "no job control" not in done.stderr and "syntax error" not in done.stderr
