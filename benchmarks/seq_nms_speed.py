"""Seq-NMS cost in milliseconds per frame on one core, for 100 detections per frame.

    OMP_NUM_THREADS=1 python benchmarks/seq_nms_speed.py --frames 300 --repeats 3

The detections imitate a video detector's output after per-class NMS: ``--objects`` objects drift across the
frame with jittered boxes and scores (each one also seen by a few weaker, overlapping boxes of other classes),
and clutter boxes of random classes and low scores fill every frame up to ``--per-frame`` detections. Prints
the best of ``--repeats`` runs (ms per frame) for each of ``SETTINGS``; the target is at most 5 ms per frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from dff.tracking.seq_nms import BENCHMARKED, SeqNMSConfig, seq_nms

SETTINGS = {
    "paper, rescore avg": SeqNMSConfig(rescore="avg"),
    "paper, rescore max": SeqNMSConfig(rescore="max"),
    "--seq-nms default (BENCHMARKED)": BENCHMARKED,
    "BENCHMARKED, every box (min score 0)": dataclasses.replace(BENCHMARKED, min_score=0.0),
}


def make_detections(
    frames: int, per_frame: int, objects: int, classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A detector-like video: drifting objects (with weaker duplicates of other classes) plus random clutter."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(40, 120, (objects, 2))
    pos = rng.uniform(0, 500, (objects, 2))
    vel = rng.uniform(-3, 3, (objects, 2))
    obj_labels = rng.integers(0, classes, objects)
    video = []
    for _ in range(frames):
        pos = pos + vel
        jitter = rng.normal(0, 2, (objects, 4))
        obj = np.concatenate([pos, pos + size], axis=1) + jitter
        dup = obj + rng.normal(0, 4, obj.shape)
        n_clutter = per_frame - 2 * objects
        xy = rng.uniform(0, 560, (n_clutter, 2))
        wh = rng.uniform(10, 150, (n_clutter, 2))
        boxes = np.concatenate([obj, dup, np.concatenate([xy, xy + wh], axis=1)])
        scores = np.concatenate(
            [rng.uniform(0.3, 0.95, objects), rng.uniform(0.05, 0.3, objects), rng.uniform(0.0, 0.2, n_clutter)]
        )
        labels = np.concatenate(
            [
                obj_labels,
                (obj_labels + rng.integers(1, max(classes, 2), objects)) % classes,
                rng.integers(0, classes, n_clutter),
            ]
        )
        video.append((boxes.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64)))
    return video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--per-frame", type=int, default=100)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for classes in (30, 1):
        video = make_detections(args.frames, args.per_frame, args.objects, classes, args.seed)
        for name, config in SETTINGS.items():
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                seq_nms(video, config)
                best = min(best, time.perf_counter() - start)
            print(f"classes={classes:2d} {name}: {1000 * best / args.frames:.2f} ms/frame")


if __name__ == "__main__":
    main()
