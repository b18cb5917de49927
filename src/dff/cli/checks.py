"""Up-front checks of command-line options shared by the subcommands, run before any model or data is loaded."""

from __future__ import annotations

import math
import os
from pathlib import Path

from dff.errors import DFFError


def check_score_thr(value: float, option: str = "--score-thr") -> None:
    """A score threshold must be a finite number in [0, 1]."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise DFFError(f"{option} must be a number in [0, 1], got {value}")


def check_device(name: str | None, option: str = "--device") -> None:
    """`name` parses as a torch device and that device exists on this machine (None or "auto": the command's
    default, CUDA when available)."""
    if name is None or name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DFFError(f"{option} {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise DFFError(f"{option} {name!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise DFFError(f"{option} {name!r}: CUDA is not available on this machine")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DFFError(f"{option} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_weights_path(weights: str | os.PathLike, option: str = "--weights") -> None:
    """A --weights that names a folder is refused as such (a file or a zoo name is checked when loading)."""
    if Path(weights).expanduser().is_dir():
        raise DFFError(f"{weights}: {option} is a folder; give a checkpoint file (.pth or .safetensors) or a zoo name")
