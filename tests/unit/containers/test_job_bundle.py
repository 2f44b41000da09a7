"""The job-bundle writer (:data:`BUNDLE_PROGRAM`) run for real on a small image bundle.

Slurm 25.05+ bind-mounts a container step's spool folder at its own path inside the container;
the job's root must let the runtime create that mount point without writing to the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_hpcai.containers.wrap import BUNDLE_PROGRAM


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "image"
    for folder in ("rootfs/etc", "rootfs/var/lib/dpkg", "rootfs/var/spool", "rootfs/run", "rootfs/usr/bin"):
        (image / folder).mkdir(parents=True)
    (image / "rootfs/etc/os-release").write_text("ID=debian\n")
    (image / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                                                   "process": {"args": ["sh"], "cwd": "/"}, "mounts": []}))
    return image


def _write(image: Path, dest: Path, env: dict[str, str]) -> dict:
    dest.mkdir()
    overlay = {"mounts": [{"destination": "/jobs/1", "type": "bind", "source": "/jobs/1", "options": ["rbind"]}]}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    subprocess.run([sys.executable, "-c", BUNDLE_PROGRAM, str(image), str(dest)], input=json.dumps(overlay),
                   text=True, check=True, env={**clean, **env})
    return json.loads((dest / "config.json").read_text())


def _binds(config: dict) -> set[str]:
    return {m["destination"] for m in config["mounts"] if m["type"] == "bind"}


def test_outside_slurm_the_image_folders_are_bound_whole(tmp_path: Path) -> None:
    config = _write(_image(tmp_path), tmp_path / "job", {})
    assert {"/var", "/etc", "/usr"} <= _binds(config)
    assert not (tmp_path / "job/rootfs/var/lib").exists()
    assert config["root"] == {"path": "rootfs", "readonly": True}


def test_the_slurm_spool_folder_can_be_mounted_in_the_read_only_image(tmp_path: Path) -> None:
    etc = tmp_path / "slurm-etc"
    etc.mkdir()
    (etc / "slurm.conf").write_text("ClusterName=x\nSlurmdSpoolDir=/var/lib/site-slurm/spool  # ours\n")
    config = _write(_image(tmp_path), tmp_path / "job", {"SLURM_CONF": str(etc / "slurm.conf")})
    root = tmp_path / "job/rootfs"
    # /var and /var/lib are folders of the job's own root, so runc can create
    # /var/lib/site-slurm/spool/oci-job<id>-<step> there; what the image has below them is bound read-only.
    assert (root / "var/lib").is_dir() and not (root / "var/lib/site-slurm").exists()
    assert {"/var/lib/dpkg", "/var/spool", "/etc"} <= _binds(config)
    assert "/var" not in _binds(config) and "/var/lib" not in _binds(config)
    assert not (tmp_path / "image/rootfs/var/lib/site-slurm").exists()


def test_oci_conf_container_path_wins_over_the_spool_dir(tmp_path: Path) -> None:
    etc = tmp_path / "slurm-etc"
    etc.mkdir()
    (etc / "slurm.conf").write_text("SlurmdSpoolDir=/var/lib/site-slurm/spool\n")
    (etc / "oci.conf").write_text('RunTimeRun="runc run %b"\nContainerPath=/var/spool/oci\n')
    config = _write(_image(tmp_path), tmp_path / "job", {"SLURM_CONF": str(etc / "slurm.conf")})
    assert (tmp_path / "job/rootfs/var/spool").is_dir()
    assert "/var/lib" in _binds(config) and "/var/spool" not in _binds(config)
