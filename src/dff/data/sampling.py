"""Reference-frame sampling as mmtracking's ``CocoVideoDataset.ref_img_sampling`` does it (docs/mmtracking_spec.md
§2.3).

VID (``frame_range=9``): one reference drawn uniformly (``random.sample``) from all frames of the same video
with ``frame_id`` in ``[fid - 9, fid + 9]`` clipped to the video, the key frame itself included
(``filter_key_img=False``) and frames not marked for training included. DET (``frame_range=0`` or still
images): the reference is a copy of the key image record.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class SampleRNG(Protocol):
    """What the samplers need from a random source: ``random.Random`` or the ``random`` module itself."""

    def sample(self, population: Sequence, k: int) -> list: ...

    def random(self) -> float: ...


def ref_candidates(num_frames: int, frame_id: int, frame_range: int) -> range:
    """Frame ids the reference is drawn from: ``max(0, fid - r) .. min(fid + r, n - 1)`` inclusive."""
    return range(max(0, frame_id - frame_range), min(frame_id + frame_range, num_frames - 1) + 1)


def sample_reference(
    key: dict,
    video_frames: Sequence[dict] | None,
    frame_range: int,
    rng: SampleRNG = random,  # type: ignore[assignment]
) -> dict:
    """The reference image record for ``key``.

    ``video_frames`` are the key's video frames ordered by frame_id (None for a still image); with
    ``frame_range == 0`` or no video the reference is ``dict(key)``.
    """
    if video_frames is None or frame_range == 0 or key.get("frame_id", -1) < 0:
        return dict(key)
    span = ref_candidates(len(video_frames), key["frame_id"], frame_range)
    (ref,) = rng.sample(list(video_frames[span.start : span.stop]), 1)
    return dict(ref)
