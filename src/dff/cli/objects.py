"""The objects-over-time options shared by `dff detect` and `dff test`: --track, --tracker and --seq-nms*."""

from __future__ import annotations

import argparse
import dataclasses

from dff.errors import DFFError
from dff.tracking import BENCHMARKED, TRACKERS, SeqNMSConfig, TrackerConfig
from dff.tracking.online import require_track_extra


def add_arguments(p: argparse.ArgumentParser, track_help: str) -> None:
    """--track, --tracker, --seq-nms and its settings --seq-nms-rescore, -link-iou, -suppress-iou, -min-score,
    -own-weight, -smooth (the defaults: the settings BENCHMARKS.md chose, `dff.tracking.BENCHMARKED`)."""
    p.add_argument("--track", action="store_true", help=track_help)
    p.add_argument("--tracker", choices=TRACKERS, help="with --track: the tracker (default bytetrack)")
    p.add_argument(
        "--seq-nms",
        action="store_true",
        help="rescore each video's detections by Seq-NMS (Han et al. 2016) over the whole video (files only)",
    )
    p.add_argument(
        "--seq-nms-rescore",
        choices=("avg", "max"),
        help=f"a sequence's new score: its boxes' average or maximum (default {BENCHMARKED.rescore})",
    )
    p.add_argument(
        "--seq-nms-link-iou",
        type=float,
        metavar="IOU",
        help=f"boxes of consecutive frames link at IoU >= this (default {BENCHMARKED.link_iou})",
    )
    p.add_argument(
        "--seq-nms-suppress-iou",
        type=float,
        metavar="IOU",
        help=f"a sequence suppresses boxes overlapping it by IoU > this (default {BENCHMARKED.suppress_iou})",
    )
    p.add_argument(
        "--seq-nms-min-score",
        type=float,
        metavar="S",
        help=f"boxes scoring below S take no part and are kept as they are (default {BENCHMARKED.min_score})",
    )
    p.add_argument(
        "--seq-nms-own-weight",
        type=float,
        metavar="W",
        help=f"new score = W * own + (1 - W) * the sequence's; 0: the paper's (default {BENCHMARKED.own_weight})",
    )
    p.add_argument(
        "--seq-nms-smooth",
        type=int,
        metavar="N",
        help="each kept box = score-weighted mean of its sequence's boxes within N frames; 0: boxes as detected "
        f"(default {BENCHMARKED.smooth})",
    )


def tracker_config(args: argparse.Namespace) -> TrackerConfig | None:
    """The tracker --track asks for (None without it); DFFError at once when the 'track' extra is missing."""
    if not args.track:
        if args.tracker is not None:
            raise DFFError("--tracker needs --track")
        return None
    require_track_extra()
    return TrackerConfig(tracker=args.tracker or "bytetrack")


def seq_nms_config(args: argparse.Namespace) -> SeqNMSConfig | None:
    """The Seq-NMS settings --seq-nms asks for (None without it): `BENCHMARKED` with the options given; DFFError
    on a bad value or on a --seq-nms-* option without --seq-nms."""
    given = {
        "rescore": args.seq_nms_rescore,
        "link_iou": args.seq_nms_link_iou,
        "suppress_iou": args.seq_nms_suppress_iou,
        "min_score": args.seq_nms_min_score,
        "own_weight": args.seq_nms_own_weight,
        "smooth": args.seq_nms_smooth,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not args.seq_nms:
        if given:
            raise DFFError(f"{', '.join('--seq-nms-' + k.replace('_', '-') for k in given)} needs --seq-nms")
        return None
    try:
        return dataclasses.replace(BENCHMARKED, **given)
    except DFFError as e:
        raise DFFError(f"--seq-nms: {str(e).removeprefix('seq-nms: ')}") from None
