"""Shared test fixtures: paths to ../shared and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "data" / "real"
GOLDEN = SHARED / "golden"


def need(path: Path) -> Path:
    """Skip the test (with the reason) when a ../shared resource is absent."""
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is missing)")
    return path


@pytest.fixture()
def one_thread():
    """One intra-op thread while the test runs: the fastest setting on small shared machines, and bit-identical
    CPU kernels between runs (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
