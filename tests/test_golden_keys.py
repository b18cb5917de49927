"""The three mmtracking key lists (tests/golden/keys_*.txt) equal `DFF(preset).state_dict()` exactly."""

from __future__ import annotations

import pytest

import dff
from dff.models.detector import DFF
from tests.conftest import GOLDEN


def read_keys(name: str) -> list[tuple[str, list[int], str]]:
    """(key, shape, dtype) rows of a golden key list (`key<TAB>[shape]<TAB>dtype`)."""
    rows = []
    for line in (GOLDEN / name).read_text().splitlines():
        key, shape, dtype = line.split("\t")
        dims = shape.strip("[]")
        rows.append((key, [int(d) for d in dims.split(",")] if dims else [], dtype))
    return rows


@pytest.mark.parametrize(
    ("preset", "keys", "count"),
    [("r50_dc5", "keys_r50.txt", 367), ("r101_dc5", "keys_r101.txt", 673), ("x101_dc5", "keys_x101.txt", 673)],
)
def test_state_dict_equals_mmtracking_keys(preset: str, keys: str, count: int):
    state = DFF(dff.preset(preset)).state_dict()
    ours = sorted((k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items())
    golden = read_keys(keys)
    assert len(golden) == count
    missing = sorted({r[0] for r in golden} - {r[0] for r in ours})
    extra = sorted({r[0] for r in ours} - {r[0] for r in golden})
    assert not missing and not extra, f"{preset}: missing {missing[:5]}, unexpected {extra[:5]}"
    differ = [(g, o) for g, o in zip(golden, ours) if g != o]
    assert not differ, f"{preset}: shape/dtype differ (golden, ours): {differ[:5]}"
