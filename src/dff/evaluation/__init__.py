"""Evaluation on ImageNet VID-style COCO-VID sets: mmtracking's COCO AP50, the ILSVRC devkit AP and motion buckets.

See `docs/evaluation.md` for each protocol and every choice made where the references leave room.
`RunStats` and `run_dataset` (dff.evaluation.runner, which imports torch) are imported on first use (PEP 562), so
that the metrics' names (`dff test --help`) come without torch.
"""

from typing import Any

from dff.evaluation.ap import APResult, all_point_ap
from dff.evaluation.coco import coco_ap50
from dff.evaluation.evaluate import METRICS, PROTOCOLS, coco_results, evaluate, format_table
from dff.evaluation.ilsvrc import MOTION_RANGES, FrameEval, evaluate_ilsvrc
from dff.evaluation.motion import gt_motion_iou
from dff.evaluation.results import read_records

__all__ = [
    "APResult",
    "all_point_ap",
    "coco_ap50",
    "coco_results",
    "METRICS",
    "PROTOCOLS",
    "evaluate",
    "format_table",
    "MOTION_RANGES",
    "FrameEval",
    "evaluate_ilsvrc",
    "gt_motion_iou",
    "read_records",
    "RunStats",
    "run_dataset",
]


def __getattr__(name: str) -> Any:
    if name in ("RunStats", "run_dataset"):
        from dff.evaluation import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'dff.evaluation' has no attribute {name!r}")
