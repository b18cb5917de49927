"""benchmarks/gpu_check.sh parses, and --dry-run lists every command of the GPU check without running any."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_gpu_check_dry_run_lists_every_command_and_runs_none(tmp_path: Path):
    out = tmp_path / "results"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(tmp_path / "frames"), str(out)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": "python-that-is-never-run"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(line.startswith("+ python-that-is-never-run ") for line in lines), lines
    assert "-m pytest -q -m cuda tests" in lines[0]
    bench = [line for line in lines if " -m dff benchmark " in line]
    assert [line.split("--preset ")[1].split()[0] for line in bench] == ["r50_dc5", "r101_dc5", "x101_dc5"]
    for line in bench:
        assert "--device cuda" in line and "--key-interval 1,10" in line
        assert "--compare fast,fast:fp16" in line and str(tmp_path / "frames") in line
    assert "benchmarks/train_memory.py" in lines[-1] and "--device cuda" in lines[-1]
    assert len(lines) == 5 and not out.exists()


def test_train_memory_helper_runs_a_step_on_cpu(tmp_path: Path):
    """The helper the GPU check calls trains for real (here one tiny step on CPU, where no peak is measured)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "train_memory.py"), "--work", str(tmp_path), "--device", "cpu"]
        + ["--preset", "tiny_synthetic", "--iters", "1", "--size", "320x192"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train memory tiny_synthetic: torch.cuda.max_memory_allocated not measured on CPU" in proc.stdout
    assert (tmp_path / "run_tiny_synthetic" / "latest.pth").is_file()
