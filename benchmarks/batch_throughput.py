"""CPU throughput of several videos through one network: batched (`model.predict_many`, one stage call per batch)
against one video at a time (`model.predict` on each in turn), the two alternating round by round.

    python benchmarks/batch_throughput.py --videos 4 --frames 60 --rounds 3 --threads 2

The bundled tiny model on the bundled clip: video i is the clip from frame 3*i (so key frames fall on other
frames of each video, and the batches mix key and propagated frames). Prints frames per second of each way per
round and the median ratio batched / one at a time. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

import dff
from dff.cli.demo import CLIP_PATH, MODEL_PATH
from dff.io.sources import open_source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=45)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open_source(CLIP_PATH) as src:
        clip = [f.image for f in src]
    videos = [clip[3 * i : 3 * i + args.frames] for i in range(args.videos)]
    frames = sum(len(v) for v in videos)
    model = dff.load(MODEL_PATH)
    run = dff.RunOptions(device="cpu")
    list(model.predict_many(videos, run))  # warm-up: the network is built, oneDNN primitives packed
    for v in videos:
        list(model.predict(v, run))
    fps: dict[str, list[float]] = {"batched": [], "one at a time": []}
    for r in range(args.rounds):
        for way in ("batched", "one at a time") if r % 2 == 0 else ("one at a time", "batched"):
            start = time.perf_counter()
            if way == "batched":
                n = sum(1 for _ in model.predict_many(videos, run))
            else:
                n = sum(1 for v in videos for _ in model.predict(v, run))
            assert n == frames
            fps[way].append(frames / (time.perf_counter() - start))
            print(f"round {r + 1} {way}: {fps[way][-1]:.1f} fps", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in fps.items()}
    print(
        json.dumps(
            {
                "videos": args.videos,
                "frames": frames,
                "threads": args.threads,
                "fps": fps,
                "median": med,
                "batched_over_one_at_a_time": med["batched"] / med["one at a time"],
            }
        )
    )


if __name__ == "__main__":
    main()
