"""deep-feature-flow: video object detection with Deep Feature Flow, mmtracking-compatible, on PyTorch 2."""

from dff.api import DFFModel, FrameResult, InferenceOptions, build, load, zero_flow
from dff.config import PRESETS, DFFConfig, preset
from dff.evaluation.model_eval import EvaluationResult, IntervalResult, evaluate
from dff.keyframes import Adaptive, FixedInterval, KeyFramePolicy

__version__ = "0.1.0"
__all__ = [
    "DFFModel",
    "FrameResult",
    "InferenceOptions",
    "build",
    "load",
    "zero_flow",
    "Adaptive",
    "FixedInterval",
    "KeyFramePolicy",
    "evaluate",
    "EvaluationResult",
    "IntervalResult",
    "DFFConfig",
    "PRESETS",
    "preset",
    "__version__",
]
