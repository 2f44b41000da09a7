"""Every Debian package the running daemons load is installed by the project's own scripts.

A package once installed by hand (``slurm-wlm-jwt-plugin`` was) makes a machine pass where a
fresh one fails. This test looks at what the daemons of ``scripts/local-slurm`` and
``scripts/local-sshd`` really loaded (``/proc/<pid>/exe`` and ``/proc/<pid>/maps``), asks
``dpkg -S`` which packages own those files, and fails when one of them is not among the
packages the scripts name or their Depends/Pre-Depends (recursively, as ``apt-get install
--no-install-recommends`` would install them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_service

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[2]
#: Daemon names as in /proc/<pid>/comm, and the script that starts each.
DAEMONS = {
    "slurmctld": "local-slurm", "slurmd": "local-slurm", "slurmdbd": "local-slurm",
    "slurmrestd": "local-slurm", "munged": "local-slurm", "mariadbd": "local-slurm",
    "sshd": "local-sshd",
}
_NAME = r"[a-z0-9][a-z0-9+.-]+"


def named_packages(scripts: Path = REPO / "scripts") -> set[str]:
    """The Debian packages the install scripts name.

    Read from the three forms they use: ``PACKAGES=(...)``, ``apt_ensure a b ...`` (literal
    words only) and the bootstrap's ``for pkg in a b ...; do``.
    """
    names: set[str] = set()
    for path in [*Path(scripts).glob("*"), *Path(scripts).glob("lib/*")]:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for words in re.findall(r"^\s*PACKAGES=\(([^)]*)\)", text, re.MULTILINE):
            names.update(words.split())
        for words in re.findall(r"^\s*apt_ensure ([^\n\"$]*)$", text, re.MULTILINE):
            names.update(words.split())
        for words in re.findall(r"^\s*for pkg in ([^;\n]*);", text, re.MULTILINE):
            names.update(words.split())
        names.update(re.findall(r"need\+=\((" + _NAME + r")\)", text))
    return {n for n in names if re.fullmatch(_NAME, n)}


def _dpkg_fields(package: str) -> tuple[str, str]:
    """``(Depends + Pre-Depends, Provides)`` of an installed package; empty when not installed."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Depends}, ${Pre-Depends}|${Provides}", package],
        capture_output=True, text=True,
    )
    if out.returncode != 0 or not out.stdout.startswith("ii"):
        return "", ""
    _status, depends, provides = out.stdout.split("|", 2)
    return depends, provides


def _dependency_names(field: str) -> set[str]:
    """Every package a Depends field can be satisfied by (all alternatives, no versions or arch)."""
    names = set()
    for clause in field.split(","):
        for alt in clause.split("|"):
            word = alt.strip().split(" ")[0].split(":")[0]
            if word:
                names.add(word)
    return names


def providers_index() -> dict[str, set[str]]:
    """Virtual package -> installed packages that provide it."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}|${Provides}\n"], capture_output=True, text=True)
    index: dict[str, set[str]] = {}
    for line in out.stdout.splitlines():
        package, _, provides = line.partition("|")
        for virtual in _dependency_names(provides):
            index.setdefault(virtual, set()).add(package)
    return index


def dependency_closure(roots: set[str]) -> set[str]:
    """The installed packages reachable from *roots* through Depends and Pre-Depends."""
    provided = providers_index()
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        depends, _ = _dpkg_fields(name)
        for dep in _dependency_names(depends) | provided.get(name, set()):
            if dep not in seen:
                todo.append(dep)
    return seen


#: Name-service modules: glibc loads whichever ``/etc/nsswitch.conf`` names (the machine's own
#: configuration, e.g. ``systemd`` on a standard install), so no package depends on them.
_NSS_MODULE = re.compile(r"/libnss_[a-z0-9_]+\.so[.0-9]*\Z")


def loaded_files(pid: int) -> set[str]:
    """The executable and every file mapped into process *pid* (NSS modules left out)."""
    files = {str(Path(f"/proc/{pid}/exe").resolve())}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(None, 5)
        if (len(parts) == 6 and parts[5].startswith("/") and not parts[5].endswith("(deleted)")
                and not _NSS_MODULE.search(parts[5])):
            files.add(parts[5])
    return files


def owning_packages(files: set[str]) -> dict[str, str]:
    """package -> one file it owns, for the files dpkg knows (others: built, not packaged)."""
    owners: dict[str, str] = {}
    for path in sorted(files):
        candidates = {path, str(Path(path).resolve())}
        for candidate in candidates:
            out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if out.returncode != 0:
                continue
            for line in out.stdout.splitlines():
                packages, _, _ = line.partition(": ")
                for package in packages.split(","):
                    owners.setdefault(package.strip().split(":")[0], path)
            break
    return owners


def running_daemons() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if comm in DAEMONS:
            found.setdefault(comm, []).append(int(proc.name))
    return found


def test_scripts_name_what_their_daemons_load(slurm_env: dict[str, str], ssh_env: dict[str, str]) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    daemons = running_daemons()
    need_service(set(DAEMONS) <= set(daemons), f"all of {sorted(DAEMONS)} running (found {sorted(daemons)})")
    loaded: set[str] = set()
    for pids in daemons.values():
        for pid in pids:
            try:
                loaded |= loaded_files(pid)
            except OSError:  # a short-lived sshd child that just exited
                continue
    owners = owning_packages(loaded)
    assert {"slurmctld", "slurmdbd", "slurm-wlm-jwt-plugin", "munge"} <= set(owners), (
        f"expected the daemons to load files of Slurm, munge and the JWT plugin; dpkg owners: {sorted(owners)}"
    )
    covered = dependency_closure(named_packages())
    missing = {pkg: path for pkg, path in owners.items() if pkg not in covered}
    assert not missing, (
        "the running daemons load files from Debian packages that no script of the project installs "
        "(a fresh machine will fail); add them to scripts/local-slurm PACKAGES or the bootstrap list:\n"
        + "\n".join(f"  {pkg}: {path}" for pkg, path in sorted(missing.items()))
    )


def test_named_packages_reads_the_scripts() -> None:
    names = named_packages()
    assert {"slurmctld", "slurmdbd", "slurmrestd", "slurm-wlm-jwt-plugin", "munge", "mariadb-server",
            "openssh-server", "npm", "unzip"} <= names


def test_closure_leaves_out_what_nothing_depends_on(tmp_path: Path) -> None:
    """The check can fail: a package only a hand install brought is not in the closure."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "local-slurm").write_text("PACKAGES=(slurmdbd)\n")
    closure = dependency_closure(named_packages(scripts))
    assert "slurmdbd" in closure
    assert "slurm-wlm-jwt-plugin" not in closure
