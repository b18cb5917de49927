"""Shared test fixtures: paths to ../shared and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "data" / "real"
GOLDEN = SHARED / "golden"


def need(path: Path) -> Path:
    """Skip the test (with the reason) when a ../shared resource is absent."""
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is missing)")
    return path
