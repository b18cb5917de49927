"""The one network interface every backend implements, and the one factory that chooses a backend for a run.

`Network` is DFF's three stages on a batch of N frames of one padded size (each with its own content size / meta):
`key_features`, `propagate`, `detect`. The reference `DFF` (op for op as mmtracking), the fast network derived from
it (`models/fast.py`, per device) and the ONNX export on onnxruntime (`dff.export.runtime.ONNXNetwork`) implement it;
the video loop (`dff.api.VideoSession`) only ever calls these three methods. `build_network` turns weights and a
run's (backend, device, dtype) into one of them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from dff.config import DFFConfig
from dff.data.transforms import ImageMeta, ImageShapes
from dff.errors import DFFError
from dff.models.detector import DFF, KeyState
from dff.models.fast import fast_network, unshared_hooks
from dff.models.precision import DTYPES
from dff.models.roi_head import Detections

log = logging.getLogger(__name__)

BACKENDS = ("reference", "fast", "onnx")


@runtime_checkable
class Network(Protocol):
    """DFF's three stages on a batch: images (N, 3, Hp, Wp) float32 on `device`, normalised and zero-padded.

    Each stage's row i equals a call on frame i alone (within the golden tolerances); the rows of a key state may
    belong to different videos.
    """

    cfg: DFFConfig

    @property
    def device(self) -> torch.device:
        """Where the stages take their inputs."""

    def key_features(self, img: torch.Tensor, img_shapes: ImageShapes) -> KeyState:
        """Key frames -> their key states (backbone features; the images as the motion network keeps them)."""

    def propagate(self, img: torch.Tensor, key: KeyState, img_shapes: ImageShapes) -> tuple[torch.Tensor, torch.Tensor]:
        """Other frames -> the key features warped to them (N, C, h, w) and the flow (N, 2, Hp, Wp)."""

    def detect(self, feats: torch.Tensor, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Features (N, C, h, w) -> each frame's detections in original-image pixels."""


Propagation = Callable[[Network, torch.Tensor, KeyState, ImageShapes], tuple[torch.Tensor, torch.Tensor | None]]
"""A stand-in for `Network.propagate` (called with the network first), e.g. `zero_flow`."""


def zero_flow(net: Network, img: torch.Tensor, key: KeyState, img_shapes: ImageShapes) -> tuple[torch.Tensor, None]:
    """The zero-flow ablation, a drop-in for `Network.propagate`: the key features reused unwarped, no flow."""
    return key.feats, None


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when this machine has it, else the CPU; a name -> that device, checked to exist (DFFError)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DFFError(f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DFFError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DFFError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the golden tolerances)
        torch.backends.cudnn.allow_tf32 = False
    elif dev.type != "cpu":
        raise DFFError(f"device {device!r}: only cpu and cuda devices are supported")
    return dev


def build_network(weights: DFF | Network, backend: str, device: str | torch.device, dtype: str) -> Network:
    """The network a run uses, from the model's weights (a reference `DFF`, or an ONNX export's graphs).

    backend: "auto" (fast for PyTorch weights, onnx for an export), "reference", "fast" or "onnx".
    device: "auto" (CUDA when available; an export keeps the device it was loaded for, its `execution_device`),
    "cpu", "cuda[:N]". dtype: "fp32", "bf16" or "fp16" (fast backend only). Hooks on modules of `weights` that the
    fast network does not share make the fast backend run the reference network (so debugging hooks see the real
    modules). Raises DFFError for a combination that cannot run.
    """
    if dtype not in DTYPES:
        raise DFFError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if backend not in ("auto", *BACKENDS):
        raise DFFError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    if not isinstance(weights, DFF):
        if backend not in ("auto", "onnx"):
            raise DFFError(f"{weights}: an ONNX export runs on the onnx backend, not {backend}")
        if dtype != "fp32":
            raise DFFError(f"{weights}: the ONNX graphs run in fp32, not {dtype}")
        loaded = weights.execution_device  # an export's device is chosen when it is loaded
        if str(device) != "auto" and resolve_device(device).type != loaded.type:
            raise DFFError(f"{weights}: loaded for {loaded}, not {device} (load it with device={device!r})")
        return weights
    backend = "fast" if backend == "auto" else backend
    if backend == "onnx":
        raise DFFError(
            "the onnx backend runs an export: `dff export --weights W --out DIR`, then dff.load('DIR/manifest.json')"
        )
    dev = resolve_device(device)
    if backend == "fast":
        hooked = unshared_hooks(weights)
        if not hooked:
            return fast_network(weights, dev, DTYPES[dtype])
        log.debug("hooks on %s: running the reference network", ", ".join(hooked))
    elif dtype != "fp32":
        raise DFFError(f"the reference backend runs in fp32 only, not {dtype}")
    return weights if weights.device == dev else copy.deepcopy(weights).to(dev).eval()
