"""The streaming-AP pairing rule of Li, Wang and Ramanan ("Towards Streaming Perception", ECCV 2020), exactly as
their reference code applies it (mtli/sAP, MIT, `det/streaming_eval.py`).

Annotated frame i is shown at time t_i (the reference: `(i - eta) / fps`, the stream starting at 0) and scored with
the latest output finished by t_i; when none has finished yet, it gets no detections. The reference walks the
outputs in the order they finished (`while timestamps[j] <= t: j += 1`, then output j - 1), which fixes the cases
the rule leaves open:

- an output finished exactly at t_i counts (`<=`);
- of outputs finished at the same time, the one listed last is used;
- "latest" is the output that finished last, whatever input frame it was computed from: an output for an older
  frame that finished after one for a newer frame replaces it (a system's answer at time t is its last answer).
  The reference's outputs are listed as they finish; here they may come in any order and are taken in order of
  finishing (a stable sort, so equal times keep their given order).

Pairing is all the streaming evaluation adds: the paired records are then scored like offline results.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dff.io.result import FrameResult


class Output(Protocol):
    """What an output needs for scoring (a `FrameResult` is one): detections in original pixels."""

    boxes: np.ndarray  # float32 (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (N,)
    labels: np.ndarray  # int64 (N,)


def shown_times(frame_ids: Sequence[int], fps: float, eta: float = 0.0) -> list[float]:
    """When each frame is shown, in seconds from the stream's start: `(frame_id - eta) / fps`, as the reference
    (whose `eta`, in frames, moves the deadline: -1 scores each frame with what existed one frame later)."""
    return [(f - eta) / fps for f in frame_ids]


def pair_outputs(frame_times: Sequence[float], finish_times: Sequence[float]) -> list[int | None]:
    """For each frame time, the index into `finish_times` of the output it is scored with, or None if no output had
    finished by then (see the module docstring for ties and order). Frame times may come in any order."""
    if not all(math.isfinite(t) for t in finish_times):
        raise ValueError("finish times must be finite numbers")
    order = sorted(range(len(finish_times)), key=finish_times.__getitem__)
    finished = [finish_times[j] for j in order]
    pairs: list[int | None] = []
    for t in frame_times:
        done = bisect.bisect_right(finished, t)  # outputs finished at or before t
        pairs.append(order[done - 1] if done else None)
    return pairs


@dataclass(frozen=True)
class PairingStats:
    """The reference's association figures: frames with no output yet (`missed`), frames scored with the output of
    their own input frame (`in_time`), and the mean number of frames between a frame and the input frame of its
    output (`mean_delay_frames`, over the frames that have one; None if none has)."""

    frames: int
    missed: int
    in_time: int
    mean_delay_frames: float | None


def pairing_stats(
    pairs: Sequence[int | None], frame_ids: Sequence[int], output_frame_ids: Sequence[int]
) -> PairingStats:
    """`PairingStats` of `pair_outputs`' answer; `output_frame_ids[j]` is the input frame output j was made from."""
    delays = [f - output_frame_ids[j] for f, j in zip(frame_ids, pairs) if j is not None]
    return PairingStats(
        frames=len(pairs),
        missed=sum(j is None for j in pairs),
        in_time=sum(d == 0 for d in delays),
        mean_delay_frames=sum(delays) / len(delays) if delays else None,
    )


def paired_records(
    video_id: int,
    images: Sequence[dict],
    frame_times: Sequence[float],
    outputs: Sequence[Output],
    finish_times: Sequence[float],
) -> list[FrameResult]:
    """The records to score: one per annotated frame (`images`: COCO-VID image dicts with `id` and `frame_id`,
    shown at `frame_times`) holding the detections of its paired output, or none before the first output.

    A record's `is_key_frame` is its output's (`is_key_frame` attribute, False without one).
    """
    if len(images) != len(frame_times) or len(outputs) != len(finish_times):
        raise ValueError("one time per frame and one per output are needed")
    records = []
    for im, j in zip(images, pair_outputs(frame_times, finish_times)):
        out = outputs[j] if j is not None else None
        records.append(
            FrameResult(
                boxes=np.zeros((0, 4), np.float32) if out is None else out.boxes,
                scores=np.zeros(0, np.float32) if out is None else out.scores,
                labels=np.zeros(0, np.int64) if out is None else out.labels,
                frame_index=im["frame_id"],
                is_key_frame=bool(getattr(out, "is_key_frame", False)),
                video_id=video_id,
                image_id=im["id"],
            )
        )
    return records
