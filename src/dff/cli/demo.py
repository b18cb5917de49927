"""`dff demo`: the bundled tiny model on the bundled clip, written as an annotated mp4 and a JSONL.

A first look at the product without downloading anything: it uses the `tiny_synthetic` weights and the short
synthetic clip shipped in `dff/assets`, and the same pipeline as `dff detect`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dff.cli import runopts
from dff.cli.checks import check_device, check_score_thr
from dff.errors import DFFError
from dff.io.outputs import Output, check_outputs

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODEL_PATH = ASSETS / "tiny_synthetic.safetensors"
CLIP_PATH = ASSETS / "demo_clip.mp4"
VIDEO_NAME = "demo.mp4"
JSONL_NAME = "detections.jsonl"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the bundled tiny model on the bundled clip",
        description="Run DFF (preset tiny_synthetic) on the bundled clip and write an annotated mp4 "
        "and a JSONL of detections.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("dff_demo_out"), metavar="DIR", help="output folder (default ./dff_demo_out)"
    )
    p.add_argument("--score-thr", type=float, default=0.5, help="keep detections scoring at least this (0.5)")
    runopts.add_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dff
    from dff.io.sources import open_source
    from dff.io.writers import Outputs
    from dff.pipeline import DetectOptions, detect_source, summary_exit_code

    for asset in (MODEL_PATH, CLIP_PATH):
        if not Path(asset).is_file():
            raise DFFError(f"{asset}: bundled demo file is missing; reinstall deep-feature-flow")
    check_score_thr(args.score_thr)
    check_device(args.device)
    out = Path(args.out)
    check_outputs([Output(out, "--out", folder=True)])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DFFError(f"{out}: cannot create the output folder ({e.strerror})") from None
    model = dff.load(MODEL_PATH, preset="tiny_synthetic", device="cpu")
    source = open_source(CLIP_PATH)
    run = runopts.run_options(args, score_thr=args.score_thr)
    outputs = Outputs(json=out / JSONL_NAME, video=out / VIDEO_NAME)
    summary = detect_source(model, source, outputs, DetectOptions(progress=not args.no_progress), run)
    policy = run.policy(model.config)
    print(f"DFF demo ({model.config.name}, {policy}) on {Path(source.name).name}:")
    print(
        f"  {summary.frames} frames ({summary.key_frames} key frames) in {summary.seconds:.1f} s: {summary.fps:.1f} fps"
    )
    if summary.counts:
        width = max(map(len, summary.counts))
        for name, n in summary.counts.most_common():
            print(f"  {name:<{width}}  {n:5d} detections in {summary.frames_with[name]:4d} frames")
    else:
        print(f"  no detections with score >= {args.score_thr}")
    print(f"  wrote {out / VIDEO_NAME} and {out / JSONL_NAME}")
    return summary_exit_code(summary)
