"""`dff detect SOURCE --weights W`: detections of a video, frame folder, glob or stream as JSONL and an mp4;
`dff detect --inputs LIST_OR_GLOB --out-dir DIR`: the same over a collection of videos (dff.collection), sharded
over the processes of a torchrun launch."""

from __future__ import annotations

import argparse
import datetime
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import dff
from dff import zoo
from dff.cli import keyframes, objects
from dff.cli.checks import check_device, check_key_interval, check_score_thr, check_weights_path
from dff.config import PRESETS
from dff.errors import DFFError

if TYPE_CHECKING:
    from dff.tracking import SeqNMSConfig, TrackerConfig

DIST_TIMEOUT = datetime.timedelta(hours=12)  # ranks with fewer videos wait for the others at the end


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in a video, frame folder, glob or stream",
        description="Detect objects with DFF. SOURCE is a video file, a folder of jpg/jpeg/png frames (any letter "
        "case, natural order), a quoted glob, or a stream URL (rtsp/http/udp...). Without --out-json, "
        "--out-video or --out-coco, the JSONL goes to stdout. With --inputs and --out-dir instead of SOURCE, every "
        "video of a collection is run (sharded over the processes of a torchrun launch, resumable).",
    )
    p.add_argument("source", metavar="SOURCE", nargs="?")
    p.add_argument(
        "--inputs",
        metavar="LIST_OR_GLOB",
        help="a collection instead of SOURCE: a text file (one source per line, # comments), a folder of videos "
        "(searched recursively) or a quoted glob; needs --out-dir",
    )
    p.add_argument(
        "--out-dir",
        metavar="DIR",
        type=Path,
        help="with --inputs: DIR/<name>/detections.jsonl per video, DIR/<name>/done.json, DIR/index.jsonl",
    )
    p.add_argument("--save-video", action="store_true", help="with --inputs: also DIR/<name>/detections.mp4")
    p.add_argument("--save-coco", action="store_true", help="with --inputs: also DIR/<name>/coco_results.json")
    p.add_argument("--save-flow", action="store_true", help="with --inputs: also DIR/<name>/flow/ pictures")
    p.add_argument(
        "--weights",
        required=True,
        help=f"checkpoint (.pth from mmtracking or our .safetensors) or zoo name: {', '.join(zoo.ZOO)}",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
    p.add_argument(
        "--key-interval", type=int, metavar="N", help="a key frame every N frames (default: the preset's, 10)"
    )
    keyframes.add_arguments(p)
    p.add_argument(
        "--score-thr", type=float, default=0.5, metavar="S", help="keep detections scoring at least S (default 0.5)"
    )
    p.add_argument("--classes", metavar="NAMES", help="comma-separated class names to keep, e.g. car,bicycle")
    objects.add_arguments(
        p,
        track_help="give every detection a track_id (JSONL, COCO results, drawn with a trail in the video); "
        "-1: in no confirmed track; needs the 'track' extra",
    )
    p.add_argument("--out-json", metavar="PATH", help="JSONL, one line per frame ('-' for stdout)")
    p.add_argument(
        "--out-video",
        metavar="PATH",
        type=Path,
        help="annotated video at the source frame rate (.mp4, .mkv, .mov, .avi or .webm)",
    )
    p.add_argument("--out-coco", metavar="PATH", type=Path, help="COCO results JSON (image_id = frame index)")
    p.add_argument(
        "--show-flow",
        metavar="DIR",
        type=Path,
        help="write a colour-wheel picture of the flow of each non-key frame to DIR",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--fps", type=float, help="frame rate of a frame folder or glob (default 25); overrides a video's")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dff.io.outputs import Output, check_outputs
    from dff.io.sources import is_stream, open_source
    from dff.io.writers import video_format
    from dff.pipeline import DetectOptions, class_ids_for, detect_source, summary_exit_code

    _check_mode(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise DFFError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise DFFError(f"--fps must be > 0, got {args.fps}")
    check_score_thr(args.score_thr)
    check_key_interval(args.key_interval)
    policy = keyframes.key_policy(args)
    check_device(args.device)
    check_weights_path(args.weights)
    tracker, seq_nms = objects.tracker_config(args), objects.seq_nms_config(args)
    if seq_nms is not None and args.source is not None and is_stream(args.source):
        raise DFFError(f"{args.source}: --seq-nms needs the whole video, so it runs on files, not on streams")
    if args.inputs is not None:
        return run_collection(args, policy, tracker, seq_nms)
    check_outputs(
        [
            Output(args.out_json, "--out-json", make_parents=False) if args.out_json is not None else None,
            Output(args.out_video, "--out-video", make_parents=False) if args.out_video is not None else None,
            Output(args.out_coco, "--out-coco", make_parents=False) if args.out_coco is not None else None,
            Output(args.show_flow, "--show-flow", folder=True) if args.show_flow is not None else None,
        ],
        inputs=[args.source, args.weights],
    )
    if args.out_video is not None:
        video_format(args.out_video)  # an extension this PyAV build can write, checked before any work
    source = open_source(args.source, fps=args.fps)
    model = dff.load(args.weights, preset=args.preset, device=args.device)
    if policy is not None:
        model.key_policy = policy
    outputs = (args.out_json, args.out_video, args.out_coco)
    opts = DetectOptions(
        score_thr=args.score_thr,
        class_ids=class_ids_for(args.classes, model.class_names) if args.classes else None,
        out_json="-" if all(o is None for o in outputs) else args.out_json,
        out_video=args.out_video,
        out_coco=args.out_coco,
        show_flow=args.show_flow,
        max_frames=args.max_frames,
        progress=not args.no_progress,
        tracker=tracker,
        seq_nms=seq_nms,
    )
    summary = detect_source(model, source, opts)
    print(f"{source.name}: {summary.describe()}", file=sys.stderr)
    return summary_exit_code(summary)


def _check_mode(args: argparse.Namespace) -> None:
    """SOURCE with the --out-* options, or --inputs with --out-dir and the --save-* flags."""
    if (args.source is None) == (args.inputs is None):
        raise DFFError(
            "give either SOURCE or --inputs LIST_OR_GLOB (with --out-dir), not both"
            if args.source
            else "give a SOURCE, or --inputs LIST_OR_GLOB with --out-dir"
        )
    single = {"--out-json": args.out_json, "--out-video": args.out_video, "--out-coco": args.out_coco}
    single["--show-flow"] = args.show_flow
    many = {"--out-dir": args.out_dir, "--save-video": args.save_video, "--save-coco": args.save_coco}
    many["--save-flow"] = args.save_flow
    if args.inputs is not None:
        given = [k for k, v in single.items() if v is not None]
        if given:
            raise DFFError(f"{', '.join(given)}: with --inputs, use --out-dir and --save-video/--save-coco/--save-flow")
        if args.out_dir is None:
            raise DFFError("--inputs needs --out-dir DIR")
    else:
        given = [k for k, v in many.items() if v not in (None, False)]
        if given:
            raise DFFError(f"{', '.join(given)} needs --inputs")


def run_collection(
    args: argparse.Namespace, policy: object, tracker: TrackerConfig | None, seq_nms: SeqNMSConfig | None
) -> int:
    """`dff detect --inputs ... --out-dir DIR`; exit status 2 when a video failed, 130 / 143 when stopped."""
    from dff.collection import CollectionOptions, detect_collection, list_inputs
    from dff.distributed import distributed
    from dff.io.outputs import Output, check_outputs
    from dff.pipeline import class_ids_for

    inputs = list_inputs(args.inputs)
    check_outputs([Output(args.out_dir, "--out-dir", folder=True)], inputs=[*inputs, args.weights])
    settings = {
        "weights": str(Path(args.weights).resolve()) if Path(args.weights).is_file() else str(args.weights),
        "preset": args.preset,
        "key_interval": args.key_interval,
        "key_policy": repr(policy) if policy is not None else None,
        "score_thr": args.score_thr,
        "classes": args.classes,
        "fps": args.fps,
        "max_frames": args.max_frames,
        "tracker": repr(tracker) if tracker is not None else None,
        "seq_nms": repr(seq_nms) if seq_nms is not None else None,
    }
    with distributed(args.device, timeout=DIST_TIMEOUT) as ctx:
        model = ctx.main_first(lambda: dff.load(args.weights, preset=args.preset, device=ctx.device))
        if policy is not None:
            model.key_policy = policy
        opts = CollectionOptions(
            score_thr=args.score_thr,
            class_ids=class_ids_for(args.classes, model.class_names) if args.classes else None,
            save_video=args.save_video,
            save_coco=args.save_coco,
            save_flow=args.save_flow,
            max_frames=args.max_frames,
            fps=args.fps,
            progress=not args.no_progress,
            settings=settings,
            tracker=tracker,
            seq_nms=seq_nms,
        )
        result = detect_collection(model, inputs, args.out_dir, opts)
    if ctx.is_main:
        for r in result.failed:
            print(f"failed: {r.error}", file=sys.stderr)
        print(result.describe(), file=sys.stderr)
    if result.terminated:
        return 143
    if result.interrupted:
        return 130
    return 2 if result.failed else 0
