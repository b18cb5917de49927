"""The streaming results file: exact float32 round trip, resume keeps complete videos only, parts merge in order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dff.errors import DFFError
from dff.evaluation.results import (
    ResultsWriter,
    consolidate,
    make_header,
    part_path,
    read_records,
    remove_results,
)
from dff.evaluation.runner import split_videos
from dff.io.result import FrameResult
from tests.conftest import frame_result

HEADER = make_header(key_interval=10, weights="w.safetensors", ann="val.json", preset="tiny_synthetic")
FRAMES = {7: 3, 3: 2, 5: 1}  # video id -> frames, in dataset order


def record(video: int, frame: int, n: int = 2, seed: int = 0) -> FrameResult:
    rng = np.random.default_rng(seed + 100 * video + frame)
    return frame_result(
        video,
        100 * video + frame,
        frame,
        frame == 0,
        (rng.random((n, 4)) * 1000).astype(np.float32),
        rng.random(n).astype(np.float32),
        rng.integers(0, 30, n),
    )


def line(r: FrameResult) -> str:
    return json.dumps(r.to_record())


def back(r: FrameResult) -> FrameResult:
    return FrameResult.from_record(json.loads(line(r)))


def same(a: FrameResult, b: FrameResult) -> bool:
    fields = ("video_id", "image_id", "frame_index", "is_key_frame")
    arrays = ("boxes", "scores", "labels")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in arrays
    )


def test_float32_values_round_trip_exactly():
    rng = np.random.default_rng(1)
    r = frame_result(
        1,
        2,
        3,
        False,
        (rng.random((500, 4)) * 2000).astype(np.float32),
        np.concatenate([rng.random(498), [1e-4, 0.99999994]]).astype(np.float32),
        rng.integers(0, 30, 500),
    )
    r2 = back(r)
    assert same(r, r2)
    assert r2.boxes.dtype == np.float32 and r2.labels.dtype == np.int64
    empty = frame_result(1, 2, 0, True, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert same(empty, back(empty))


def test_resume_keeps_complete_videos_and_drops_the_partial_one(tmp_path):
    path = tmp_path / "results.jsonl"
    assert consolidate(path, HEADER, FRAMES) == set()
    with ResultsWriter(path, HEADER) as w:
        for f in range(3):
            w.write(record(7, f))
        w.write(record(3, 0))  # video 3 interrupted after its first frame
    with open(path, "a") as f:
        f.write(line(record(3, 1))[:25])  # and a cut-off line
    assert consolidate(path, HEADER, FRAMES) == {7}
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == HEADER and len(lines) == 4
    assert all(same(a, b) for a, b in zip(read_records(path), [record(7, f) for f in range(3)], strict=True))


def test_parts_merge_in_dataset_order(tmp_path):
    path = tmp_path / "results.jsonl"
    consolidate(path, HEADER, FRAMES)
    # rank 1 finished videos 3 and 5, rank 0 video 7; written in any order
    with ResultsWriter(part_path(path, 1), HEADER) as w:
        for r in [record(5, 0), record(3, 1), record(3, 0)]:
            w.write(r)
    with ResultsWriter(part_path(path, 0), HEADER) as w:
        for f in range(3):
            w.write(record(7, f))
    assert consolidate(path, HEADER, FRAMES) == {7, 3, 5}
    got = [(r.video_id, r.frame_index) for r in read_records(path)]
    assert got == [(7, 0), (7, 1), (7, 2), (3, 0), (3, 1), (5, 0)]
    assert not list(tmp_path.glob("*.rank*"))


def test_other_settings_are_refused_and_overwrite_clears(tmp_path):
    path = tmp_path / "results.jsonl"
    consolidate(path, HEADER, FRAMES)
    with pytest.raises(DFFError, match="key_interval"):
        consolidate(path, {**HEADER, "key_interval": 5}, FRAMES)
    ResultsWriter(part_path(path, 0), HEADER).close()
    remove_results(path)
    assert not list(tmp_path.iterdir())


def test_videos_split_whole_and_contiguous():
    videos = [10, 11, 12, 13, 14]
    shares = [split_videos(videos, 2, r) for r in range(2)]
    assert shares == [[10, 11, 12], [13, 14]]
    assert [split_videos(videos[:1], 2, r) for r in range(2)] == [[10], []]
