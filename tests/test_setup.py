"""`make setup` leaves nothing to install by hand: open3d imports, and the system-library step
(tools/system_deps.sh) installs libusb as root or names the one command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
SCRIPT = REPO_DIR / "tools" / "system_deps.sh"
# an active virtualenv or a parent make (this test runs under `make test`) would change the dry run
MAKE_VARS = {"VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
needs_posix = pytest.mark.skipif(
    os.name != "posix" or shutil.which("bash") is None, reason="the set-up script is bash"
)


def test_open3d_imports_in_the_environment_setup_made():
    # a fresh process of the interpreter running the tests (the one `make setup` installed into):
    # open3d-cpu's wheel fails here with "libusb-1.0.so.0: cannot open shared object file"
    # when the system library is missing
    proc = subprocess.run(
        [sys.executable, "-c", "import open3d; print(open3d.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"`import open3d` failed in {sys.executable}; `make setup` should have provided what it "
        f"needs (Debian: `sudo apt-get install -y libusb-1.0-0`):\n{proc.stderr[-2000:]}"
    )


class FakeSystem:
    """Stand-ins for ldconfig / apt-get / apt-cache: a marker file plays the installed library."""

    def __init__(self, root: Path, *, installed: bool, lists: bool = True, apt: bool = True):
        self.root, self.bin, self.log = root, root / "bin", root / "apt.log"
        self.lib = root / "libusb-installed"
        self.bin.mkdir()
        if installed:
            self.lib.touch()
        self._tool(
            "ldconfig", f'[ -e {self.lib} ] && echo "\tlibusb-1.0.so.0 (libc6,x86-64) => /x"'
        )
        self._tool("apt-cache", "exit 0" if lists else "exit 100")
        if apt:
            # the install creates the library unless the test says it must stay missing
            install = "" if (root / "broken").exists() else f"touch {self.lib}"
            self._tool(
                "apt-get",
                f'echo "$@" >> {self.log}\ncase "$*" in *install*) {install or ":"};; esac',
            )

    def _tool(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)

    def run(self, uid: int, **env: str) -> subprocess.CompletedProcess:
        full = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "LDCONFIG": str(self.bin / "ldconfig"),
            "APT_GET": str(self.bin / "apt-get"),
            "APT_CACHE": str(self.bin / "apt-cache"),
            "AS_UID": str(uid),
            "SYSTEM_DEPS_OS": "Linux",
            **env,
        }
        return subprocess.run(
            ["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=30
        )

    def apt_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@needs_posix
def test_system_deps_does_nothing_when_the_library_is_there(tmp_path):
    fake = FakeSystem(tmp_path, installed=True)
    for uid in (0, 1000):
        assert fake.run(uid).returncode == 0
    assert fake.apt_calls() == []


@needs_posix
def test_system_deps_installs_libusb_as_root(tmp_path):
    fake = FakeSystem(tmp_path, installed=False)
    proc = fake.run(0)
    assert proc.returncode == 0, proc.stderr
    calls = fake.apt_calls()
    assert len(calls) == 1 and "install" in calls[0] and "libusb-1.0-0" in calls[0]
    assert "-y" in calls[0].split()  # non-interactive
    assert fake.lib.exists()


@needs_posix
def test_system_deps_updates_empty_package_lists_first(tmp_path):
    fake = FakeSystem(tmp_path, installed=False, lists=False)
    assert fake.run(0).returncode == 0
    calls = fake.apt_calls()
    assert [c.split()[0] for c in calls] == ["update", "install"]


@needs_posix
def test_system_deps_stops_with_the_command_when_not_root(tmp_path):
    fake = FakeSystem(tmp_path, installed=False)
    proc = fake.run(1000)
    assert proc.returncode != 0
    assert "sudo apt-get install -y libusb-1.0-0" in proc.stderr
    assert fake.apt_calls() == [] and not fake.lib.exists()
    # the documented way past it for users without root
    assert fake.run(1000, SYSTEM_DEPS="skip").returncode == 0


@needs_posix
def test_system_deps_without_apt_names_the_library(tmp_path):
    fake = FakeSystem(tmp_path, installed=False, apt=False)
    proc = fake.run(0)
    assert proc.returncode != 0 and "libusb-1.0.so.0" in proc.stderr


@needs_posix
def test_system_deps_fails_when_the_install_leaves_the_library_missing(tmp_path):
    (tmp_path / "broken").touch()
    fake = FakeSystem(tmp_path, installed=False)
    proc = fake.run(0)
    assert proc.returncode != 0 and "still not found" in proc.stderr


@needs_posix
def test_system_deps_is_a_no_op_off_linux(tmp_path):
    fake = FakeSystem(tmp_path, installed=False)
    assert fake.run(1000, SYSTEM_DEPS_OS="Darwin").returncode == 0
    assert fake.apt_calls() == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_every_setup_path_runs_the_system_step(tmp_path):
    # dry runs (make -n): `make setup` and `make test` check the system libraries every time, and
    # the first install of a fresh environment does too (what `make bench` goes through)
    fresh = f"VENV={tmp_path / 'venv'}"
    for target in ("setup", "test", "bench"):
        out = subprocess.run(
            ["make", "-n", target, fresh],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k not in MAKE_VARS},
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert "tools/system_deps.sh" in lines, (target, out.stdout)
        install = next(i for i, line in enumerate(lines) if "pip install" in line)
        assert lines.index("tools/system_deps.sh") < install, target


def test_every_console_script_module_runs_as_python_m():
    """`python -m <module> --help` works for each console script's module (a module turned into a
    package needs its __main__.py, which nothing else would notice before `make bench` fails)."""
    import tomllib

    from avggt_bench.paths import REPO_DIR

    scripts = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    modules = sorted({target.split(":")[0] for target in scripts.values()})
    packages = [m for m in modules if REPO_DIR.joinpath(*m.split(".")).is_dir()]
    assert "avggt_bench.bench" in packages
    for module in modules:  # a plain module runs as a script when it has a __main__ guard
        path = REPO_DIR.joinpath(*module.split(".")).with_suffix(".py")
        if path.is_file():
            assert "__main__" in path.read_text() or "@hydra.main" in path.read_text(), module
    for module in packages:
        done = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"python -m {module} --help failed:\n{done.stderr[-2000:]}"
        help_text = (done.stdout + done.stderr).lower()
        assert "usage" in help_text or "powered by hydra" in help_text, module
