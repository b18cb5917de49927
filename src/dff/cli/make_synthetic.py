"""`dff make-synthetic OUT`: write a synthetic ImageNet VID/DET set in the ILSVRC2015 layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `make-synthetic` subcommand."""
    from dff.data.synthetic import STYLES

    p = sub.add_parser(
        "make-synthetic",
        help="write a synthetic ILSVRC2015-format video dataset",
        description="Textured objects of 8 VID classes moving at slow / medium / fast speeds over a panning "
        "textured background, written as Data/, Annotations/ and Lists/ exactly like ILSVRC2015.",
    )
    p.add_argument("out", type=Path, help="output folder (must be empty or new)")
    p.add_argument("--videos", type=int, default=20, help="training videos (default 20)")
    p.add_argument("--val-videos", type=int, default=5, help="validation videos (default 5)")
    p.add_argument("--frames", type=int, default=60, help="frames per video (default 60)")
    p.add_argument("--det-images", type=int, default=40, help="DET still images (default 40)")
    p.add_argument("--width", type=int, default=480, help="frame width (default 480)")
    p.add_argument("--height", type=int, default=272, help="frame height (default 272)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--style",
        choices=STYLES,
        default="standard",
        help="standard (one shot per video, the set the bundled model knows) or varied (shot cuts, stop-and-go, "
        "pans, zoom, objects entering at the borders)",
    )
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument("--convert", action="store_true", help="also write the COCO-VID JSON files to OUT/annotations")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate (and optionally convert); print the output folder."""
    from dff.data.convert import convert_dataset
    from dff.data.synthetic import make_synthetic
    from dff.io.outputs import Output, check_outputs

    check_outputs([Output(args.out, "OUT", folder=True)])
    made = make_synthetic(
        args.out,
        videos=args.videos,
        frames=args.frames,
        seed=args.seed,
        width=args.width,
        height=args.height,
        det_images=args.det_images,
        val_videos=args.val_videos,
        overwrite=args.force,
        progress=not args.no_progress,
        style=args.style,
    )
    print(made.root, flush=True)
    if args.convert:
        for path in convert_dataset(args.out, progress=not args.no_progress):
            print(path, flush=True)
    return 0
