"""The environment the package was installed into: one OpenCV distribution, `pip check` clean, every third-party
module that dff imports declared in pyproject.toml; and what `dff` says when a system library that OpenCV loads is
missing (a minimal container image without libGL). benchmarks/check_extras.sh checks the first two in a fresh
virtual environment per extra."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_exactly_one_opencv_distribution_is_installed():
    installed = sorted(OPENCV & {_normalized(d.metadata["Name"]) for d in importlib.metadata.distributions()})
    assert installed == ["opencv-python"], (
        f"OpenCV distributions installed: {installed}; they all install the one cv2 package folder, so each "
        "overwrites the other's files (README.md, Install: keep opencv-python only)"
    )


def test_pip_check_passes():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imported_top_level_modules() -> set[str]:
    """Every module dff's source imports at top level name (absolute imports), less the standard library and dff."""
    names = set()
    for path in (ROOT / "src" / "dff").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"dff", "__future__"}


def test_every_third_party_module_dff_imports_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {_normalized(Requirement(r).name) for r in requirements}
    providers = importlib.metadata.packages_distributions()
    undeclared = {
        module: providers.get(module, ["(not installed)"])
        for module in sorted(_imported_top_level_modules())
        if not declared & {_normalized(d) for d in providers.get(module, [])}
    }
    assert undeclared == {}, f"imported by dff but not in pyproject.toml (module: distributions): {undeclared}"


def _libgl_loaded_by_cv2() -> Path | None:
    """The libGL file that cv2 loaded into this process (opencv-python's Qt needs it; the headless build none)."""
    import cv2  # noqa: F401

    for line in Path("/proc/self/maps").read_text().splitlines():
        if "/libGL.so" in line:
            return Path(line.split()[-1])
    return None


def _can_hide_a_file() -> bool:
    """Root with `unshare`: a file can be hidden in a private mount namespace, for one process and its children."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _can_hide_a_file(), reason="needs root and unshare to hide libGL from one process")
def test_missing_libgl_is_one_line_naming_the_packages_and_help_still_works(tmp_path):
    lib = _libgl_loaded_by_cv2()
    if lib is None:
        pytest.skip("this cv2 does not load libGL")
    # The command in a private mount namespace where libGL is /dev/null, as on an image without the libgl1 package.
    without_libgl = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    without_libgl += ['mount --bind /dev/null "$0" && exec "$@"', str(lib), sys.executable]

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*without_libgl, *argv], capture_output=True, text=True, timeout=120)

    assert "libGL" in run("-c", "import cv2").stderr  # the library is hidden indeed
    helped = run("-m", "dff", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: dff")
    out = tmp_path / "synthetic"
    made = run("-m", "dff", "make-synthetic", str(out), "--videos", "1", "--val-videos", "1", "--frames", "2")
    lines = made.stderr.splitlines()
    assert made.returncode == 2 and len(lines) == 1, made.stderr
    assert lines[0].startswith("dff: error: ") and "libGL.so.1" in lines[0]
    assert lines[0].endswith("on Debian or Ubuntu: apt-get install libgl1 libglib2.0-0)")
    assert not out.exists()
