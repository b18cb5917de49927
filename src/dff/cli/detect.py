"""`dff detect SOURCE`: detections of a video, frame folder, glob, image or stream as JSONL, an annotated video,
COCO results and MOTChallenge tracks; `dff detect --inputs LIST_OR_GLOB --out-dir DIR`: the same over a collection
of videos (dff.collection), sharded over the processes of a torchrun launch. Argument parsing over
`dff.pipeline.detect_source` / `dff.collection.detect_collection`."""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import sys
from pathlib import Path

from dff.cli import keyframes, objects, runopts
from dff.cli.checks import check_device, check_score_thr, check_weights_path
from dff.config import PRESETS
from dff.errors import DFFError

log = logging.getLogger(__name__)

DIST_TIMEOUT = datetime.timedelta(hours=12)  # ranks with fewer videos wait for the others at the end
DEFAULT_WEIGHTS = "dff_r50_dc5_imagenetvid"
DEFAULT_OUT = Path("dff_detect_out")
DEFAULT_SCORE_THR = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in a video, frame folder, glob, image or stream",
        description="Detect objects with DFF. SOURCE is a video file, an image, a folder of jpg/jpeg/png frames "
        "(any letter case, natural order), a quoted glob, or a stream URL (rtsp/http/udp...). Without an --out-* "
        "option the JSONL goes to stdout when it is a pipe; on a terminal the JSONL and the annotated video are "
        f"saved in a new folder under ./{DEFAULT_OUT}. With --inputs and --out-dir instead of SOURCE, every video "
        "of a collection is run (sharded over the processes of a torchrun launch, resumable).",
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
    p.add_argument("--save-mot", action="store_true", help="with --inputs and --track: also DIR/<name>/tracks.txt")
    p.add_argument("--save-flow", action="store_true", help="with --inputs: also DIR/<name>/flow/ pictures")
    p.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help="checkpoint (.pth from mmtracking or our .safetensors), a training checkpoint, an export's "
        f"manifest.json, or a zoo name (default {DEFAULT_WEIGHTS}: the official R-50 model, downloaded once)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
    keyframes.add_arguments(p, interval_help="a key frame every N frames (default: the preset's, 10)")
    p.add_argument(
        "--score-thr",
        type=float,
        metavar="S",
        help=f"keep detections scoring at least S (default {DEFAULT_SCORE_THR}; the COCO results keep every "
        "detection unless this is given)",
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
    p.add_argument(
        "--out-coco",
        metavar="PATH",
        type=Path,
        help="COCO results JSON (image_id = the frame's 1-based number, category_id = class index + 1)",
    )
    p.add_argument(
        "--out-mot",
        metavar="PATH",
        type=Path,
        help="with --track: MOTChallenge tracks (frame,id,x,y,w,h,conf,-1,-1,-1; frame 1-based)",
    )
    p.add_argument(
        "--show-flow",
        metavar="DIR",
        type=Path,
        help="write a picture of the flow of each non-key frame to DIR",
    )
    runopts.add_arguments(p)
    live = p.add_argument_group(
        "live video",
        "Stream URLs and cameras (0, /dev/video0) always run live: the newest frame is taken each time, the ones the "
        "model had no time for are dropped and counted. docs/live.md.",
    )
    live.add_argument(
        "--live", action="store_true", help="run a video file or frame folder as a live source, paced at its rate"
    )
    live.add_argument(
        "--key-mode",
        choices=("sync", "async"),
        help="live runs: sync (key frames in the loop, as offline; the default) or async (beside the loop: no stall)",
    )
    live.add_argument(
        "--preview",
        metavar="[HOST:]PORT",
        help="live runs: serve a page with the annotated video and the running figures (HOST default 127.0.0.1)",
    )
    p.add_argument("--fps", type=float, help="frame rate of a frame folder or glob (default 25); overrides a video's")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dff.live import DEFAULT_KEY_MODE, let_idle_threads_sleep

    live = args.inputs is None and (args.live or _is_live_name(args.source))
    if live and (args.key_mode or DEFAULT_KEY_MODE) == "async":
        let_idle_threads_sleep()  # before torch starts
    from dff.io.sources import is_stream

    _check_mode(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise DFFError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise DFFError(f"--fps must be in (0, 1000], got {args.fps}")
    if args.score_thr is not None:
        check_score_thr(args.score_thr)
    policy = keyframes.key_policy(args)
    check_device(args.device)
    check_weights_path(args.weights)
    tracker, seq_nms = objects.tracker_config(args), objects.seq_nms_config(args)
    if seq_nms is not None and args.source is not None and is_stream(args.source):
        raise DFFError(f"{args.source}: --seq-nms needs the whole video, so it runs on files, not on streams")
    if args.inputs is not None:
        if args.live or args.key_mode or args.preview:
            raise DFFError("--live, --key-mode and --preview are for one SOURCE, not --inputs")
        return run_collection(args, policy, tracker, seq_nms)
    return run_single(args, policy, tracker, seq_nms)


def run_single(args: argparse.Namespace, policy: object | None, tracker: object, seq_nms: object) -> int:
    """`dff detect SOURCE`: one source into the --out-* outputs (or the default ones)."""
    from contextlib import ExitStack

    import dff
    from dff.io.live import is_live, open_live
    from dff.io.outputs import Output, check_outputs
    from dff.io.sources import open_source
    from dff.io.writers import Outputs
    from dff.live.loop import DEFAULT_KEY_MODE, LiveOptions
    from dff.live.preview import Preview
    from dff.pipeline import (
        DetectOptions,
        check_detect_outputs,
        class_ids_for,
        detect_live,
        detect_source,
        summary_exit_code,
    )

    outputs = Outputs(json=args.out_json, video=args.out_video, coco=args.out_coco, mot=args.out_mot)
    outputs = Outputs(**{**outputs.given(), "flow": args.show_flow})
    default_folder = None
    if not any(v is not None for k, v in outputs.given().items() if k != "flow"):
        if sys.stdout.isatty():
            default_folder = _fresh_folder(DEFAULT_OUT / (Path(str(args.source).rstrip("/")).stem or "source"))
            outputs = Outputs(
                json=default_folder / "detections.jsonl", video=default_folder / "detections.mp4", flow=args.show_flow
            )
        else:
            outputs = Outputs(json="-", flow=args.show_flow)
    if default_folder is None:
        check_detect_outputs(outputs, [args.source, args.weights], tracker)
    else:
        check_outputs([Output(default_folder, "the default output folder", folder=True)], [args.source, args.weights])
    live = args.live or is_live(args.source)
    if not live and (args.key_mode or args.preview):
        raise DFFError(f"--key-mode and --preview are for live sources (a stream, a camera, or --live): {args.source}")
    preview_at = parse_host_port(args.preview) if args.preview else None
    model = dff.load(args.weights, preset=args.preset, device="cpu")
    source = open_live(args.source, fps=args.fps) if live else open_source(args.source, fps=args.fps)
    if default_folder is not None:
        default_folder.mkdir(parents=True)
    _warn_bundled(model, args.source)
    run = runopts.run_options(
        args,
        key_policy=policy,
        score_thr=DEFAULT_SCORE_THR if args.score_thr is None else args.score_thr,
        classes=class_ids_for(args.classes, model.class_names) if args.classes else None,
    )
    opts = DetectOptions(
        max_frames=args.max_frames,
        tracker=tracker,
        seq_nms=seq_nms,
        coco_score_thr=0.0 if args.score_thr is None else args.score_thr,
        progress=not args.no_progress,
    )
    if live:
        with ExitStack() as stack:
            preview = stack.enter_context(Preview(*preview_at)) if preview_at is not None else None
            if preview is not None:
                print(f"preview: {preview.url}", file=sys.stderr, flush=True)
            summary = detect_live(
                model, source, outputs, opts, run, LiveOptions(args.key_mode or DEFAULT_KEY_MODE), preview
            )
    else:
        summary = detect_source(model, source, outputs, opts, run)
    print(f"{source.name}: {summary.describe()}", file=sys.stderr)
    if default_folder is not None:
        print(f"wrote {outputs.json} and {outputs.video}", file=sys.stderr)
    return summary_exit_code(summary)


def _is_live_name(source: str | None) -> bool:
    from dff.io.live import is_live

    return source is not None and is_live(source)


def parse_host_port(text: str) -> tuple[str, int]:
    """'[HOST:]PORT' -> (host, port); HOST defaults to 127.0.0.1 (this machine only); DFFError otherwise."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise DFFError(f"--preview: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise DFFError(f"--preview: port must be in 0..65535, got {number}")
    return host or "127.0.0.1", number


def _fresh_folder(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`... : the first that does not exist yet (nothing earlier is overwritten)."""
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _warn_bundled(model: object, source: object) -> None:
    """A warning when the bundled synthetic-data model runs on anything but its own demo clip."""
    from dff.cli.demo import CLIP_PATH

    if model.config.name == "tiny_synthetic" and str(Path(str(source)).resolve()) != str(CLIP_PATH):
        print(
            "dff detect: note: the tiny_synthetic model knows only this project's synthetic sprites; on real "
            f"footage its labels mean nothing. For real video use --weights {DEFAULT_WEIGHTS} (mmtracking's R-50).",
            file=sys.stderr,
        )


def _check_mode(args: argparse.Namespace) -> None:
    """SOURCE with the --out-* options, or --inputs with --out-dir and the --save-* flags."""
    if (args.source is None) == (args.inputs is None):
        raise DFFError(
            "give either SOURCE or --inputs LIST_OR_GLOB (with --out-dir), not both"
            if args.source
            else "give a SOURCE, or --inputs LIST_OR_GLOB with --out-dir"
        )
    single = {"--out-json": args.out_json, "--out-video": args.out_video, "--out-coco": args.out_coco}
    single.update({"--out-mot": args.out_mot, "--show-flow": args.show_flow})
    many = {"--out-dir": args.out_dir, "--save-video": args.save_video, "--save-coco": args.save_coco}
    many.update({"--save-mot": args.save_mot, "--save-flow": args.save_flow})
    if args.inputs is not None:
        given = [k for k, v in single.items() if v is not None]
        if given:
            raise DFFError(
                f"{', '.join(given)}: with --inputs, use --out-dir and --save-video/--save-coco/--save-mot/--save-flow"
            )
        if args.out_dir is None:
            raise DFFError("--inputs needs --out-dir DIR")
    else:
        given = [k for k, v in many.items() if v not in (None, False)]
        if given:
            raise DFFError(f"{', '.join(given)} needs --inputs")
    if (args.out_mot is not None or args.save_mot) and not args.track:
        raise DFFError(f"{'--out-mot' if args.out_mot is not None else '--save-mot'} needs --track (track ids)")


def run_collection(args: argparse.Namespace, policy: object | None, tracker: object, seq_nms: object) -> int:
    """`dff detect --inputs ... --out-dir DIR`; exit status 2 when a video failed, 130 / 143 when stopped."""
    import dff
    from dff.collection import CollectionOptions, detect_collection, file_sha256, list_inputs
    from dff.distributed import distributed
    from dff.io.outputs import Output, check_outputs
    from dff.pipeline import DetectOptions, class_ids_for

    inputs = list_inputs(args.inputs)
    check_outputs([Output(args.out_dir, "--out-dir", folder=True)], inputs=[args.inputs, *inputs, args.weights])
    weights_file = Path(args.weights).expanduser()
    score_thr = DEFAULT_SCORE_THR if args.score_thr is None else args.score_thr
    settings = {
        "weights": str(weights_file.resolve()) if weights_file.is_file() else str(args.weights),
        "weights_sha256": file_sha256(weights_file) if weights_file.is_file() else None,
        "preset": args.preset,
        "key_policy": repr(policy) if policy is not None else None,
        "backend": args.backend,
        "dtype": args.dtype,
        "score_thr": score_thr,
        "coco_score_thr": args.score_thr,
        "classes": args.classes,
        "fps": args.fps,
        "max_frames": args.max_frames,
        "tracker": repr(tracker) if tracker is not None else None,
        "seq_nms": repr(seq_nms) if seq_nms is not None else None,
    }
    save = tuple(k for k in ("video", "coco", "mot", "flow") if getattr(args, f"save_{k}"))
    with distributed(args.device, timeout=DIST_TIMEOUT) as ctx:
        model = ctx.main_first(lambda: dff.load(args.weights, preset=args.preset, device="cpu"))
        run = runopts.run_options(
            args,
            device=str(ctx.device),
            key_policy=policy,
            score_thr=score_thr,
            classes=class_ids_for(args.classes, model.class_names) if args.classes else None,
        )
        detect = DetectOptions(
            max_frames=args.max_frames,
            tracker=tracker,
            seq_nms=seq_nms,
            coco_score_thr=0.0 if args.score_thr is None else args.score_thr,
            progress=not args.no_progress,
        )
        opts = CollectionOptions(save=save, detect=detect, fps=args.fps, settings=settings)
        result = detect_collection(model, inputs, args.out_dir, opts, run)
    if ctx.is_main:
        for r in result.failed:
            print(f"failed: {r.error}", file=sys.stderr)
        print(result.describe(), file=sys.stderr)
    if result.terminated:
        return 143
    if result.interrupted:
        return 130
    return 2 if result.failed else 0
