"""``container=`` wired through the job specification, the operators and every backend (no cluster needed).

The Slurm wrap is run for real here: the generated batch script runs under bash with a stand-in
``srun`` that records its arguments and the job bundle, then runs the script it was given.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_hpcai.backends.local import LocalBackend
from airflow_provider_hpcai.backends.slurm import SlurmBackend
from airflow_provider_hpcai.containers import Container, ContainerRuntimeNotFoundError, RuntimeNotOfferedError
from airflow_provider_hpcai.exceptions import InvalidJobSpecError
from airflow_provider_hpcai.hooks.slurm import SlurmHook
from airflow_provider_hpcai.jobs.digest import submission_digest
from airflow_provider_hpcai.kubernetes.manifests import KubernetesSettings, job_manifest, resolve_image
from airflow_provider_hpcai.operators.kubernetes import KubernetesJobStageOperator
from airflow_provider_hpcai.operators.simulation import SimulationOperator
from airflow_provider_hpcai.operators.slurm import SlurmJobOperator
from airflow_provider_hpcai.resources import Resources
from airflow_provider_hpcai.slurm.script import build_sbatch_script
from airflow_provider_hpcai.spec import JobSpec
from tests.fakes.slurm import FakeSlurmTransport
from tests.unit.kubernetes.helpers import validate_k8s

HOSTILE = "it's $(touch /tmp/hpcai-wiring-pwned) `id` ;\nHPCAI_SCRIPT_x\nEOF"
ONE_LINE = HOSTILE.replace("\n", " ")  # a container's variables are one line (they may reach a config file)


# ----------------------------------------------------------------------------- spec and digest
def test_spec_takes_a_container_in_any_form_and_validates_it() -> None:
    spec = JobSpec(name="a", script="true", container={"image": "/images/stage/bundle", "mounts": ["/data:/in"]})
    assert isinstance(spec.container, Container) and spec.container.mounts[0].target == "/in"
    assert JobSpec(name="a", script="true", container="python:3.11").container == Container(image="python:3.11")
    with pytest.raises(InvalidJobSpecError, match="relative"):
        JobSpec(name="a", script="true", container={"image": "/b", "mounts": ["data:/in"]})


def test_digest_changes_with_the_container_and_stays_for_jobs_without_one() -> None:
    bare = JobSpec(name="a", script="echo hi")
    old_formula = {"script": "echo hi", "environment": {}, "resources": bare.resources.to_dict(), "image": None,
                   "array": None}
    import hashlib

    expected = hashlib.sha256(json.dumps(old_formula, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:16]
    assert submission_digest(bare) == expected  # jobs submitted before containers still reattach
    one = submission_digest(bare.replace(container=Container(image="/img/v1/bundle")))
    two = submission_digest(bare.replace(container=Container(image="/img/v2/bundle")))
    mounts = submission_digest(bare.replace(container=Container(image="/img/v1/bundle", mounts=["/a:/a"])))
    assert len({submission_digest(bare), one, two, mounts}) == 4  # a changed image never adopts the old job


# ----------------------------------------------------------------------------- the Slurm wrap, run for real
def _fake_image(root: Path) -> Path:
    bundle = root / "image" / "bundle"
    rootfs = bundle / "rootfs"
    for folder in ("usr/bin", "etc", "opt/venv/bin", "proc", "dev", "tmp"):
        (rootfs / folder).mkdir(parents=True)
    (rootfs / "bin").symlink_to("usr/bin")
    (rootfs / "etc/marker").write_text("image\n")
    config = {"ociVersion": "1.0.2", "process": {"args": ["sh"], "env": ["PATH=/opt/venv/bin:/usr/bin"], "cwd": "/"},
              "root": {"path": "rootfs", "readonly": True},
              "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                         {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


FAKE_SRUN = """#!/bin/bash
# records its arguments and the job bundle, then runs the script (the last argument) like the step would
printf '%s\\n' "$@" > "$CAPTURE/srun-args"
for a in "$@"; do case "$a" in --container=*) cp "${a#--container=}/config.json" "$CAPTURE/config.json";
  find "${a#--container=}/rootfs" -printf '%P %y\\n' | sort > "$CAPTURE/rootfs.txt";; esac; done
eval "last=\\${$#}"
env > "$CAPTURE/env"
bash "$last"
"""


def _run_batch(tmp_path: Path, spec: JobSpec) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    workdir, capture, bin_dir = tmp_path / "work", tmp_path / "capture", tmp_path / "bin"
    for folder in (workdir, capture, bin_dir):
        folder.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    script = tmp_path / "batch.sh"
    script.write_text(build_sbatch_script(spec, str(workdir)))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "4242", "CAPTURE": str(capture), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    return proc, workdir, capture


def test_oci_wrap_runs_the_script_verbatim_in_a_job_bundle(tmp_path: Path) -> None:
    bundle = _fake_image(tmp_path)
    user_script = f"printf '%s\\n' {shlex.quote(HOSTILE)} > seen.txt\necho \"note=[$NOTE] job=[$JOBVAR]\"\n"
    spec = JobSpec(name="ct", script=user_script, environment={"JOBVAR": HOSTILE},
                   resources=Resources(ntasks=2, cpus_per_task=2),
                   container=Container(image=str(bundle), mounts=["/etc/hostname:/opt/src/hostname"],
                                       env={"NOTE": ONE_LINE}))
    proc, workdir, capture = _run_batch(tmp_path, spec)
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "seen.txt").read_text() == HOSTILE + "\n"  # the script's text arrived verbatim
    assert f"note=[{ONE_LINE}] job=[{HOSTILE}]" in proc.stdout and not Path("/tmp/hpcai-wiring-pwned").exists()
    args = (capture / "srun-args").read_text().splitlines()
    assert args[:3] == ["--nodes=1", "--ntasks=1", "--cpus-per-task=4"]  # one container step with all the CPUs
    assert args[3] == f"--container={workdir}/.hpcai-ct-4242/bundle" and args[4] == "--export=JOBVAR,NOTE"
    config = json.loads((capture / "config.json").read_text())
    assert config["root"] == {"path": "rootfs", "readonly": True}
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert mounts["/usr"]["source"] == f"{bundle}/rootfs/usr" and "ro" in mounts["/usr"]["options"]
    assert mounts["/etc"]["options"][:2] == ["rbind", "ro"]
    assert "/proc" not in [m["destination"] for m in config["mounts"] if m["type"] == "bind"]  # proc mounts proc
    assert mounts[str(workdir)]["options"][:2] == ["rbind", "rw"] and config["process"]["cwd"] == str(workdir)
    # /opt/src is not in the image: /opt is recreated in the job's root, its entry bound, the mount lands there.
    assert "/opt" not in mounts and mounts["/opt/venv"]["source"] == f"{bundle}/rootfs/opt/venv"
    assert mounts["/opt/src/hostname"]["source"] == "/etc/hostname"
    rootfs = (capture / "rootfs.txt").read_text().split("\n")
    assert "bin l" in rootfs and "opt d" in rootfs and "proc d" in rootfs
    assert sorted(os.listdir(bundle / "rootfs")) == ["bin", "dev", "etc", "opt", "proc", "tmp", "usr"]  # untouched
    assert not (workdir / ".hpcai-ct-4242").exists()  # the job bundle is removed when the script exits


def test_oci_wrap_passes_the_exit_status_and_needs_one_node(tmp_path: Path) -> None:
    bundle = _fake_image(tmp_path)
    proc, _, _ = _run_batch(tmp_path, JobSpec(name="ct", script="exit 7", container=str(bundle)))
    assert proc.returncode == 7
    with pytest.raises(InvalidJobSpecError, match="one node"):
        build_sbatch_script(JobSpec(name="ct", script="true", container=str(bundle),
                                    resources=Resources(nodes=2, ntasks=2)), "/w")


def test_pyxis_and_apptainer_wraps_match_their_documented_forms() -> None:
    spec = JobSpec(name="ct", script="python run.py", environment={"A": "1"}, resources=Resources(cpus_per_task=3),
                   container=Container(image="registry.example.org:5000/team/stage:1.2", mounts=["/data:/in"],
                                       env={"B": "x y"}, runtime="pyxis"))
    script = build_sbatch_script(spec, "/scratch/w")
    assert ("srun --nodes=1 --ntasks=1 --cpus-per-task=3 '--container-image=registry.example.org:5000#team/stage:1.2' "
            "--container-mounts=/data:/in:ro,/scratch/w:/scratch/w --container-workdir=/scratch/w "
            '--container-env=A,B /bin/bash "$hpcai_ct/script.sh"') in script
    assert "export B='x y'" in script
    app = build_sbatch_script(spec.replace(container=spec.container.replace(runtime="apptainer", gpus=True)),
                              "/scratch/w")
    assert ("apptainer exec --nv --bind /data:/in:ro --bind /scratch/w:/scratch/w --pwd /scratch/w "
            'docker://registry.example.org:5000/team/stage:1.2 /bin/bash "$hpcai_ct/script.sh"') in app
    assert "export APPTAINERENV_B='x y'" in app


def test_slurm_backend_refuses_a_runtime_the_cluster_does_not_offer_before_sbatch(tmp_path: Path) -> None:
    fake = FakeSlurmTransport()
    hook = SlurmHook(transport=fake)
    hook._extras = {"container_runtimes": "oci,apptainer"}
    backend = SlurmBackend(hook=hook)
    spec = JobSpec(name="ct", script="true", container=Container(image="python:3.11", runtime="pyxis"))
    with pytest.raises(RuntimeNotOfferedError, match=r"not offered on this slurm connection \(it offers: oci, "
                                                     r"apptainer\)"):
        backend.submit(spec, workdir="/scratch/w")
    assert not fake.jobs
    # auto picks what the cluster offers and the image fits: a reference on oci+apptainer -> apptainer.
    backend.submit(spec.replace(container=spec.container.replace(runtime="auto")), workdir="/scratch/w")
    (job,) = fake.jobs.values()
    assert "apptainer exec" in job.script


# ----------------------------------------------------------------------------- operators, at parse time
def _slurm_op(**kwargs: Any) -> SlurmJobOperator:
    with DAG("ct_dag", schedule=None):
        return SlurmJobOperator(task_id="t", script="true", **kwargs)


@pytest.mark.parametrize(("container", "message"), [
    ({"image": "/img/bundle", "mounts": ["data:/in"]}, "relative"),
    ({"image": "/img/bundle", "mounts": ["/data/../etc:/in"]}, "'..'"),
    ({"image": "Bad Image!"}, "invalid name"),
    ({"image": "/img/bundle", "runtime": "kubernetes"}, "is a path"),
    ({"image": "python:3.11", "runtime": "podman"}, "not offered on this slurm"),
    ({"image": "/img/bundle", "env": {"A B": "1"}}, "env name"),
    ({"image": "/img/bundle", "privileged": True}, "unknown container fields"),
    (42, "image reference or a mapping"),
])
def test_operators_refuse_bad_containers_at_parse_time(container: Any, message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message) as err:
        _slurm_op(container=container)
    assert "task t" in str(err.value)


def test_grid_engine_runs_no_containers_and_says_so() -> None:
    from airflow_provider_hpcai.operators.base import BaseJobOperator

    with DAG("ct_dag", schedule=None), pytest.raises(InvalidJobSpecError, match="gridengine backend runs no containers"):
        BaseJobOperator(task_id="t", backend="gridengine", container="/img/bundle")


def test_kubernetes_operator_takes_its_image_from_the_container() -> None:
    with DAG("ct_dag", schedule=None):
        op = KubernetesJobStageOperator(task_id="k", script="true", container={"image": "python:3.11", "env": {"A": "1"}})
        assert op.image == "python:3.11" and op.container.env == {"A": "1"}
        with pytest.raises(InvalidJobSpecError, match="two images"):
            KubernetesJobStageOperator(task_id="k2", script="true", image="python:3.12", container="python:3.11")
        with pytest.raises(InvalidJobSpecError, match="is a path"):
            KubernetesJobStageOperator(task_id="k3", script="true", container="/img/bundle")


def test_simulation_in_a_container_uses_the_images_python_and_mpiexec() -> None:
    with DAG("ct_dag", schedule=None):
        op = SimulationOperator(task_id="s", kernel="climate", ranks=2, backend="slurm",
                                kernel_params={"nx": 32, "ny": 32, "steps": 2}, container="/img/bundle")
        script = op.build_script({"run_id": "r", "ti": None})
        assert "mpiexec -launcher fork -n 2 python -m mpi4py -m simulation_kernels.climate" in script
        with pytest.raises(InvalidJobSpecError, match="srun cannot start ranks inside|'srun' cannot"):
            SimulationOperator(task_id="s2", kernel="climate", ranks=2, backend="slurm", launcher="srun",
                               container="/img/bundle")


# ----------------------------------------------------------------------------- Kubernetes manifests
def test_job_manifest_with_a_container_validates_on_1_30_and_1_33() -> None:
    pytest.importorskip("kubernetes_validate")
    spec = JobSpec(name="ct", script="python -m stage", environment={"A": "job", "B": "job"},
                   resources=Resources(memory="1G"),
                   container=Container(image="registry.example.org/team/stage:1.2", workdir="/out",
                                       mounts=["/shared/runs:/out:rw", "/reference:/ref"], env={"B": "image"}))
    manifest = job_manifest(spec, KubernetesSettings(namespace="hpc"), name="ct-abc12345")
    validate_k8s(manifest)
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.org/team/stage:1.2" and container["workingDir"] == "/out"
    assert container["env"] == [{"name": "A", "value": "job"}, {"name": "B", "value": "image"}]
    assert [(m["mountPath"], m["readOnly"]) for m in container["volumeMounts"]] == [("/out", False), ("/ref", True)]
    assert [v["hostPath"]["path"] for v in pod["volumes"]] == ["/shared/runs", "/reference"]


def test_kubernetes_refuses_a_bundle_path() -> None:
    settings = KubernetesSettings(namespace="hpc")
    with pytest.raises(InvalidJobSpecError, match="pulls images from a registry"):
        job_manifest(JobSpec(name="ct", script="true", container="/img/bundle"), settings, name="ct-abc12345")
    with pytest.raises(InvalidJobSpecError, match="pulls images from a registry"):
        resolve_image(JobSpec(name="ct", script="true", container="/img/bundle"), settings)


def test_mpijob_with_a_container_maps_its_folders_for_launcher_and_workers() -> None:
    pytest.importorskip("kubernetes_validate")
    from airflow_provider_hpcai.kubernetes.mpijob import mpijob_manifest
    from tests.unit.kubernetes.helpers import validate_mpijob

    spec = JobSpec(name="ct", script="mpiexec python -m stage", resources=Resources(nodes=2, ntasks=4, memory="1G"),
                   container=Container(image="registry.example.org/team/stage:1.2", workdir="/out",
                                       mounts=["/shared/runs:/out:rw", "/reference:/ref"], env={"B": "image"}))
    manifest = mpijob_manifest(spec, KubernetesSettings(namespace="hpc"), name="ct-abc12345")
    validate_mpijob(manifest)
    for role in ("Launcher", "Worker"):
        pod = manifest["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.org/team/stage:1.2" and container["workingDir"] == "/out"
        assert {"name": "B", "value": "image"} in container["env"]
        assert [(m["mountPath"], m["readOnly"]) for m in container["volumeMounts"]] == [("/out", False), ("/ref", True)]
        assert {m["name"] for m in container["volumeMounts"]} == {v["name"] for v in pod["volumes"]}
        assert [v["hostPath"]["path"] for v in pod["volumes"]] == ["/shared/runs", "/reference"]


# ----------------------------------------------------------------------------- local backend
def test_local_backend_without_a_runtime_fails_clearly_and_starts_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    backend = LocalBackend(base_dir=str(tmp_path))
    with pytest.raises(ContainerRuntimeNotFoundError, match="runc is not on PATH"):
        backend.submit(JobSpec(name="ct", script="true", container="/img/bundle", tag=None), workdir=str(tmp_path))
    with pytest.raises(ContainerRuntimeNotFoundError, match="podman is not on PATH"):
        backend.submit(JobSpec(name="ct", script="true", container="python:3.11"), workdir=str(tmp_path))
    assert not list(tmp_path.rglob("*.json"))  # no job record: nothing was started
