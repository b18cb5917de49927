"""The AP result type shared by every protocol, and the all-point (VOC2010+) interpolation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class APResult:
    """AP50 of one protocol: the mean over classes that have ground truth, and per class.

    `mean` is None when no class has ground truth; `per_class[c]` is None for a class without ground truth
    (it is left out of the mean);
    `num_gt[c]` is the number of ground-truth boxes of class c that count under the protocol.
    """

    mean: float | None
    per_class: tuple[float | None, ...]
    num_gt: tuple[int, ...]

    def to_dict(self, class_names: tuple[str, ...]) -> dict:
        """JSON-friendly form keyed by class name."""
        return {
            "mean": self.mean,
            "per_class": {n: ap for n, ap in zip(class_names, self.per_class)},
            "num_gt": {n: k for n, k in zip(class_names, self.num_gt)},
        }


def mean_over_classes(per_class: list[float | None]) -> float | None:
    """Mean of the classes that have a value; None when none has (nothing to evaluate)."""
    values = [v for v in per_class if v is not None]
    return float(np.mean(values)) if values else None


def all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope over every recall change (VOC2010+ / ILSVRC devkit).

    recall, precision: (D,) cumulative values in descending-score order.
    """
    r = np.concatenate(([0.0], np.asarray(recall, np.float64), [1.0]))
    p = np.concatenate(([0.0], np.asarray(precision, np.float64), [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))
