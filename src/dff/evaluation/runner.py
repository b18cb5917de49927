"""Run a model over a COCO-VID dataset video by video, streaming records; whole videos per torch.distributed rank.

Like mmtracking's `DistributedVideoSampler`, the videos still to run are cut into contiguous chunks, one per rank
(`np.array_split` over videos), so no video is ever split; each rank streams its own part file and rank 0 merges
them in dataset order (`results.consolidate`), as `collect_results_cpu` concatenates results in rank order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch.distributed as dist
from tqdm import tqdm

from dff.api import DFFModel
from dff.data.cocovid import CocoVID
from dff.distributed import current
from dff.errors import DatasetError
from dff.evaluation.results import ResultsWriter, consolidate, part_path
from dff.io.image import read_image
from dff.io.result import FrameResult
from dff.io.sources import Frame
from dff.run import RunOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStats:
    """Frames run in this session and the seconds spent waiting for their results (decoding overlapped)."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def split_videos(video_ids: Sequence, world_size: int, rank: int) -> list:
    """This rank's contiguous share of whole videos (the first ranks get one more when they do not divide)."""
    chunks = np.array_split(np.arange(len(video_ids)), world_size)
    return [video_ids[i] for i in chunks[rank]]


def run_video(
    model: DFFModel, video: dict, images: list[dict], img_root: Path, run: RunOptions
) -> Iterator[tuple[FrameResult, float]]:
    """Detect in one video's frames in order; yields (result with the dataset's video and image ids, seconds the
    caller waited for that frame).

    Decoding and preprocessing run ahead in a background thread (`DFFModel.predict`), so the wait is the model's
    time unless reading images is the slower side.
    """
    frames = (Frame(im["frame_id"], None, read_image(img_root / im["file_name"], DatasetError)) for im in images)
    results = iter(model.predict(frames, run))
    for im in images:
        t = time.perf_counter()
        r = next(results)
        seconds = time.perf_counter() - t
        yield replace(r, video_id=video["id"], image_id=im["id"]), seconds


def run_dataset(
    model: DFFModel,
    dataset: CocoVID,
    img_root: Path,
    results_path: Path,
    header: dict,
    run: RunOptions,
    progress: bool = True,
) -> RunStats:
    """Run every video not yet complete in `results_path`, then merge; returns this session's stats (all ranks).

    Call on every rank of an initialised process group (or without one). On return the results file holds every
    video of the dataset in order, each complete.
    """
    rank, world = current()
    frames_per_video = {v["id"]: len(ims) for v, ims in dataset.iter_videos()}
    done = [consolidate(results_path, header, frames_per_video) if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(done, src=0)
    todo = [v for v in frames_per_video if v not in done[0]]
    if done[0]:
        log.info("resuming %s: %d of %d videos already done", results_path, len(done[0]), len(frames_per_video))
    mine = split_videos(todo, world, rank)
    target = results_path if world == 1 else part_path(results_path, rank)
    frames, seconds = 0, 0.0
    total = sum(frames_per_video[v] for v in mine)
    with (
        ResultsWriter(target, header) as writer,
        tqdm(
            total=total,
            unit="frame",
            disable=not progress or rank != 0,
            desc=f"rank {rank}/{world}" if world > 1 else "test",
        ) as bar,
    ):
        for video_id in mine:
            for result, s in run_video(model, dataset.video(video_id), dataset.frames(video_id), img_root, run):
                writer.write(result)
                frames, seconds = frames + 1, seconds + s
                bar.update()
    stats = [(frames, seconds)]
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, stats[0])
        stats = gathered
        dist.barrier()
    if rank == 0:
        consolidate(results_path, header, frames_per_video)
    if world > 1:
        dist.barrier()
    return RunStats(sum(f for f, _ in stats), sum(s for _, s in stats))
