"""The wheels a site installs: what is in them, what they declare, and that they build cleanly.

Builds the provider's and the kernels' wheels from this checkout with the environment's own
setuptools (``--no-build-isolation``: offline, about 10 s) and inspects them. The install into a
plain Airflow (size, ``airflow providers list``, parsing, missing-extra errors) needs PyPI and a
few minutes: ``scripts/check-install`` does it.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
PROVIDER = "airflow_provider_hpcai"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from importlib.metadata import version

    setuptools = version("setuptools")
    assert int(setuptools.split(".")[0]) >= 77, (
        f"setuptools {setuptools} cannot build this project (SPDX license, license-files): "
        "run scripts/bootstrap (the test extra asks for setuptools>=77)"
    )
    out = tmp_path_factory.mktemp("wheels")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(REPO), str(REPO / "simulation_kernels")],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # Our own pyproject files must not make setuptools warn (deprecated license tables, ...).
    noise = [line for line in (build.stdout + build.stderr).splitlines()
             if re.search(r"BuildBackendWarning|Deprecat|SetuptoolsWarning", line)]
    assert not noise, "\n".join(noise)
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {PROVIDER, "hpcai_simulation_kernels"}, found
    return found


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(meta))


def dist_info_file(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        path = next(n for n in zf.namelist() if n.endswith(f".dist-info/{name}"))
        return zf.read(path).decode()


def test_provider_wheel_ships_only_the_provider_package(wheels) -> None:
    files = names(wheels[PROVIDER])
    top = {n.split("/")[0] for n in files if not n.split("/")[0].endswith(".dist-info")}
    assert top == {PROVIDER}, f"top-level entries besides the provider: {sorted(top - {PROVIDER})}"
    assert dist_info_file(wheels[PROVIDER], "top_level.txt").split() == [PROVIDER]
    # The kernels' parameter tables travel with the provider (validation without the kernels).
    assert {f"{PROVIDER}/kernel_params/specs.py", f"{PROVIDER}/kernel_params/params.py"} <= files
    # In the repository they are links to simulation_kernels/; the wheel must hold their content.
    with zipfile.ZipFile(wheels[PROVIDER]) as zf:
        for name in ("specs.py", "params.py"):
            source = zf.read(f"{PROVIDER}/kernel_params/{name}").decode()
            assert source == (REPO / "simulation_kernels" / name).read_text(), f"kernel_params/{name} is not the tables"


def test_provider_wheel_carries_every_data_file_of_the_package(wheels) -> None:
    """Templates, plugin assets, schemas: whatever the package folder holds besides code."""
    files = names(wheels[PROVIDER])
    tracked = subprocess.run(["git", "ls-files", PROVIDER], capture_output=True, text=True, cwd=REPO,
                             check=False).stdout.split()
    data = [p for p in tracked if not p.endswith(".py") and (REPO / p).is_file()]
    missing = [p for p in data if p not in files]
    assert not missing, f"package files left out of the wheel: {missing}"
    builtin = sorted(p for p in tracked if "/templates/builtin/" in p)
    assert all(p in files for p in builtin)


def test_license_and_metadata(wheels) -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    for wheel in wheels.values():
        assert dist_info_file(wheel, "licenses/LICENSE") == text
        meta = metadata(wheel)
        assert meta["License-Expression"] == "Apache-2.0"
        assert not any(c.startswith("License ::") for c in meta.get_all("Classifier") or [])
    meta = metadata(wheels[PROVIDER])
    assert "Framework :: Apache Airflow :: Provider" in meta.get_all("Classifier")
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Changelog"} <= set(urls)


def test_heavy_dependencies_are_extras(wheels) -> None:
    requires = metadata(wheels[PROVIDER]).get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    heavy = ("cncf-kubernetes", "providers-ssh", "kubernetes", "dask", "distributed", "mlflow", "numpy",
             "numba", "mpi4py", "simulation-kernels", "statsmodels", "pandas")
    assert not [r for r in core if any(h in r for h in heavy)], core

    def extra(name: str) -> list[str]:
        return [r.split(";")[0].strip() for r in requires if f'extra == "{name}"' in r]

    assert extra("kubernetes") == ["apache-airflow-providers-cncf-kubernetes>=10.12.0"]
    assert extra("ssh") == ["apache-airflow-providers-ssh>=4.0"]
    kernels_version = metadata(wheels["hpcai_simulation_kernels"])["Version"]
    assert extra("kernels") == [f"hpcai-simulation-kernels=={kernels_version}"]
    provides = set(metadata(wheels[PROVIDER]).get_all("Provides-Extra"))
    assert provides >= {"kubernetes", "ssh", "kernels", "mpi", "dask", "advisor", "all"}


def test_entry_points(wheels) -> None:
    text = dist_info_file(wheels[PROVIDER], "entry_points.txt")
    for line in ("[apache_airflow_provider]", "provider_info = airflow_provider_hpcai.get_provider_info:get_provider_info",
                 "[airflow.plugins]", "[airflow.policy]", "[console_scripts]", "hpcai = airflow_provider_hpcai.cli:main"):
        assert line in text, text


def test_kernels_wheel_keeps_python_m_working(wheels, tmp_path) -> None:
    files = names(wheels["hpcai_simulation_kernels"])
    for kernel in ("climate", "seismic", "assembly_line"):
        assert f"simulation_kernels/{kernel}/__main__.py" in files
    # Unpacked alone (no repository on the path), `python -m simulation_kernels.<name>` resolves.
    with zipfile.ZipFile(wheels["hpcai_simulation_kernels"]) as zf:
        zf.extractall(tmp_path)
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import importlib.util as u; "
            "print(u.find_spec('simulation_kernels.seismic.__main__').origin)")
    probe = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert probe.returncode == 0 and probe.stdout.startswith(str(tmp_path)), probe.stderr
    requires = metadata(wheels["hpcai_simulation_kernels"]).get_all("Requires-Dist")
    assert not [r for r in requires if "airflow" in r], "the kernels must not need Airflow"
