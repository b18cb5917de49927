"""`dff check-dataset ANN --img-root R`: report what `dff train` would refuse or skip; exit 2 if it would fail."""

from __future__ import annotations

import argparse
from pathlib import Path

from dff.config import PRESETS, preset


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `check-dataset` subcommand."""
    p = sub.add_parser(
        "check-dataset",
        help="check a COCO-VID file and its images before training",
        description="Counts, with the first few offenders by file, of what `dff train` would refuse (errors: exit "
        "2) or silently skip (warnings): missing or unreadable images, impossible boxes, duplicate ids, videos and "
        "classes without boxes.",
    )
    p.add_argument("ann", type=Path, help="COCO-VID JSON")
    p.add_argument("--img-root", type=Path, required=True, help="folder the images' file_name are relative to")
    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="check against this preset's classes (default: the file's)"
    )
    p.add_argument("--decode", action="store_true", help="decode every image (default: read the headers only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; 2 when training would fail."""
    from dff.data.check import check_dataset

    cfg = preset(args.preset) if args.preset else None
    report = check_dataset(
        args.ann,
        args.img_root,
        class_names=cfg.class_names if cfg else None,
        min_img_size=cfg.train.min_img_size if cfg else 32,
        decode=args.decode,
    )
    print(report.format(), flush=True)
    return 2 if report.fails else 0
