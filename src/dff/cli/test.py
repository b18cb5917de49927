"""`dff test`: run DFF over a COCO-VID val set, stream the results, then report AP50 under each protocol and fps.

Argument parsing and printing over `dff.evaluate` (dff/evaluation/model_eval.py), which does the work.

Under torchrun (`python -m torch.distributed.run --nproc-per-node N -m dff test ...`) whole videos are split across
the ranks (gloo on CPU, nccl on GPU); rank 0 merges the results in order, evaluates and prints.

Files written to --out, per key interval K: `results_k{K}.jsonl` (streamed, resumable), `coco_results_k{K}.json`
(COCO results format, as mmdet's `results.bbox.json`) and `summary_k{K}.json`; with --sweep-key-interval also
`sweep.json` and `sweep.png`. --seq-nms rescores each video before AP (the results file keeps the detector's own
detections); --track adds HOTA / MOTA / IDF1 to the printout and the summary.
"""

from __future__ import annotations

import argparse
import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dff
from dff.cli import keyframes, objects
from dff.cli.checks import check_device, check_weights_path
from dff.config import PRESETS
from dff.errors import DFFError

if TYPE_CHECKING:
    from dff.data.cocovid import CocoVID
    from dff.evaluation.model_eval import IntervalResult
    from dff.evaluation.runner import RunStats
    from dff.tracking import SeqNMSConfig

log = logging.getLogger(__name__)

DIST_TIMEOUT = datetime.timedelta(hours=12)  # ranks with less work wait at the final barrier


def register(sub: argparse._SubParsersAction) -> None:
    from dff.evaluation.evaluate import METRICS

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
        "--sweep-key-budget",
        metavar="B,B,...",
        help="also run the adaptive policy at each budget (e.g. 5,10,20) in the sweep table and plot",
    )
    keyframes.add_arguments(p)
    objects.add_arguments(
        p,
        track_help="also track each video (over all its detections) and report HOTA, MOTA and IDF1 against the "
        "annotations' instance_id, overall and per class; needs the 'track' extra",
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


def run(args: argparse.Namespace) -> int:
    from dff.data.cocovid import CocoVID
    from dff.distributed import distributed
    from dff.evaluation.evaluate import parse_metrics
    from dff.evaluation.sweep import parse_intervals
    from dff.io.outputs import Output, check_outputs
    from dff.keyframes import Adaptive
    from dff.tracking.metrics import require_trackeval

    try:
        metrics = parse_metrics(args.metric)
        intervals = parse_intervals(args.sweep_key_interval) if args.sweep_key_interval else None
    except ValueError as e:
        raise DFFError(str(e)) from None
    try:
        budgets = [float(b) for b in args.sweep_key_budget.split(",")] if args.sweep_key_budget else []
    except ValueError:
        raise DFFError(f"--sweep-key-budget: expected comma-separated numbers, got {args.sweep_key_budget!r}") from None
    policy = keyframes.key_policy(args)
    if isinstance(policy, Adaptive) and not budgets:
        budgets = [policy.budget]
    if intervals is None and not isinstance(policy, Adaptive):
        intervals = [args.key_interval] if args.key_interval is not None else None
    if args.key_interval is not None and args.key_interval < 1:
        raise DFFError(f"--key-interval must be >= 1, got {args.key_interval}")
    if not args.img_root.is_dir():
        raise DFFError(f"{args.img_root}: --img-root is not a folder")
    check_device(args.device)
    check_weights_path(args.weights)
    tracker, seq_nms = objects.tracker_config(args), objects.seq_nms_config(args)
    if tracker is not None:
        require_trackeval()
    check_outputs([Output(args.out, "--out", folder=True)], inputs=[args.ann, args.weights])
    with distributed(args.device, timeout=DIST_TIMEOUT) as ctx:
        dataset = CocoVID.load(args.ann)
        model = ctx.main_first(lambda: dff.load(args.weights, preset=args.preset, device=ctx.device))
        result = dff.evaluate(
            model,
            dataset,
            args.img_root,
            args.out,
            key_intervals=intervals if intervals is not None or budgets else [model.key_interval],
            key_budgets=budgets,
            metrics=metrics,
            weights=args.weights,
            sweep=bool(args.sweep_key_interval or args.sweep_key_budget),
            overwrite=args.overwrite,
            progress=not args.no_progress,
            on_interval=lambda r: _print_interval(dataset, model.class_names, r, seq_nms),
            seq_nms=seq_nms,
            tracker=tracker,
        )
        if result is not None and result.sweep_png is not None:
            print("\n== key-interval sweep ==")
            print(result.sweep_table())
            print(f"plot: {result.sweep_png}")
    return 0


def _print_interval(
    dataset: CocoVID, class_names: Sequence[str], r: IntervalResult, seq_nms: SeqNMSConfig | None
) -> None:
    from dff.evaluation.evaluate import format_table
    from dff.tracking.metrics import format_tracking

    counts = f"{len(dataset.videos)} videos, {len(dataset.images)} frames"
    schedule = f"key interval {r.key_interval}" if r.policy == "fixed" else f"{r.policy}, budget {r.key_interval:g}"
    print(f"\n== {dataset.path.name}: {counts}, {schedule}, key-frame share {r.key_share:.3f} ==")
    if seq_nms is not None:
        print(f"after Seq-NMS per video ({seq_nms})")
    print(format_table(r.ap50, class_names))
    if r.tracking is not None:
        print(f"\ntracking (percent; ids from each annotation's instance_id):\n{format_tracking(r.tracking)}")
    print(_fps_line(r.stats))
    print(f"results: {r.results_path}")


def _fps_line(stats: RunStats) -> str:
    if not stats.frames:
        return "fps: n/a (every video was already in the results file)"
    return f"fps: {stats.fps:.2f} per process ({stats.frames} frames run in this session, model time only)"
