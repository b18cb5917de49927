"""`dff test`: run DFF over a COCO-VID val set, stream the results, then report AP50 under each protocol and fps.

Argument parsing and printing over `dff.evaluate` (dff/evaluation/model_eval.py), which does the work.

Under torchrun (`python -m torch.distributed.run --nproc-per-node N -m dff test ...`) whole videos are split across
the ranks (gloo on CPU, nccl on GPU); rank 0 merges the results in order, evaluates and prints.

Files written to --out, per key-frame policy (tag `k{K}` for a key interval K, `adaptive{B}` for an adaptive budget
B): `results_{tag}.jsonl` (streamed, resumable), `coco_results_{tag}.json` (COCO results format, as mmdet's
`results.bbox.json`) and `summary_{tag}.json`; with --sweep-key-interval / --sweep-key-budget also `sweep.json` and
`sweep.png`. --seq-nms rescores each video before AP (the results file keeps the detector's own
detections); --track adds HOTA / MOTA / IDF1 to the printout and the summary.
"""

from __future__ import annotations

import argparse
import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dff.cli import keyframes, objects, runopts
from dff.cli.checks import check_device, check_weights_path
from dff.config import PRESETS
from dff.errors import DFFError
from dff.evaluation.evaluate import METRICS

if TYPE_CHECKING:
    from dff.data.cocovid import CocoVID
    from dff.evaluation.model_eval import IntervalResult
    from dff.evaluation.runner import RunStats
    from dff.tracking import SeqNMSConfig

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
    p.add_argument(
        "--weights",
        default="dff_r50_dc5_imagenetvid",
        help="checkpoint (.pth from mmtracking or our .safetensors), a training checkpoint, an export's manifest.json, "
        "or a zoo name (default dff_r50_dc5_imagenetvid: the official R-50 model, downloaded once)",
    )
    p.add_argument("--ann", required=True, type=Path, help="COCO-VID JSON, e.g. annotations/imagenet_vid_val.json")
    p.add_argument(
        "--img-root",
        required=True,
        type=Path,
        help="folder the images' file_name is relative to (e.g. data/ILSVRC/Data/VID)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
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
    keyframes.add_arguments(
        p, interval_help="a key frame every N frames (default: the preset's, 10; 1 = per-frame detector baseline)"
    )
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
    runopts.add_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    stream = p.add_argument_group(
        "streaming evaluation",
        "--streaming replays each val video at --stream-fps into the live loop and scores streaming AP50 "
        "(annotated frame i gets the latest output finished by its time; none yet counts as no detections), on "
        "the real clock of this machine or on a simulated one that replays a runtime profile (dff benchmark "
        "--live --profile-out). docs/live.md.",
    )
    stream.add_argument("--streaming", action="store_true", help="score streaming AP50 instead of offline AP50")
    stream.add_argument("--stream-fps", type=float, default=25.0, metavar="F", help="replay rate (default 25)")
    stream.add_argument(
        "--clock",
        choices=("simulated", "real"),
        help="simulated (time from --profile; reproducible; the default when --profile is given) or real",
    )
    stream.add_argument("--profile", type=Path, metavar="P", help="runtime profile of the simulated clock")
    stream.add_argument(
        "--profile-scale", type=float, default=1.0, metavar="X", help="multiply the profile's times by X (default 1)"
    )
    stream.add_argument(
        "--key-mode", default=None, metavar="MODES", help="comma-separated: sync, async (default: the live default)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.streaming:
        from dff.live import let_idle_threads_sleep

        let_idle_threads_sleep()
    import dff
    from dff.data.cocovid import CocoVID
    from dff.distributed import distributed
    from dff.evaluation.evaluate import parse_metrics
    from dff.io.outputs import Output, check_outputs
    from dff.tracking.metrics import require_trackeval

    try:
        metrics = parse_metrics(args.metric)
    except ValueError as e:
        raise DFFError(str(e)) from None
    policies = key_policies(args)
    if not args.img_root.is_dir():
        raise DFFError(f"{args.img_root}: --img-root is not a folder")
    check_device(args.device)
    check_weights_path(args.weights)
    tracker, seq_nms = objects.tracker_config(args), objects.seq_nms_config(args)
    if tracker is not None:
        require_trackeval()
    streaming = _streaming_options(args)
    inputs = [args.ann, args.img_root, args.weights] + ([args.profile] if args.profile else [])
    check_outputs([Output(args.out, "--out", folder=True)], inputs=inputs)
    if streaming is not None:
        return run_streaming(args, policies, streaming, metrics)
    with distributed(args.device, timeout=DIST_TIMEOUT) as ctx:
        dataset = CocoVID.load(args.ann)
        model = ctx.main_first(lambda: dff.load(args.weights, preset=args.preset, device="cpu"))
        result = dff.evaluate(
            model,
            dataset,
            args.img_root,
            args.out,
            policies=policies or None,
            run=runopts.run_options(args, device=str(ctx.device)),
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
            print("\n== key-frame sweep ==")
            print(result.sweep_table())
            print(f"plot: {result.sweep_png}")
    return 0


def _streaming_options(args: argparse.Namespace) -> list | None:
    """The StreamingOptions of each --key-mode, or None without --streaming (its options then are errors)."""
    given = [o for o, v in (("--clock", args.clock), ("--profile", args.profile), ("--key-mode", args.key_mode)) if v]
    if not args.streaming:
        if given or args.stream_fps != 25.0 or args.profile_scale != 1.0:
            raise DFFError(f"{', '.join(given) or '--stream-fps / --profile-scale'} needs --streaming")
        return None
    from dff.evaluation.streaming_run import StreamingOptions
    from dff.live.clock import RuntimeProfile
    from dff.live.loop import DEFAULT_KEY_MODE, KEY_MODES

    clock = args.clock or ("simulated" if args.profile else "real")
    if clock == "simulated" and args.profile is None:
        raise DFFError("--clock simulated needs --profile P (written by dff benchmark --live --profile-out P)")
    if clock == "real" and args.profile is not None:
        raise DFFError("--profile is for --clock simulated")
    if args.track or args.seq_nms:
        raise DFFError("--streaming scores detections as they come: without --track or --seq-nms")
    profile = None
    if args.profile is not None:
        profile = RuntimeProfile.load(args.profile).scaled(args.profile_scale)
    elif args.profile_scale != 1.0:
        raise DFFError("--profile-scale needs --profile")
    modes = [m.strip() for m in (args.key_mode or DEFAULT_KEY_MODE).split(",") if m.strip()]
    if not modes or any(m not in KEY_MODES for m in modes) or len(set(modes)) != len(modes):
        raise DFFError(f"--key-mode: comma-separated, distinct, from {', '.join(KEY_MODES)}; got {args.key_mode!r}")
    return [StreamingOptions(args.stream_fps, clock, m, profile) for m in modes]


def run_streaming(args: argparse.Namespace, policies: list, streaming: list, metrics: tuple[str, ...]) -> int:
    """`dff test --streaming`: streaming AP50 of each policy in each key mode (dff.evaluation.streaming_run)."""
    import sys

    import dff
    from dff.data.cocovid import CocoVID
    from dff.evaluation.streaming_run import evaluate_streaming, streaming_table

    dataset = CocoVID.load(args.ann)
    model = dff.load(args.weights, preset=args.preset, device="cpu")
    run = runopts.run_options(args)
    policies = policies or [run.policy(model.config)]
    say = None if args.no_progress else (lambda msg: print(f"dff test: {msg}", file=sys.stderr, flush=True))
    results = []
    for options in streaming:
        results += evaluate_streaming(model, dataset, args.img_root, args.out, policies, options, run, metrics, say)
    counts = f"{len(dataset.videos)} videos, {len(dataset.images)} frames"
    first = streaming[0]
    clock = first.clock if first.profile is None else f"simulated ({first.profile.preset}, x{first.profile.scale:g})"
    print(f"\n== {dataset.path.name}: {counts}, streamed at {first.fps:g} fps, {clock} clock ==")
    print(streaming_table(results))
    print("streaming AP50 (%): each annotated frame scored with the latest output finished by its time")
    for r in results:
        print(f"summary: {r.summary_path}")
    return 0


def key_policies(args: argparse.Namespace) -> list:
    """The policies to evaluate, in order: each --sweep-key-interval, each --sweep-key-budget (with the command
    line's adaptive settings), else the one --key-policy / --key-interval ask for ([]: the preset's)."""
    from dff.evaluation.sweep import parse_intervals

    try:
        intervals = parse_intervals(args.sweep_key_interval) if args.sweep_key_interval else []
    except ValueError as e:
        raise DFFError(f"--sweep-key-interval: {e}") from None
    try:
        budgets = [float(b) for b in args.sweep_key_budget.split(",") if b.strip()] if args.sweep_key_budget else []
    except ValueError:
        raise DFFError(f"--sweep-key-budget: expected comma-separated numbers, got {args.sweep_key_budget!r}") from None
    policies = [keyframes.make_policy("fixed", k) for k in intervals]
    policies += [keyframes.adaptive_with(args, b) for b in budgets]
    if args.key_policy == "adaptive":
        if not budgets:
            policies.append(keyframes.key_policy(args))
    elif not budgets:
        keyframes.key_policy(args)  # the adaptive-only options need --key-policy adaptive (or budgets to sweep)
    if args.key_policy == "fixed" and args.key_interval is not None and not intervals:
        policies.insert(0, keyframes.make_policy("fixed", args.key_interval))
    return policies


def _print_interval(
    dataset: CocoVID, class_names: Sequence[str], r: IntervalResult, seq_nms: SeqNMSConfig | None
) -> None:
    from dff.evaluation.evaluate import format_table
    from dff.tracking.metrics import format_tracking

    counts = f"{len(dataset.videos)} videos, {len(dataset.images)} frames"
    print(f"\n== {dataset.path.name}: {counts}, {r.key_policy}, key-frame share {r.key_share:.3f} ==")
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
