"""The public API: `dff.load`, `dff.build` and `DFFModel.predict` over one video's frames."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from dff import checkpoint
from dff.config import DFFConfig, preset as get_preset
from dff.data.transforms import check_frame, preprocess
from dff.errors import CheckpointError, DFFError
from dff.models.detector import DFF, KeyFrameCache

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """Detections of one frame, in original pixels, sorted by descending score (at most 100)."""

    boxes: np.ndarray  # float32 (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (N,)
    labels: np.ndarray  # int64 (N,) index into class_names
    frame_index: int
    is_key_frame: bool
    flow: np.ndarray | None = None  # float32 (2, h, w) feature-resolution flow, non-key frames, if asked


class DFFModel:
    """A DFF network in eval mode on a device, with the per-video frame loop."""

    def __init__(self, net: DFF, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.config: DFFConfig = net.cfg
        self.class_names: tuple[str, ...] = tuple(net.cfg.class_names)
        self._key_interval = net.cfg.key_interval

    @property
    def key_interval(self) -> int:
        """Key frames are those with `frame_id % key_interval == 0` (frame ids restart at 0 per video)."""
        return self._key_interval

    @key_interval.setter
    def key_interval(self, value: int) -> None:
        if int(value) < 1:
            raise DFFError(f"key_interval must be >= 1, got {value}")
        self._key_interval = int(value)

    @property
    def use_flow(self) -> bool:
        """True (default): warp key features by FlowNet's flow; False: reuse them unwarped (zero-flow ablation)."""
        return self.net.use_flow

    @use_flow.setter
    def use_flow(self, value: bool) -> None:
        self.net.use_flow = bool(value)

    def predict(
        self, frames: Iterable[np.ndarray] | str | os.PathLike, *, return_flow: bool = False
    ) -> Iterator[FrameResult]:
        """Detect objects in one video's frames, in order (HxWx3 uint8 BGR arrays, or a path to a source).

        A change of frame size starts a new segment: its first frame is a key frame and frame ids restart at 0.
        """
        if isinstance(frames, (str, os.PathLike)):
            from dff.io.sources import open_source

            frames = (f.image for f in open_source(frames))
        cache = KeyFrameCache()
        segment_shape, frame_id = None, 0
        with torch.inference_mode():
            for index, frame in enumerate(frames):
                check_frame(frame, f"frame {index}")
                if frame.shape != segment_shape:
                    segment_shape, frame_id = frame.shape, 0
                img, meta = preprocess(frame, self.config.preprocess)
                out = self.net(img[None].to(self.device), meta, frame_id, self._key_interval, cache)
                frame_id += 1
                flow = None
                if return_flow and out.flow is not None:
                    s = 1.0 / self.config.rpn.stride
                    small = torch.nn.functional.interpolate(out.flow, scale_factor=s, mode="bilinear", align_corners=False) * s
                    flow = small[0].float().cpu().numpy()
                d = out.detections
                yield FrameResult(
                    boxes=d.boxes.float().cpu().numpy(), scores=d.scores.float().cpu().numpy(),
                    labels=d.labels.cpu().numpy().astype(np.int64), frame_index=index,
                    is_key_frame=out.is_key_frame, flow=flow,
                )

    def save(self, path: str | os.PathLike) -> None:
        """Save weights and config as one .safetensors file (our format)."""
        from dff import __version__

        checkpoint.save(self.net, self.config, path, __version__)


def _config(preset: str | DFFConfig) -> DFFConfig:
    return preset if isinstance(preset, DFFConfig) else get_preset(preset)


def _prepare_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DFFError("device 'cuda' requested but CUDA is not available on this machine")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def build(preset: str | DFFConfig = "r50_dc5", device: str | torch.device = "cpu") -> DFFModel:
    """A model with freshly initialised (random) weights."""
    return DFFModel(DFF(_config(preset)), _prepare_device(device))


def load(path: str | os.PathLike, preset: str | DFFConfig | None = None, device: str | torch.device = "cpu") -> DFFModel:
    """Load an mmtracking `.pth` checkpoint (preset default r50_dc5) or our `.safetensors` file.

    For our format the preset stored in the file is used; passing a different one is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if checkpoint.is_safetensors(path):
        state, cfg = checkpoint.read_safetensors(path)
        if preset is not None and _config(preset).name != cfg.name:
            raise CheckpointError(f"{path}: saved for preset {cfg.name!r}, not {_config(preset).name!r}")
    else:
        state, meta = checkpoint.read_pth(path)
        cfg = _config(preset or "r50_dc5")
        classes = meta.get("CLASSES")
        if classes is not None and len(classes) == cfg.num_classes and tuple(classes) != cfg.class_names:
            cfg = replace(cfg, class_names=tuple(str(c) for c in classes))
    net = DFF(cfg)
    checkpoint.check_state_dict(net, state, path)
    net.load_state_dict(state, strict=True)
    log.debug("loaded %s (%s)", path, cfg.name)
    return DFFModel(net, _prepare_device(device))
