"""`dff convert-dataset ROOT`: ILSVRC2015 -> mmtracking's imagenet_vid_{train,val}.json and DET JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

PARTS = ("vid_train", "vid_val", "det")
READS = ("Lists", "Annotations", "Data")  # what is read under ROOT (the default output, ROOT/annotations, is not)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `convert-dataset` subcommand."""
    p = sub.add_parser(
        "convert-dataset",
        help="convert an ILSVRC2015 root to mmtracking's COCO-VID / COCO JSON files",
        description="Read Lists/*.txt and Annotations/{VID,DET} under ROOT and write the same JSON files as "
        "mmtracking's imagenet2coco_vid.py / imagenet2coco_det.py.",
    )
    p.add_argument("root", type=Path, help="ILSVRC2015 root (with Data/, Annotations/, Lists/)")
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: ROOT/annotations)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to convert (default: all)")
    p.add_argument("--no-check-images", action="store_true", help="do not check that every image file exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print the paths written."""
    from dff.data.convert import DET_OUTPUT, VID_OUTPUTS, convert_dataset
    from dff.io.outputs import Output, check_outputs

    out = args.out if args.out is not None else args.root / "annotations"
    names = [DET_OUTPUT if part == "det" else VID_OUTPUTS[part[len("vid_") :]] for part in args.parts]
    check_outputs(
        [Output(out, "--out", folder=True)] + [Output(out / n, "--out") for n in names],
        inputs=[args.root / part for part in READS],
    )
    written = convert_dataset(
        args.root, args.out, tuple(args.parts), check_images=not args.no_check_images, progress=not args.no_progress
    )
    for path in written:
        print(path, flush=True)
    return 0
