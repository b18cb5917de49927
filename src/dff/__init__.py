"""deep-feature-flow: video object detection with Deep Feature Flow, mmtracking-compatible, on PyTorch 2."""

from dff.api import DFFModel, FrameResult, build, load
from dff.config import PRESETS, DFFConfig, preset
from dff.evaluation.model_eval import EvaluationResult, IntervalResult, evaluate

__version__ = "0.1.0"
__all__ = [
    "DFFModel",
    "FrameResult",
    "build",
    "load",
    "evaluate",
    "EvaluationResult",
    "IntervalResult",
    "DFFConfig",
    "PRESETS",
    "preset",
    "__version__",
]
