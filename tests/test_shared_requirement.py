"""`need` skips a test whose ../shared resource is absent, and fails it under DFF_REQUIRE_SHARED=1 (CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GOLDEN, REQUIRE_SHARED, need


def test_need_skips_with_the_reason_on_a_users_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(REQUIRE_SHARED, raising=False)
    with pytest.raises(pytest.skip.Exception, match="absent.*../shared is missing"):
        need(tmp_path / "absent")


def test_need_fails_when_ci_requires_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(REQUIRE_SHARED, "1")
    with pytest.raises(pytest.fail.Exception, match=f"absent.*{REQUIRE_SHARED}=1 requires it"):
        need(tmp_path / "absent")


def test_need_returns_a_present_path_and_the_golden_fixtures_are_in_the_repo(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(REQUIRE_SHARED, "1")
    assert need(GOLDEN / "golden_r50_seed0.npz") == GOLDEN / "golden_r50_seed0.npz"
    assert len(sorted((GOLDEN / "frames_seed0").glob("*.png"))) == 12
