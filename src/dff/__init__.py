"""deep-feature-flow: video object detection with Deep Feature Flow, mmtracking-compatible, on PyTorch 2."""

from dff.api import DFFModel, FrameResult, build, load
from dff.config import PRESETS, DFFConfig, preset

__version__ = "0.1.0"
__all__ = ["DFFModel", "FrameResult", "build", "load", "DFFConfig", "PRESETS", "preset", "__version__"]
