"""Shared test fixtures: the golden fixtures in tests/golden, paths to ../shared and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import pytest
import torch

from dff.cli.demo import CLIP_PATH

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = SHARED / "data" / "real"
GOLDEN = Path(__file__).resolve().parent / "golden"
REQUIRE_SHARED = "DFF_REQUIRE_SHARED"


def need(path: Path) -> Path:
    """Skip the test (with the reason) when a ../shared resource is absent; fail instead when the environment
    variable DFF_REQUIRE_SHARED=1 is set (as .ci/run does), so CI cannot pass a test it did not run."""
    if not path.exists():
        reason = f"{path} not available (../shared is missing)"
        if os.environ.get(REQUIRE_SHARED) == "1":
            pytest.fail(f"{reason} and {REQUIRE_SHARED}=1 requires it")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def long_source(tmp_path_factory) -> Path:
    """300 frames (links to one frame of the bundled clip): long enough to be stopped part-way on any machine."""
    folder = tmp_path_factory.mktemp("long")
    with av.open(str(CLIP_PATH)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    first = folder / "000000.png"
    first.write_bytes(cv2.imencode(".png", frame)[1].tobytes())
    for i in range(1, 300):
        (folder / f"{i:06d}.png").symlink_to(first)
    return folder


@pytest.fixture()
def real_data() -> Path:
    """The ../shared/data/real folder, through `need` (use with `pytest.mark.usefixtures("real_data")`)."""
    return need(REAL)


@pytest.fixture()
def one_thread():
    """One intra-op thread while the test runs: the fastest setting on small shared machines, and bit-identical
    CPU kernels between runs (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def frame_result(
    video_id: int | None,
    image_id: int | None,
    frame: int,
    key: bool,
    boxes,
    scores,
    labels,
    track_ids=None,
):
    """A dataset frame's FrameResult (what the evaluation reads): ids, frame index, key flag, detections."""
    import numpy as np

    from dff.io.result import FrameResult

    return FrameResult(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(labels, np.int64),
        frame_index=frame,
        is_key_frame=key,
        track_ids=None if track_ids is None else np.asarray(track_ids, np.int64),
        video_id=video_id,
        image_id=image_id,
    )
