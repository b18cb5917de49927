"""`dff convert-annotations --from cvat-video|mot|yolo INPUT... --out ann.json`: other tools' labels -> COCO-VID."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `convert-annotations` subcommand."""
    from dff.data.formats import FILE_PATTERN, FORMATS

    p = sub.add_parser(
        "convert-annotations",
        help="convert CVAT video XML, MOTChallenge or YOLO labels to a COCO-VID JSON",
        description="Each INPUT is one video: a CVAT for video 1.1 XML file, a MOTChallenge sequence folder "
        "(seqinfo.ini + gt/gt.txt) or a folder of YOLO per-frame .txt files. The JSON is what `dff train` and "
        "`dff test` read (docs/own_data.md maps every field).",
    )
    p.add_argument("--from", dest="fmt", required=True, choices=FORMATS, help="input format")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="one per video")
    p.add_argument("--out", type=Path, required=True, help="COCO-VID JSON to write")
    p.add_argument(
        "--names", type=Path, help="class names file, one per line (YOLO: required; MOT: default MOT17's classes)"
    )
    p.add_argument(
        "--file-pattern",
        default=FILE_PATTERN,
        help=f"CVAT: frame file name under the image root (default {FILE_PATTERN!r}; "
        "{video} is the XML file's stem, or its folder's name for annotations.xml)",
    )
    p.add_argument("--img-root", type=Path, help="YOLO: folder the file names are relative to (default: above each)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, print a one-line summary (on stderr when the JSON goes to a stream such as /dev/stdout)."""
    from dff.data.formats import convert_annotations
    from dff.io.atomic import is_stream
    from dff.io.outputs import Output, check_outputs

    check_outputs([Output(args.out, "--out")], inputs=[*args.inputs, args.names])
    data = convert_annotations(args.fmt, args.inputs, args.out, args.names, args.file_pattern, args.img_root)
    print(
        f"{args.out}: {len(data['videos'])} videos, {len(data['images'])} frames, {len(data['annotations'])} boxes, "
        f"classes {', '.join(c['name'] for c in data['categories'])}",
        file=sys.stderr if is_stream(args.out) else sys.stdout,
        flush=True,
    )
    return 0
