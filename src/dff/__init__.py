"""deep-feature-flow: video object detection with Deep Feature Flow, mmtracking-compatible, on PyTorch 2.

The public names are imported on first use (PEP 562), so that `import dff` (and the `dff` command's start-up,
where a Ctrl-C must not print a traceback) does not import torch before it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dff.api import DFFModel, FrameResult, InferenceOptions, build, zero_flow
    from dff.config import PRESETS, DFFConfig, preset
    from dff.evaluation.model_eval import EvaluationResult, IntervalResult, evaluate
    from dff.keyframes import Adaptive, FixedInterval, KeyFramePolicy
    from dff.weights import load

from dff.version import __version__

_HOME = {
    "DFFModel": "dff.api",
    "FrameResult": "dff.api",
    "InferenceOptions": "dff.api",
    "build": "dff.api",
    "load": "dff.weights",
    "zero_flow": "dff.api",
    "Adaptive": "dff.keyframes",
    "FixedInterval": "dff.keyframes",
    "KeyFramePolicy": "dff.keyframes",
    "evaluate": "dff.evaluation.model_eval",
    "EvaluationResult": "dff.evaluation.model_eval",
    "IntervalResult": "dff.evaluation.model_eval",
    "DFFConfig": "dff.config",
    "PRESETS": "dff.config",
    "preset": "dff.config",
}
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


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    try:
        return importlib.import_module(f"dff.{name}")  # a submodule: dff.api, dff.zoo, ...
    except ModuleNotFoundError as e:
        if e.name != f"dff.{name}":
            raise
        raise AttributeError(f"module 'dff' has no attribute {name!r}") from None
