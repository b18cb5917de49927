"""`dff test`: run DFF over a COCO-VID val set, stream the results, then report AP50 under each protocol and fps.

Under torchrun (`python -m torch.distributed.run --nproc-per-node N -m dff test ...`) whole videos are split across
the ranks (gloo on CPU, nccl on GPU); rank 0 merges the results in order, evaluates and prints.

Files written to --out, per key interval K: `results_k{K}.jsonl` (streamed, resumable), `coco_results_k{K}.json`
(COCO results format, as mmdet's `results.bbox.json`) and `summary_k{K}.json`; with --sweep-key-interval also
`sweep.json` and `sweep.png`.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

import dff
from dff.api import DFFModel
from dff.cli.checks import check_device, check_weights_path
from dff.config import PRESETS
from dff.data.cocovid import CocoVID
from dff.data.convert import write_json_atomic
from dff.errors import DFFError
from dff.evaluation.ap import APResult
from dff.evaluation.evaluate import (
    METRICS,
    PROTOCOLS,
    category_ids,
    coco_results,
    evaluate,
    format_table,
    parse_metrics,
)
from dff.evaluation.results import make_header, read_records, remove_results
from dff.evaluation.runner import RunStats, run_dataset
from dff.evaluation.sweep import SweepPoint, parse_intervals, plot_sweep, sweep_table
from dff.io.outputs import Output, check_outputs

log = logging.getLogger(__name__)

DIST_TIMEOUT = datetime.timedelta(hours=12)  # ranks with less work wait at the final barrier


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "test",
        help="evaluate on a COCO-VID val set (COCO AP50, ILSVRC devkit AP, motion buckets, fps)",
        description="Run DFF over every video of a COCO-VID annotation file in order, streaming detections to "
        "a resumable results file, then print AP50 per class under each protocol, and fps. "
        "coco = mmtracking's box AP@50 (pycocotools); ilsvrc = ILSVRC devkit rule (FGFA); "
        "motion = devkit AP on fast / medium / slow objects (FGFA).",
    )
    p.add_argument("--weights", required=True, help="checkpoint (.pth from mmtracking or our .safetensors) or zoo name")
    p.add_argument("--ann", required=True, type=Path, help="COCO-VID JSON, e.g. annotations/imagenet_vid_val.json")
    p.add_argument(
        "--img-root",
        required=True,
        type=Path,
        help="folder the images' file_name is relative to (e.g. data/ILSVRC/Data/VID)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
    p.add_argument(
        "--key-interval",
        type=int,
        help="a key frame every K frames (default: the preset's, 10; 1 = per-frame detector baseline)",
    )
    p.add_argument(
        "--sweep-key-interval",
        metavar="K,K,...",
        help="run each key interval (e.g. 1,2,5,10,20) and write a speed/accuracy table and plot",
    )
    p.add_argument(
        "--metric", default=",".join(METRICS), help=f"comma-separated, from {','.join(METRICS)} (default: all)"
    )
    p.add_argument("--out", type=Path, default=Path("dff_test"), help="output folder (default ./dff_test)")
    p.add_argument(
        "--overwrite", action="store_true", help="start again instead of resuming from an existing results file"
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda or cuda:N (default cpu; under torchrun cuda uses the rank's LOCAL_RANK GPU)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _init_distributed(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) and the process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)  # nccl's object collectives run on the current device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=DIST_TIMEOUT)
    return dist.get_rank(), world, device


def _load(args: argparse.Namespace, device: str, world: int, rank: int) -> DFFModel:
    """Rank 0 loads first (a zoo name may download), the others after it."""
    if world > 1 and rank != 0:
        dist.barrier()
    model = dff.load(args.weights, preset=args.preset, device=device)
    if world > 1 and rank == 0:
        dist.barrier()
    return model


def run(args: argparse.Namespace) -> int:
    try:
        metrics = parse_metrics(args.metric)
        intervals = parse_intervals(args.sweep_key_interval) if args.sweep_key_interval else None
    except ValueError as e:
        raise DFFError(str(e)) from None
    if args.key_interval is not None and args.key_interval < 1:
        raise DFFError(f"--key-interval must be >= 1, got {args.key_interval}")
    if not args.img_root.is_dir():
        raise DFFError(f"{args.img_root}: --img-root is not a folder")
    check_device(args.device)
    check_weights_path(args.weights)
    check_outputs([Output(args.out, "--out", folder=True)], inputs=[args.ann, args.weights])
    rank, world, device = _init_distributed(args.device)
    try:
        dataset = CocoVID.load(args.ann)
        model = _load(args, device, world, rank)
        category_ids(dataset, model.class_names)  # fail early on a class / category mismatch
        intervals = intervals or [args.key_interval or model.key_interval]
        points = [_test_one(args, model, dataset, k, metrics, rank) for k in intervals]
        if rank == 0 and args.sweep_key_interval:
            _write_sweep(args.out, points)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _test_one(
    args: argparse.Namespace, model: DFFModel, dataset: CocoVID, key_interval: int, metrics: tuple[str, ...], rank: int
) -> SweepPoint | None:
    """Run (or resume) one key interval; rank 0 evaluates, prints and writes the files."""
    model.key_interval = key_interval
    results_path = args.out / f"results_k{key_interval}.jsonl"
    weights = Path(args.weights).resolve() if Path(args.weights).exists() else args.weights  # a file or a zoo name
    header = make_header(
        key_interval=key_interval, weights=str(weights), ann=str(args.ann.resolve()), preset=model.config.name
    )
    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            remove_results(results_path)
    stats = run_dataset(model, dataset, args.img_root, results_path, header, progress=not args.no_progress)
    if rank != 0:
        return None
    records = read_records(results_path)
    ap = evaluate(dataset, records, model.class_names, metrics)
    cat_ids = category_ids(dataset, model.class_names)
    write_json_atomic(coco_results(records, cat_ids), args.out / f"coco_results_k{key_interval}.json")
    summary = _summary(args, model, dataset, key_interval, stats, ap)
    write_json_atomic(summary, args.out / f"summary_k{key_interval}.json")
    print(
        f"\n== {args.ann.name}: {len(dataset.videos)} videos, {len(dataset.images)} frames, key interval "
        f"{key_interval} =="
    )
    print(format_table(ap, model.class_names))
    print(_fps_line(stats))
    print(f"results: {results_path}")
    return SweepPoint(key_interval, stats.fps if stats.frames else None, {k: v.mean for k, v in ap.items()})


def _fps_line(stats: RunStats) -> str:
    if not stats.frames:
        return "fps: n/a (every video was already in the results file)"
    return f"fps: {stats.fps:.2f} per process ({stats.frames} frames run in this session, model time only)"


def _summary(
    args: argparse.Namespace,
    model: DFFModel,
    dataset: CocoVID,
    key_interval: int,
    stats: RunStats,
    ap: dict[str, APResult],
) -> dict:
    """What summary_k{K}.json holds: the run, its fps and every protocol's AP50 with its label."""
    return {
        "weights": str(args.weights),
        "ann": str(args.ann),
        "preset": model.config.name,
        "key_interval": key_interval,
        "videos": len(dataset.videos),
        "frames": len(dataset.images),
        "fps": stats.fps if stats.frames else None,
        "frames_run_this_session": stats.frames,
        "model_seconds_this_session": stats.seconds,
        "protocols": {k: PROTOCOLS[k] for k in ap},
        "ap50": {k: v.to_dict(model.class_names) for k, v in ap.items()},
    }


def _write_sweep(out: Path, points: list[SweepPoint]) -> None:
    table = sweep_table(points)
    write_json_atomic(
        [{"key_interval": p.key_interval, "fps": p.fps, "ap50": p.ap50} for p in points], out / "sweep.json"
    )
    plot_sweep(points, out / "sweep.png")
    print("\n== key-interval sweep ==")
    print(table)
    print(f"plot: {out / 'sweep.png'}")
