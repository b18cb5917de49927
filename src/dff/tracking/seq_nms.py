"""Offline Seq-NMS (Han et al. 2016, "Seq-NMS for Video Object Detection") over one video's detections.

Per class, a box in frame t is linked to a box in frame t+1 when their IoU is at least ``link_iou``. Repeatedly:

1. *select* the sequence (a path of linked boxes in consecutive frames) with the largest sum of scores, by
   dynamic programming over the frames;
2. *rescore* every box of it with the sequence's average (or maximum) score;
3. *suppress*, in each frame of the sequence, the other boxes of the class whose IoU with the sequence's box
   exceeds ``suppress_iou``; the sequence's boxes and the suppressed ones leave the pool.

until no box is left. A box that links to nothing is a sequence of one and keeps its score. Suppressed boxes are
removed from the output. Boxes scoring below ``min_score`` take no part (they are kept as they are), as the linking
score threshold of other Seq-NMS implementations does. The dynamic programme is held as padded ``(T, M)`` arrays;
after each selection only the frames from the sequence's start onwards are recomputed, and only until a frame's
values come out unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from dff.errors import InputError

_IOU_CHUNK = 128
"""Frame pairs whose (M, M) IoU is computed in one numpy call (bounds the temporary memory)."""


@dataclass(frozen=True)
class SeqNMSConfig:
    """Seq-NMS settings: linking IoU (>=), suppression IoU (>), the rescoring of a sequence ("avg" or "max"), and
    the lowest score of a box that takes part (the others are kept unchanged; 0: every box).

    Two extensions, off by default (the paper's Seq-NMS): ``own_weight``, the share of a box's own score in its new
    one (``own_weight * own + (1 - own_weight) * sequence score``), and ``smooth``, the half-window in frames of a
    score-weighted average of each sequence's boxes (a kept box becomes the mean of its sequence's boxes within
    ``smooth`` frames, weighted by their own scores; suppression uses the boxes as detected).
    """

    link_iou: float = 0.5
    suppress_iou: float = 0.3
    rescore: Literal["avg", "max"] = "avg"
    min_score: float = 0.0
    own_weight: float = 0.0
    smooth: int = 0

    def __post_init__(self) -> None:
        if self.rescore not in ("avg", "max"):
            raise InputError(f"seq-nms: rescore must be 'avg' or 'max', got {self.rescore!r}")
        if not (0.0 <= self.link_iou <= 1.0 and 0.0 <= self.suppress_iou <= 1.0):
            raise InputError(
                f"seq-nms: link_iou and suppress_iou must lie in [0, 1] (got {self.link_iou}, {self.suppress_iou})"
            )
        if not self.min_score >= 0.0:
            raise InputError(f"seq-nms: min_score must be >= 0, got {self.min_score}")
        if not 0.0 <= self.own_weight <= 1.0:
            raise InputError(f"seq-nms: own_weight must lie in [0, 1], got {self.own_weight}")
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, int) or self.smooth < 0:
            raise InputError(f"seq-nms: smooth must be a whole number of frames >= 0, got {self.smooth!r}")


BENCHMARKED = SeqNMSConfig(link_iou=0.4, suppress_iou=0.5, rescore="avg", min_score=0.01, own_weight=0.25, smooth=3)
"""The settings chosen on the dev seed of BENCHMARKS.md ("Objects over time"): what `--seq-nms` uses by default."""


@dataclass
class SeqNMSFrame:
    """The detections of one frame kept by Seq-NMS, sorted by descending new score.

    ``keep`` indexes the frame's input detections; ``sequence`` is the id (0, 1, ... in selection order, unique in
    the video) of the sequence each kept box belongs to.
    """

    boxes: np.ndarray  # float32 (K, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (K,) rescored
    labels: np.ndarray  # int64 (K,)
    keep: np.ndarray  # int64 (K,)
    sequence: np.ndarray  # int64 (K,)


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (no +1) of boxes ``a`` (..., N, 4) with ``b`` (..., M, 4): (..., N, M); 0 where the union is empty."""
    lt = np.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = np.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _check(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """InputError unless every frame is (boxes (N, 4), scores (N,) finite and >= 0, labels (N,))."""
    for t, (b, s, lab) in enumerate(frames):
        b, s, lab = np.asarray(b), np.asarray(s), np.asarray(lab)
        if b.ndim != 2 or b.shape[1] != 4 or s.shape != (len(b),) or lab.shape != (len(b),):
            raise InputError(
                f"seq-nms: frame {t} has boxes {b.shape}, scores {s.shape}, labels {lab.shape}"
                " (want (N, 4), (N,), (N,))"
            )
        if len(s) and not (np.isfinite(s).all() and s.min() >= 0):
            raise InputError(f"seq-nms: frame {t} has negative or non-finite scores")


def _padded(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """Stack per-frame (boxes, scores, labels) into (T, M, 4), (T, M), (T, M) arrays and a (T, M) valid mask."""
    counts = [len(s) for _, s, _ in frames]
    num_frames, width = len(frames), max(counts, default=0)
    boxes = np.zeros((num_frames, width, 4))
    scores = np.zeros((num_frames, width))
    labels = np.full((num_frames, width), -1, dtype=np.int64)
    valid = np.zeros((num_frames, width), dtype=bool)
    for t, ((b, s, lab), n) in enumerate(zip(frames, counts)):
        boxes[t, :n], scores[t, :n], labels[t, :n], valid[t, :n] = b, s, lab, True
    return boxes, scores, labels, valid


def _links(boxes: np.ndarray, labels: np.ndarray, valid: np.ndarray, link_iou: float) -> np.ndarray:
    """(T-1, M, M) bool: box i of frame t links to box j of frame t+1 (same class, IoU >= link_iou)."""
    num_frames, width = labels.shape
    links = np.zeros((max(num_frames - 1, 0), width, width), dtype=bool)
    for c in range(0, num_frames - 1, _IOU_CHUNK):
        sl, nx = slice(c, min(c + _IOU_CHUNK, num_frames - 1)), slice(c + 1, min(c + 1 + _IOU_CHUNK, num_frames))
        same = (labels[sl, :, None] == labels[nx, None, :]) & valid[sl, :, None] & valid[nx, None, :]
        links[sl] = same & (_pairwise_iou(boxes[sl], boxes[nx]) >= link_iou)
    return links


class _Paths:
    """The forward dynamic programme: ``best[t, i]`` is the largest score sum of a path ending at box i of frame t,
    ``prev[t, i]`` the box of frame t-1 it comes from (-1: the path starts here); dead boxes hold -inf."""

    def __init__(self, scores: np.ndarray, alive: np.ndarray, links: np.ndarray) -> None:
        self.scores, self.alive, self.links = scores, alive, links
        self.best = np.full(scores.shape, -np.inf)
        self.prev = np.full(scores.shape, -1, dtype=np.int64)
        self.frame_max = np.full(len(scores), -np.inf)
        self._columns = np.arange(scores.shape[1])
        for t in range(len(scores)):
            self._update(t)

    def _update(self, t: int) -> bool:
        """Recompute frame t from frame t-1; True when its values changed."""
        alive = self.alive[t]
        if t == 0:
            best, prev = np.where(alive, self.scores[0], -np.inf), np.full(len(alive), -1, dtype=np.int64)
        else:
            cand = np.where(self.links[t - 1], self.best[t - 1][:, None], -np.inf)
            arg = cand.argmax(axis=0)
            top = cand[arg, self._columns]
            linked = alive & np.isfinite(top)
            best = np.where(alive, self.scores[t] + np.where(linked, top, 0.0), -np.inf)
            prev = np.where(linked, arg, -1)
        if np.array_equal(best, self.best[t]) and np.array_equal(prev, self.prev[t]):
            return False
        self.best[t], self.prev[t] = best, prev
        self.frame_max[t] = best.max(initial=-np.inf)
        return True

    def refresh(self, start: int, end: int) -> None:
        """Recompute after boxes of frames start..end died: those frames, then on until a frame is unchanged."""
        for t in range(start, len(self.scores)):
            if not self._update(t) and t > end:
                break

    def pop_best(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(frames, boxes) of the best path, first frame first; None when no box is alive."""
        t = int(self.frame_max.argmax())
        if not np.isfinite(self.frame_max[t]):
            return None
        i = int(self.best[t].argmax())
        ts, idx = [t], [i]
        while self.prev[t, i] >= 0:
            i = int(self.prev[t, i])
            t -= 1
            ts.append(t)
            idx.append(i)
        return np.array(ts[::-1]), np.array(idx[::-1])


def _crowded(boxes: np.ndarray, labels: np.ndarray, valid: np.ndarray, suppress_iou: float) -> np.ndarray:
    """(T, M) bool: the box overlaps another box of its class in its frame by IoU > suppress_iou."""
    out = np.zeros(valid.shape, dtype=bool)
    off_diagonal = ~np.eye(valid.shape[1], dtype=bool)
    for c in range(0, len(valid), _IOU_CHUNK):
        sl = slice(c, c + _IOU_CHUNK)
        same = (labels[sl, :, None] == labels[sl, None, :]) & valid[sl, :, None] & valid[sl, None, :] & off_diagonal
        out[sl] = (same & (_pairwise_iou(boxes[sl], boxes[sl]) > suppress_iou)).any(axis=2)
    return out


def _select(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    alive: np.ndarray,
    links: np.ndarray,
    config: SeqNMSConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Select, rescore and suppress until no box is alive: (T, M) new scores, sequence ids (-1: suppressed) and
    (T, M, 4) boxes (smoothed along their sequence when `config.smooth`)."""
    new_scores = np.zeros_like(scores)
    new_boxes = boxes.copy()
    sequence = np.full(scores.shape, -1, dtype=np.int64)
    if not alive.any():
        return new_scores, sequence, new_boxes
    paths = _Paths(scores, alive, links)
    reduce = np.mean if config.rescore == "avg" else np.max
    seq_id = 0
    while (path := paths.pop_best()) is not None:
        ts, idx = path
        own = scores[ts, idx]
        new_scores[ts, idx] = config.own_weight * own + (1.0 - config.own_weight) * reduce(own)
        if config.smooth:
            new_boxes[ts, idx] = _smoothed(boxes[ts, idx], own, config.smooth)
        sequence[ts, idx] = seq_id
        seq_id += 1
        overlap = _pairwise_iou(boxes[ts, idx][:, None, :], boxes[ts])[:, 0, :]
        alive[ts] &= ~((overlap > config.suppress_iou) & (labels[ts] == labels[ts[0], idx[0]]))
        alive[ts, idx] = False
        paths.refresh(int(ts[0]), int(ts[-1]))
    return new_scores, sequence, new_boxes


def _smoothed(boxes: np.ndarray, weights: np.ndarray, half: int) -> np.ndarray:
    """Each of a sequence's boxes (L, 4), one per consecutive frame, replaced by the `weights`-weighted mean of the
    boxes within `half` frames of it (a box whose window weighs nothing stays as it is)."""
    n = len(boxes)
    if n == 1:
        return boxes
    weighted = np.zeros((n + 1, 5))
    np.cumsum(np.concatenate([boxes * weights[:, None], weights[:, None]], axis=1), axis=0, out=weighted[1:])
    at = np.arange(n)
    window = weighted[np.minimum(at + half + 1, n)] - weighted[np.maximum(at - half, 0)]
    return np.where(window[:, 4:] > 0, window[:, :4] / np.where(window[:, 4:] > 0, window[:, 4:], 1.0), boxes)


def seq_nms(
    frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], config: SeqNMSConfig | None = None
) -> list[SeqNMSFrame]:
    """Seq-NMS over a video: ``frames[t]`` is frame t's (boxes (N, 4) x1y1x2y2, scores (N,) >= 0, labels (N,)).

    Returns one :class:`SeqNMSFrame` per input frame; boxes absent from it were suppressed. A box with no link and
    no overlapping box of its class in its frame can neither suppress nor be suppressed: it is kept as a sequence
    of one without entering the dynamic programme, which then runs on the remaining boxes only; so is a box
    scoring below ``config.min_score``.
    """
    config = config or SeqNMSConfig()
    _check(frames)
    frames = [(np.asarray(b).reshape(-1, 4), np.asarray(s), np.asarray(lab)) for b, s, lab in frames]
    # Boxes scoring below min_score are set aside before the arrays are built (they come back at the end).
    index = [np.flatnonzero(s >= config.min_score) for _, s, _ in frames]
    boxes, scores, labels, valid = _padded([(b[i], s[i], lab[i]) for (b, s, lab), i in zip(frames, index)])
    links = _links(boxes, labels, valid, config.link_iou)
    linked = np.zeros_like(valid)
    linked[:-1] |= links.any(axis=2)
    linked[1:] |= links.any(axis=1)
    active = linked | _crowded(boxes, labels, valid, config.suppress_iou)
    # Active boxes first in every frame, then the padded arrays cut to the widest frame's active count.
    order = np.argsort(~active, axis=1, kind="stable")
    width = int(active.sum(axis=1).max(initial=0))
    rows = np.arange(len(valid))[:, None]
    take = order[:, :width]
    sub_links = links[rows[:-1, :, None], take[:-1, :, None], take[1:, None, :]]
    sub_scores, sub_sequence, sub_boxes = _select(
        boxes[rows, take], scores[rows, take], labels[rows, take], active[rows, take], sub_links, config
    )
    boxes[rows, take] = np.where(active[rows, take][..., None], sub_boxes, boxes[rows, take])
    new_scores = np.where(valid, scores, 0.0)
    sequence = np.full(scores.shape, -1, dtype=np.int64)
    new_scores[rows, take] = np.where(active[rows, take], sub_scores, new_scores[rows, take])
    sequence[rows, take] = sub_sequence
    inert = valid & ~active
    sequence[inert] = sequence.max(initial=-1) + 1 + np.arange(int(inert.sum()))
    next_id = sequence.max(initial=-1) + 1
    out = []
    for t, ((b, s, lab), i) in enumerate(zip(frames, index)):
        kept = np.flatnonzero(sequence[t, : len(i)] >= 0)
        low = np.setdiff1d(np.arange(len(s)), i)
        keep = np.concatenate([i[kept], low])
        frame_scores = np.concatenate([new_scores[t, kept], s[low].astype(np.float64)])
        frame_sequence = np.concatenate([sequence[t, kept], next_id + np.arange(len(low))])
        next_id += len(low)
        order = np.lexsort((keep, -frame_scores))  # by new score, ties in input order
        keep = keep[order]
        frame_boxes = np.concatenate([boxes[t, kept], b[low].astype(np.float64)])[order]
        out.append(
            SeqNMSFrame(
                boxes=frame_boxes.astype(np.float32),
                scores=frame_scores[order].astype(np.float32),
                labels=lab.astype(np.int64)[keep],
                keep=keep.astype(np.int64),
                sequence=frame_sequence[order],
            )
        )
    return out


R = TypeVar("R")


def seq_nms_results(results: Sequence[R], config: SeqNMSConfig | None = None) -> list[R]:
    """Seq-NMS over one video's per-frame results, in frame order: each a dataclass with ``boxes``, ``scores``,
    ``labels`` (a :class:`dff.FrameResult`, a :class:`dff.evaluation.FrameRecord`), replaced by the kept, rescored
    detections sorted by new score; ``track_ids``, when set, follow their boxes through ``keep``."""
    kept = seq_nms([(r.boxes, r.scores, r.labels) for r in results], config)
    out = []
    for r, k in zip(results, kept):
        fields = {"boxes": k.boxes, "scores": k.scores, "labels": k.labels}
        if getattr(r, "track_ids", None) is not None:
            fields["track_ids"] = np.asarray(r.track_ids)[k.keep]
        out.append(dataclasses.replace(r, **fields))
    return out
