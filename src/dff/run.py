"""`RunOptions`: how one run goes, as a value passed in (`model.predict(source, run=...)`, `model.session(run)`).

The model is weights, config and class names; everything a run decides lives here: which frames are key frames
(a `KeyFramePolicy` value), how other frames get their features (`propagation`), which backend runs the stages
(models/network.py's factory), in what precision and on which device, and which detections a result keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from dff.config import DFFConfig
from dff.errors import DFFError
from dff.keyframes import FixedInterval, KeyFramePolicy
from dff.models.network import BACKENDS, Propagation
from dff.models.precision import DTYPES


@dataclass(frozen=True)
class RunOptions:
    """How a run goes; the defaults are the preset's key frames (mmtracking's), the fast backend in fp32 on CUDA
    when available, every detection kept (as mmtracking's evaluation does).

    key_policy: which frames run the backbone (`dff.FixedInterval(k)`, `dff.Adaptive(budget)`, ...); None: the
        preset's `FixedInterval(cfg.key_interval)`. Each video works on its own copy.
    propagation: how a non-key frame gets its features; None: the network's own flow and warp;
        `dff.zero_flow` is the ablation; any function with `Network.propagate`'s arguments, network first.
    backend: "auto" (fast for PyTorch weights, onnx for an export), "reference" (mmtracking's ops one by one),
        "fast" (models/fast.py: the same numbers, faster) or "onnx" (an export on onnxruntime).
    dtype: "fp32", or "bf16" / "fp16" on the fast backend (opt-in: it changes the numbers; models/precision.py).
    device: "auto" (CUDA when this machine has it, else CPU), "cpu", "cuda" or "cuda:N".
    score_thr: keep detections scoring at least this (0: all the model keeps, up to 100 a frame above 1e-4).
    classes: keep only these class indices (None: all).
    prefetch: decode and preprocess the next frames in a background thread while the model runs.
    keep_frames: each result keeps its frame (`FrameResult.image`), so that `r.plot()` can draw on it.
    return_flow: each non-key result keeps its feature-resolution flow (`FrameResult.flow`).
    """

    key_policy: KeyFramePolicy | None = None
    propagation: Propagation | None = None
    backend: str = "auto"
    dtype: str = "fp32"
    device: str = "auto"
    score_thr: float = 0.0
    classes: tuple[int, ...] | None = None
    prefetch: bool = True
    keep_frames: bool = False
    return_flow: bool = False

    def __post_init__(self) -> None:
        if self.backend not in ("auto", *BACKENDS):
            raise DFFError(f"unknown backend {self.backend!r}; choose from auto, {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise DFFError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.dtype != "fp32" and self.backend in ("reference", "onnx"):
            raise DFFError(f"the {self.backend} backend runs in fp32 only, not {self.dtype}")
        if not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))
        thr = self.score_thr
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not (math.isfinite(thr) and 0 <= thr <= 1):
            raise DFFError(f"score_thr must be a number in [0, 1], got {thr!r}")
        if self.classes is not None:
            if isinstance(self.classes, (str, bytes)) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in self.classes
            ):
                raise DFFError(f"classes must be class indices (integers >= 0), got {self.classes!r}")
            object.__setattr__(self, "classes", tuple(self.classes))

    def policy(self, cfg: DFFConfig) -> KeyFramePolicy:
        """The key-frame policy of this run for a model of config `cfg`."""
        return self.key_policy if self.key_policy is not None else FixedInterval(cfg.key_interval)

    def with_options(self, **changes: Any) -> RunOptions:
        """A copy with some fields changed (`predict(..., score_thr=0.5)`); an unknown name is a DFFError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise DFFError(f"unknown run option {', '.join(unknown)}; the options are {', '.join(sorted(known))}")
        return replace(self, **changes) if changes else self


REFERENCE = RunOptions(backend="reference", device="cpu", prefetch=False)
"""mmtracking's arithmetic op for op on the CPU, frames preprocessed as its pipeline does, nothing in the background."""
