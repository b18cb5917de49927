"""The public API: `dff.load`, `dff.build` and `DFFModel.predict` over one video's frames.

Spec pitfalls handled here: 18, 23 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dff import checkpoint
from dff.config import DFFConfig
from dff.config import preset as get_preset
from dff.data.fast_preprocess import as_channels_last, half_hwc, preprocess_hwc
from dff.data.transforms import ImageMeta, check_frame, preprocess
from dff.errors import CheckpointError, DFFError, InputError
from dff.keyframes import FIRST, FixedInterval, Incoming, KeyFramePolicy, Propagated
from dff.models.detector import DFF, Detections, KeyState
from dff.models.fast import fast_network, unshared_hooks, weights_version
from dff.models.precision import DTYPES, to_compute

if TYPE_CHECKING:
    import supervision

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
    key_reason: str | None = None  # why it is a key frame (dff.keyframes: "first", "interval", ...)
    track_ids: np.ndarray | None = None  # int64 (N,) track ids (dff.tracking; -1: in no confirmed track), if tracked

    def _names(self, class_names: Sequence[str] | None) -> list[str] | None:
        """The class name of each detection, or None without `class_names`; a label outside them is an error."""
        if class_names is None:
            return None
        bad = self.labels[(self.labels < 0) | (self.labels >= len(class_names))]
        if len(bad):
            raise InputError(
                f"frame {self.frame_index}: label {int(bad[0])} is not among the {len(class_names)} classes"
            )
        return [class_names[int(c)] for c in self.labels]

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """A JSON-ready dict: frame_index, is_key_frame, key_reason, boxes ([x1, y1, x2, y2] original pixels),
        scores, labels, then class_names (one per detection, when `class_names` is given) and track_ids (when
        tracked). The flow is left out."""
        out: dict[str, Any] = {
            "frame_index": int(self.frame_index),
            "is_key_frame": bool(self.is_key_frame),
            "key_reason": self.key_reason,
            "boxes": np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4).tolist(),
            "scores": np.asarray(self.scores, dtype=np.float32).tolist(),
            "labels": [int(c) for c in self.labels],
        }
        names = self._names(class_names)
        if names is not None:
            out["class_names"] = names
        if self.track_ids is not None:
            if len(self.track_ids) != len(self.scores):
                raise InputError(
                    f"frame {self.frame_index}: {len(self.track_ids)} track ids for {len(self.scores)} detections"
                )
            out["track_ids"] = [int(i) for i in self.track_ids]
        return out

    def to_supervision(self, class_names: Sequence[str] | None = None) -> supervision.Detections:
        """The detections as supervision's `sv.Detections` (xyxy, confidence, class_id, tracker_id when tracked,
        data["class_name"] when `class_names` is given); needs the optional 'track' extra."""
        try:
            import supervision as sv
        except ImportError:
            raise DFFError(
                "FrameResult.to_supervision needs the optional 'track' extra (supervision is not installed): "
                "pip install 'deep-feature-flow[track]'"
            ) from None
        names = self._names(class_names)
        return sv.Detections(
            xyxy=np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4),
            confidence=np.asarray(self.scores, dtype=np.float32),
            class_id=np.asarray(self.labels, dtype=int),
            tracker_id=None if self.track_ids is None else np.asarray(self.track_ids, dtype=int),
            data={} if names is None else {"class_name": np.array(names, dtype=str)},
        )


Propagation = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def zero_flow(
    net: DFF, img: torch.Tensor, key: KeyState, img_shape: tuple[int, int], half: torch.Tensor | None = None
) -> tuple[torch.Tensor, None]:
    """The zero-flow ablation, a drop-in for `DFF.propagate`: the key features reused unwarped, no flow."""
    return key.feats, None


@dataclass(frozen=True)
class InferenceOptions:
    """How `DFFModel.predict` runs; the defaults are the fast path with fp32 results equal to the reference's.

    fast: run the fast network derived from `net` (models/fast.py); False runs `net` itself op for op as
        mmtracking does (the reference path).
    dtype: "fp32", or "bf16" / "fp16" for the fast network in reduced precision (opt-in: it changes the numbers).
    prefetch: decode and preprocess the next frames in a background thread while the model runs.
    """

    fast: bool = True
    dtype: str = "fp32"
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise DFFError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.dtype != "fp32" and not self.fast:
            raise DFFError(f"the reference path runs in fp32 only, not {self.dtype}")


REFERENCE = InferenceOptions(fast=False, prefetch=False)


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
    """A DFF network in eval mode on a device, with the per-video frame loop.

    `key_policy` decides the key frames (default `FixedInterval(cfg.key_interval)`, mmtracking's rule);
    `propagation` makes a non-key frame's features: None (default) runs the network's own `propagate` (flow and
    warp); `zero_flow` is the ablation; any function with `DFF.propagate`'s signature may stand in.
    """

    def __init__(self, net: DFF, device: torch.device | str = "cpu", inference: InferenceOptions | None = None) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.config: DFFConfig = net.cfg
        self.class_names: tuple[str, ...] = tuple(net.cfg.class_names)
        self.key_policy: KeyFramePolicy = FixedInterval(net.cfg.key_interval)
        self.propagation: Propagation | None = None
        self.inference = inference or InferenceOptions()
        self._fast: DFF | None = None
        self._fast_key: tuple | None = None

    @property
    def key_interval(self) -> int | None:
        """The interval of a `FixedInterval` policy (None for another policy); setting it sets that policy."""
        return self.key_policy.interval if isinstance(self.key_policy, FixedInterval) else None

    @key_interval.setter
    def key_interval(self, value: int) -> None:
        self.key_policy = FixedInterval(value)

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
        fused = self.inference.fast
        for index, frame in enumerate(frames):
            start = time.perf_counter()
            check_frame(frame, f"frame {index}")
            if frame.shape != segment_shape:
                segment_shape, frame_id = frame.shape, 0
            half = None
            if fused:
                hwc, meta = preprocess_hwc(frame, self.config.preprocess)
                img, half = as_channels_last(hwc), as_channels_last(half_hwc(hwc))
            else:
                img, meta = preprocess(frame, self.config.preprocess)
                img = img[None]
            yield ModelInput(index, frame_id, img, meta, time.perf_counter() - start, half)
            frame_id += 1

    def session(self) -> VideoSession:
        """The frame loop of one video on the network that `predict` uses now."""
        return VideoSession(self, self.inference_net())

    def inference_net(self) -> DFF:
        """The network `predict` runs: the fast network derived from `net` (rebuilt when net's weights change), or
        `net` itself for the reference path or when `net` has hooks on modules the fast one does not have."""
        opts = self.inference
        if not opts.fast:
            return self.net
        hooked = unshared_hooks(self.net)
        if hooked:
            log.debug("hooks on %s: running the reference network", ", ".join(hooked))
            return self.net
        key = (opts.dtype, self.device, weights_version(self.net))
        if self._fast is None or self._fast_key != key:
            self._fast, self._fast_key = None, None
            self._fast, self._fast_key = fast_network(self.net, DTYPES[opts.dtype]), key
        return self._fast

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Save weights and config as one .safetensors file (our format); `dtype=torch.float16` halves it."""
        from dff import __version__

        checkpoint.save(self.net, self.config, path, __version__, dtype)


class VideoSession:
    """The frame loop of one video: the DFF step with the key-frame policy, one preprocessed frame at a time.

    Key frame: backbone features (the key state). Other frame: flow to the key frame and the key features warped
    by it, unless the policy then asks for a key frame. Either way the heads run on the features.
    """

    def __init__(self, model: DFFModel, net: DFF) -> None:
        self.model, self.net = model, net
        self.policy: KeyFramePolicy = copy.deepcopy(model.key_policy)
        self.dtype = DTYPES[model.inference.dtype] if net is not model.net else torch.float32
        self.key: KeyState | None = None
        self.key_frame_id = 0

    def step(self, inp: ModelInput, return_flow: bool = False) -> FrameResult:
        """Detections of one frame (inputs of one video in order, as `DFFModel.inputs` yields them)."""
        net, policy, fid = self.net, self.policy, inp.frame_id
        with torch.inference_mode():
            img = self._tensor(inp.img)
            half = None if inp.img_half is None else self._tensor(inp.img_half)
            shape = inp.meta.img_shape
            frame = Incoming(fid, img, shape)
            if fid == 0 or self.key is None:
                policy.reset()
                reason = FIRST
            else:
                reason = policy.before(frame)
            flow = None
            if reason is None:
                propagate = self.model.propagation or type(net).propagate
                feats, flow = propagate(net, img, self.key, shape, half)
                since = fid - self.key_frame_id
                reason = policy.after(Propagated(fid, img, shape, since, flow, feats, self.key))
            if reason is not None:
                self.key, self.key_frame_id = net.key_features(img, shape, half), fid
                feats, flow = self.key.feats, None
                policy.key_frame(frame, reason)
            detections = net.detect(feats, inp.meta)
            stride = self.model.config.rpn.stride if return_flow else None
            return _result(detections, inp.index, reason, flow, stride)

    def _tensor(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.model.device, non_blocking=True)
        return x if self.net is self.model.net else to_compute(x, self.dtype)


def _result(
    d: Detections, index: int, reason: str | None, flow: torch.Tensor | None, flow_stride: int | None
) -> FrameResult:
    """FrameResult from the network's output, with one device-to-host copy for the detections."""
    packed = torch.cat([d.boxes.float(), d.scores.float()[:, None], d.labels.float()[:, None]], dim=1).cpu().numpy()
    small = None
    if flow_stride is not None and flow is not None:
        s = 1.0 / flow_stride
        small = torch.nn.functional.interpolate(flow.float(), scale_factor=s, mode="bilinear", align_corners=False)
        small = (small * s)[0].cpu().numpy()
    return FrameResult(
        boxes=np.ascontiguousarray(packed[:, :4]),
        scores=np.ascontiguousarray(packed[:, 4]),
        labels=packed[:, 5].astype(np.int64),
        frame_index=index,
        is_key_frame=reason is not None,
        flow=small,
        key_reason=reason,
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
    """Load an mmtracking `.pth` checkpoint (preset default r50_dc5), our `.safetensors` file, a `dff train`
    checkpoint (`latest.pth`, `epoch_K.pth`) or a zoo name (`dff_r50_dc5_imagenetvid`, ...: the official
    checkpoint, downloaded once and verified); dff.checkpoint.read_model reads the file.

    For our format, training checkpoints and zoo names the preset is known; passing a different one is an error.
    (`dff.load`, in dff.weights, also takes an ONNX export's manifest.)
    """
    from dff import zoo

    entry = zoo.ZOO.get(os.fspath(path))
    if entry is not None and preset is not None and _config(preset).name != entry.preset:
        raise CheckpointError(f"{os.fspath(path)} is a {entry.preset} checkpoint, not {_config(preset).name}")
    path, zoo_preset = zoo.resolve(path)
    preset = preset or zoo_preset
    state, cfg = checkpoint.read_model(path, None if preset is None else _config(preset))
    net = DFF(cfg)
    checkpoint.check_state_dict(net, state, path)
    net.load_state_dict(state, strict=True)
    log.debug("loaded %s (%s)", path, cfg.name)
    return DFFModel(net, _prepare_device(device))
