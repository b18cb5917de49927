"""The public API: `dff.load`, `dff.build` and `DFFModel.predict` over one video's frames."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from dff import checkpoint
from dff.config import DFFConfig
from dff.config import preset as get_preset
from dff.data.fast_preprocess import as_channels_last, half_hwc, preprocess_hwc
from dff.data.transforms import ImageMeta, check_frame, preprocess
from dff.errors import CheckpointError, DFFError
from dff.models.detector import DFF, FrameOutput, KeyFrameCache
from dff.models.optimize import FastDFF, optimize, unshared_hooks, weights_version

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


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class InferenceOptions:
    """How `DFFModel.predict` runs; the defaults are the fast path with fp32 results equal to the reference's.

    optimize: run the fast inference copy of `net` (models/optimize.py); False runs `net` itself op for op as
        mmtracking does (the reference path).
    dtype: "fp32", or "bf16" / "fp16" for the fast copy in reduced precision (opt-in: it changes the numbers).
    prefetch: decode and preprocess the next frames in a background thread while the model runs.
    """

    optimize: bool = True
    dtype: str = "fp32"
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise DFFError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.dtype != "fp32" and not self.optimize:
            raise DFFError(f"the reference path runs in fp32 only, not {self.dtype}")


REFERENCE = InferenceOptions(optimize=False, prefetch=False)


@dataclass
class ModelInput:
    """One preprocessed frame: position in the input, frame id in its segment, tensor on the device, geometry."""

    index: int
    frame_id: int
    img: torch.Tensor  # (1, 3, Hp, Wp) float32
    meta: ImageMeta
    preprocess_s: float  # seconds spent preprocessing it (in the background thread when prefetching)
    img_half: torch.Tensor | None = None  # (1, 3, Hp/2, Wp/2) 2x2 mean of img, for the fast FlowNet


class DFFModel:
    """A DFF network in eval mode on a device, with the per-video frame loop."""

    def __init__(self, net: DFF, device: torch.device | str = "cpu", inference: InferenceOptions | None = None) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.config: DFFConfig = net.cfg
        self.class_names: tuple[str, ...] = tuple(net.cfg.class_names)
        self._key_interval = net.cfg.key_interval
        self.inference = inference or InferenceOptions()
        self._fast: FastDFF | None = None
        self._fast_key: tuple | None = None

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
        session = self.session()
        for inp in self.inputs(frames):
            yield session.step(inp, return_flow=return_flow)

    def inputs(self, frames: Iterable[np.ndarray] | str | os.PathLike) -> Iterator[ModelInput]:
        """The frames checked and preprocessed, in order; ahead of the consumer in a background thread when
        `inference.prefetch` is set (errors are raised at the frame where they occur)."""
        if isinstance(frames, (str, os.PathLike)):
            frames = _source_images(frames)
        if not self.inference.prefetch:
            return self._preprocessed(frames)
        from dff.io.sources import prefetch

        return prefetch(lambda: self._preprocessed(frames), 2, "dff preprocess")

    def _preprocessed(self, frames: Iterable[np.ndarray]) -> Iterator[ModelInput]:
        """The fast path preprocesses with numpy/OpenCV only into a channels_last buffer (the same values); the
        reference path runs transforms.preprocess as mmtracking's pipeline does."""
        segment_shape, frame_id = None, 0
        fused = self.inference.optimize
        for index, frame in enumerate(frames):
            start = time.perf_counter()
            check_frame(frame, f"frame {index}")
            if frame.shape != segment_shape:
                segment_shape, frame_id = frame.shape, 0
            half = None
            if fused:
                hwc, meta = preprocess_hwc(frame, self.config.preprocess)
                img = as_channels_last(hwc)
                if self._key_interval > 1:
                    half = as_channels_last(half_hwc(hwc))
            else:
                img, meta = preprocess(frame, self.config.preprocess)
                img = img[None]
            yield ModelInput(index, frame_id, img, meta, time.perf_counter() - start, half)
            frame_id += 1

    def session(self) -> VideoSession:
        """A per-video state (key-frame cache) on the network that `predict` uses now."""
        return VideoSession(self, self.inference_net())

    def inference_net(self) -> DFF | FastDFF:
        """The network `predict` runs: the fast copy of `net` (rebuilt when net's weights change), or `net` itself
        for the reference path or when `net` has hooks on modules the fast copy does not have."""
        opts = self.inference
        if not opts.optimize:
            return self.net
        hooked = unshared_hooks(self.net)
        if hooked:
            log.debug("hooks on %s: running the reference network", ", ".join(hooked))
            return self.net
        key = (opts.dtype, self.device, weights_version(self.net))
        if self._fast is None or self._fast_key != key:
            self._fast, self._fast_key = None, None
            self._fast, self._fast_key = optimize(self.net, DTYPES[opts.dtype]), key
        self._fast.use_flow = self.net.use_flow
        return self._fast

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Save weights and config as one .safetensors file (our format); `dtype=torch.float16` halves it."""
        from dff import __version__

        checkpoint.save(self.net, self.config, path, __version__, dtype)


class VideoSession:
    """The frame loop of one video: `step` runs one preprocessed frame through the network, frames in order."""

    def __init__(self, model: DFFModel, net: DFF | FastDFF) -> None:
        self.model, self.net = model, net
        self.cache = net.new_cache() if isinstance(net, FastDFF) else KeyFrameCache()

    def step(self, inp: ModelInput, return_flow: bool = False) -> FrameResult:
        """Detections of one frame (inputs of one video in order, as `DFFModel.inputs` yields them)."""
        model = self.model
        with torch.inference_mode():
            img = inp.img.to(model.device, non_blocking=True)
            if isinstance(self.net, FastDFF):
                half = None if inp.img_half is None else inp.img_half.to(model.device, non_blocking=True)
                out = self.net(img, inp.meta, inp.frame_id, model.key_interval, self.cache, half)
            else:
                out = self.net(img, inp.meta, inp.frame_id, model.key_interval, self.cache)
            return _result(out, inp.index, model.config.rpn.stride if return_flow else None)


def _result(out: FrameOutput, index: int, flow_stride: int | None) -> FrameResult:
    """FrameResult from the network's output, with one device-to-host copy for the detections."""
    d = out.detections
    packed = torch.cat([d.boxes.float(), d.scores.float()[:, None], d.labels.float()[:, None]], dim=1).cpu().numpy()
    flow = None
    if flow_stride is not None and out.flow is not None:
        s = 1.0 / flow_stride
        small = torch.nn.functional.interpolate(out.flow.float(), scale_factor=s, mode="bilinear", align_corners=False)
        flow = (small * s)[0].cpu().numpy()
    return FrameResult(
        boxes=np.ascontiguousarray(packed[:, :4]),
        scores=np.ascontiguousarray(packed[:, 4]),
        labels=packed[:, 5].astype(np.int64),
        frame_index=index,
        is_key_frame=out.is_key_frame,
        flow=flow,
    )


def _source_images(source: str | os.PathLike) -> Iterator[np.ndarray]:
    """The images of a video file, folder, glob or stream; the source is closed when iteration ends."""
    from dff.io.sources import open_source

    with open_source(source) as src:
        for frame in src:
            yield frame.image


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


def load(
    path: str | os.PathLike, preset: str | DFFConfig | None = None, device: str | torch.device = "cpu"
) -> DFFModel:
    """Load an mmtracking `.pth` checkpoint (preset default r50_dc5), our `.safetensors` file, or a zoo name
    (`dff_r50_dc5_imagenetvid`, ...: the official checkpoint, downloaded once and verified).

    For our format and for zoo names the preset is known; passing a different one is an error.
    """
    from dff import zoo

    entry = zoo.ZOO.get(os.fspath(path))
    if entry is not None and preset is not None and _config(preset).name != entry.preset:
        raise CheckpointError(f"{os.fspath(path)} is a {entry.preset} checkpoint, not {_config(preset).name}")
    path, zoo_preset = zoo.resolve(path)
    preset = preset or zoo_preset
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
