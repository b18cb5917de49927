"""The public API: `dff.load`, `dff.build`, `DFFModel.predict`, and the video loop (`VideoSession`, `step`).

`DFFModel` is weights, config and class names; how a run goes is a `RunOptions` value passed in. The DFF step is
written once, in `step`, over any number of videos' sessions at a time (batched stages); `VideoSession.step` is that
step for one video.

Spec pitfalls handled here: 18, 23 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from dff import checkpoint
from dff.config import DFFConfig
from dff.config import preset as get_preset
from dff.data.fast_preprocess import as_channels_last, preprocess_hwc
from dff.data.transforms import ImageMeta, check_frame, preprocess
from dff.errors import CheckpointError, DFFError, InputError
from dff.io.result import FrameResult
from dff.io.sources import Frame
from dff.keyframes import FIRST, Incoming, KeyFramePolicy, Propagated
from dff.models.detector import DFF, Detections, KeyState
from dff.models.fast import unshared_hooks, weights_version
from dff.models.network import Network, build_network, resolve_device
from dff.run import RunOptions

log = logging.getLogger(__name__)

Source = str | os.PathLike | np.ndarray | Iterable[np.ndarray] | Iterable[Frame]
"""What `predict` reads: a path (video file, image, folder, glob, stream URL), one HxWx3 uint8 BGR image, or the
frames of one video in order (arrays, or `dff.io.sources.Frame`s with their index and time)."""


@dataclass
class FrameInput:
    """One preprocessed frame: position in the source, position in its segment, time, tensor, geometry."""

    index: int
    frame_id: int
    time_s: float | None
    img: torch.Tensor  # (1, 3, Hp, Wp) float32, normalised and zero-padded
    meta: ImageMeta
    preprocess_s: float  # seconds spent preprocessing it (in the background thread when prefetching)
    image: np.ndarray | None = None  # the original frame, when the run keeps frames
    arrival_s: float | None = None  # live sources: when the frame arrived (the run's clock)


class DFFModel:
    """A DFF model: its weights (a reference `DFF` network, or an ONNX export's graphs), config and class names.

    Runs take a `RunOptions` (`predict(source, run)`, `session(run)`); the network a run needs is built from the
    weights by `models/network.py`'s factory and kept while the weights stay the same.
    """

    def __init__(self, net: DFF | Network, class_names: Sequence[str] | None = None) -> None:
        if isinstance(net, DFF):
            net.eval()
        self.net = net
        self.config: DFFConfig = net.cfg
        self.class_names: tuple[str, ...] = tuple(class_names if class_names is not None else net.cfg.class_names)
        self._networks: dict[tuple, Network] = {}

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.net.device

    def network(self, run: RunOptions | None = None) -> Network:
        """The network `run` asks for (backend, device, dtype), built once and kept while the weights and their
        hooks stay the same."""
        run = run or RunOptions()
        if not isinstance(self.net, DFF):
            return build_network(self.net, run.backend, run.device, run.dtype)
        device = str(resolve_device(run.device))
        key = (run.backend, device, run.dtype, weights_version(self.net), tuple(unshared_hooks(self.net)))
        if key not in self._networks:
            if len(self._networks) >= 4:
                self._networks.pop(next(iter(self._networks)))
            self._networks[key] = build_network(self.net, run.backend, device, run.dtype)
        return self._networks[key]

    def predict(self, source: Source, run: RunOptions | None = None, **options: Any) -> Iterator[FrameResult]:
        """Detect objects in one video's frames, in order (`Source`); `options` change fields of `run`, e.g.
        `predict("clip.mp4", score_thr=0.5, key_policy=dff.FixedInterval(5))`.

        A change of frame size starts a new segment: its first frame is a key frame and frame ids restart at 0.
        """
        run = (run or RunOptions()).with_options(**options)
        session = self.session(run)
        for inp in self.inputs(source, run):
            yield session.step(inp)

    def predict_many(
        self, sources: Sequence[Source], run: RunOptions | None = None, **options: Any
    ) -> Iterator[tuple[int, FrameResult]]:
        """Several videos through one network at once: each step takes the next frame of every video not yet
        finished and runs them through the batched stages (`step`); yields (index of the source, result) in that
        order. Each video's results equal `predict` on it alone (within the golden tolerances)."""
        run = (run or RunOptions()).with_options(**options)
        streams = {i: self.inputs(s, run) for i, s in enumerate(sources)}
        sessions = {i: self.session(run) for i in streams}
        try:
            while streams:
                batch = []
                for i, stream in list(streams.items()):
                    inp = next(stream, None)
                    if inp is None:
                        del streams[i]
                    else:
                        batch.append((i, inp))
                if batch:
                    results = step([sessions[i] for i, _ in batch], [inp for _, inp in batch])
                    yield from zip([i for i, _ in batch], results, strict=True)
        finally:
            for stream in streams.values():
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    def session(self, run: RunOptions | None = None, keys: DeferredKeys | None = None) -> VideoSession:
        """The frame loop of one video under `run` (default `RunOptions()`); `keys`: key frames computed beside the
        loop (live runs, `dff.live.keys`)."""
        run = run or RunOptions()
        return VideoSession(self.network(run), run, self.class_names, keys)

    def inputs(self, source: Source, run: RunOptions | None = None) -> Iterator[FrameInput]:
        """The frames of `source` checked and preprocessed, in order; ahead of the consumer in a background thread
        when `run.prefetch` (errors are raised at the frame where they occur)."""
        run = run or RunOptions()
        frames = frames_of(source)
        if not run.prefetch:
            return self._preprocessed(frames, run)
        from dff.io.sources import prefetch

        return prefetch(lambda: self._preprocessed(frames, run), 2, "dff preprocess")

    def prepare(self, frame: Frame, frame_id: int, run: RunOptions, arrival_s: float | None = None) -> FrameInput:
        """One frame preprocessed for `run`: the reference backend as mmtracking's pipeline (transforms.preprocess),
        the others with numpy / OpenCV into a channels_last buffer (the same values; data/fast_preprocess.py)."""
        start = time.perf_counter()
        check_frame(frame.image, f"frame {frame.index}")
        if run.backend == "reference":
            img, meta = preprocess(frame.image, self.config.preprocess)
            img = img[None]
        else:
            hwc, meta = preprocess_hwc(frame.image, self.config.preprocess)
            img = as_channels_last(hwc)
        image = frame.image if run.keep_frames else None
        return FrameInput(frame.index, frame_id, frame.time_s, img, meta, time.perf_counter() - start, image, arrival_s)

    def _preprocessed(self, frames: Iterable[Frame], run: RunOptions) -> Iterator[FrameInput]:
        segment_shape, frame_id = None, 0
        for frame in frames:
            shape = getattr(frame.image, "shape", None)
            if shape != segment_shape:
                segment_shape, frame_id = shape, 0
            yield self.prepare(frame, frame_id, run)
            frame_id += 1

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Save weights and config as one .safetensors file (our format); `dtype=torch.float16` halves it."""
        if not isinstance(self.net, DFF):
            raise DFFError(f"{self.net}: an ONNX export has no PyTorch weights to save")
        from dff.version import __version__

        checkpoint.save(self.net, self.config, path, __version__, dtype)


class DeferredKeys(Protocol):
    """Key frames computed beside the frame loop (`dff.live.keys`): `request` starts the backbone pass of a frame
    (False while one is still running: the request is dropped), `landed` hands over a finished key state."""

    def request(self, net: Network, img: torch.Tensor, img_shape: tuple[int, int], tag: Any) -> bool:
        """Start computing `net.key_features` of `img` (1, 3, Hp, Wp) in the background; `tag` comes back with it."""

    def landed(self) -> tuple[KeyState, Any] | None:
        """A key state that has finished since the last call, with its tag, or None."""


class VideoSession:
    """The frame loop of one video: its key-frame policy and key state over the network's stages.

    `step(inp)` runs one frame (inputs of one video in order, as `DFFModel.inputs` yields them); `dff.api.step`
    runs one frame of each of several sessions together through batched stages, with the same results.

    With `keys` (live runs: `dff.live.keys`), a key frame the policy asks for once the video has a key state is
    computed beside the loop: the frame itself, and the frames after it until the new key state lands, are
    propagated from the previous one; from then on frames propagate from the new key frame. A segment's first
    frame is always computed in place.
    """

    def __init__(
        self, net: Network, run: RunOptions, class_names: Sequence[str], keys: DeferredKeys | None = None
    ) -> None:
        self.net, self.run, self.class_names, self.keys = net, run, tuple(class_names), keys
        self.policy: KeyFramePolicy = copy.deepcopy(run.policy(net.cfg))
        self.key: KeyState | None = None
        self.key_frame_id = 0
        self.key_index: int | None = None
        self.backbone_passes = 0  # key states made (in place or beside the loop)

    def step(self, inp: FrameInput) -> FrameResult:
        """Detections of one frame."""
        return step([self], [inp])[0]

    def _before(self, frame: Incoming) -> str | None:
        if frame.frame_id == 0 or self.key is None:
            self.policy.reset()
            return FIRST
        return self.policy.before(frame)

    def _deferred(self, reason: str | None) -> bool:
        """Whether a key frame asked for now is made beside the loop (the frame itself is propagated)."""
        return reason is not None and reason != FIRST and self.keys is not None and self.key is not None

    def _land(self) -> None:
        """A key state finished beside the loop takes over (frames from now on propagate from it)."""
        if self.keys is not None and (done := self.keys.landed()) is not None:
            key, (frame_id, index) = done
            self.key, self.key_frame_id, self.key_index = key, frame_id, index

    def _request(self, img: torch.Tensor, frame: Incoming, reason: str, index: int) -> None:
        if self.keys.request(self.net, img, frame.img_shape, (frame.frame_id, index)):
            self.backbone_passes += 1
            self.policy.key_frame(frame, reason)

    def _after(self, frame: Incoming, feats: torch.Tensor, flow: torch.Tensor | None) -> str | None:
        since = frame.frame_id - self.key_frame_id
        return self.policy.after(Propagated(frame.frame_id, frame.img, frame.img_shape, since, flow, feats, self.key))

    def _new_key(self, key: KeyState, frame: Incoming, reason: str, index: int) -> None:
        self.key, self.key_frame_id, self.key_index = key, frame.frame_id, index
        self.backbone_passes += 1
        self.policy.key_frame(frame, reason)

    def _result(self, d: Detections, inp: FrameInput, reason: str | None, flow: torch.Tensor | None) -> FrameResult:
        """The FrameResult of the network's output: one device-to-host copy, then the run's score / class filter."""
        packed = torch.cat([d.boxes.float(), d.scores.float()[:, None], d.labels.float()[:, None]], dim=1)
        packed = packed.cpu().numpy()
        small = None
        if self.run.return_flow and flow is not None:
            s = 1.0 / self.net.cfg.rpn.stride
            small = torch.nn.functional.interpolate(flow.float(), scale_factor=s, mode="bilinear", align_corners=False)
            small = (small * s)[0].cpu().numpy()
        keep = packed[:, 4] >= self.run.score_thr
        if self.run.classes is not None:
            keep &= np.isin(packed[:, 5].astype(np.int64), self.run.classes)
        packed = packed[keep]
        return FrameResult(
            boxes=np.ascontiguousarray(packed[:, :4]),
            scores=np.ascontiguousarray(packed[:, 4]),
            labels=packed[:, 5].astype(np.int64),
            frame_index=inp.index,
            is_key_frame=reason is not None,
            key_reason=reason,
            time_s=inp.time_s,
            key_index=self.key_index,
            class_names=self.class_names,
            image=inp.image,
            flow=small,
            arrival_s=inp.arrival_s,
        )


def step(sessions: Sequence[VideoSession], inputs: Sequence[FrameInput]) -> list[FrameResult]:
    """The DFF step for one frame of each session (of one network), through batched stages.

    A segment's first frame is a key frame; for any other frame the session's policy may ask for one up front, or
    else the frame is propagated from its key frame (flow, warped key features) and the policy may still ask for
    one after seeing that. Key frames run the backbone; every frame's features run through the heads. Frames of
    one padded size share each stage's batch; the results equal separate steps within the golden tolerances.
    """
    if len(sessions) != len(inputs):
        raise InputError(f"{len(sessions)} sessions but {len(inputs)} frames")
    net = sessions[0].net
    if any(s.net is not net for s in sessions):
        raise InputError("sessions of different networks cannot step together")
    n = len(inputs)
    with torch.inference_mode():
        for s in sessions:
            s._land()
        imgs = [inp.img.to(net.device, non_blocking=True) for inp in inputs]
        frames = [Incoming(inp.frame_id, img, inp.meta.img_shape) for inp, img in zip(inputs, imgs, strict=True)]
        reasons = [s._before(f) for s, f in zip(sessions, frames, strict=True)]
        feats: list[torch.Tensor | None] = [None] * n
        flows: list[torch.Tensor | None] = [None] * n
        propagated = [i for i in range(n) if reasons[i] is None or sessions[i]._deferred(reasons[i])]
        for group in _batches(propagated, imgs, lambda i: sessions[i].run.propagation):
            propagate = sessions[group[0]].run.propagation or type(net).propagate
            key = KeyState.cat([sessions[i].key for i in group])
            f, flow = propagate(net, _cat([imgs[i] for i in group]), key, [frames[i].img_shape for i in group])
            for j, i in enumerate(group):
                feats[i], flows[i] = f[j : j + 1], None if flow is None else flow[j : j + 1]
        for i in propagated:
            if reasons[i] is None:
                reasons[i] = sessions[i]._after(frames[i], feats[i], flows[i])
        for i in range(n):
            if sessions[i]._deferred(reasons[i]):
                sessions[i]._request(imgs[i], frames[i], reasons[i], inputs[i].index)
                reasons[i] = None  # this frame itself keeps its propagated features
        keyed = [i for i in range(n) if reasons[i] is not None]
        for group in _batches(keyed, imgs):
            key = net.key_features(_cat([imgs[i] for i in group]), [frames[i].img_shape for i in group])
            for j, i in enumerate(group):
                sessions[i]._new_key(key[j], frames[i], reasons[i], inputs[i].index)
                feats[i], flows[i] = sessions[i].key.feats, None
        results: list[FrameResult | None] = [None] * n
        for group in _batches(list(range(n)), imgs):
            detections = net.detect(_cat([feats[i] for i in group]), [inputs[i].meta for i in group])
            for i, d in zip(group, detections, strict=True):
                results[i] = sessions[i]._result(d, inputs[i], reasons[i], flows[i])
    return results


def _batches(indices: list[int], imgs: Sequence[torch.Tensor], by: Any = None) -> list[list[int]]:
    """`indices` grouped by padded size (and by `by(i)` when given), each group in order."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i in indices:
        groups[(tuple(imgs[i].shape[-2:]), by(i) if by is not None else None)].append(i)
    return list(groups.values())


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Tensors stacked along the batch axis (one tensor is returned as it is, without a copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def frames_of(source: Source) -> Iterator[Frame]:
    """The frames of a `Source` in order, as `Frame`s (bare arrays get their position as index and no time); a
    path is opened with `dff.io.sources.open_source` and closed when iteration ends."""
    if isinstance(source, (str, os.PathLike)):
        return _source_frames(source)
    if isinstance(source, np.ndarray):
        if source.ndim == 3:
            return iter([Frame(0, None, source)])
        if source.ndim != 4:
            raise InputError(
                f"expected an HxWx3 uint8 BGR image or an NxHxWx3 array of frames, got shape {source.shape}"
            )
    return (f if isinstance(f, Frame) else Frame(i, None, f) for i, f in enumerate(source))


def _source_frames(source: str | os.PathLike) -> Iterator[Frame]:
    from dff.io.sources import open_source

    with open_source(source) as src:
        yield from src


def _config(preset: str | DFFConfig) -> DFFConfig:
    return preset if isinstance(preset, DFFConfig) else get_preset(preset)


def _on(net: DFF, device: str | torch.device) -> DFF:
    return net.to(resolve_device(device)).eval()


def build(preset: str | DFFConfig = "r50_dc5", device: str | torch.device = "cpu") -> DFFModel:
    """A model with freshly initialised (random) weights on `device`."""
    return DFFModel(_on(DFF(_config(preset)), device))


def load(
    path: str | os.PathLike, preset: str | DFFConfig | None = None, device: str | torch.device = "cpu"
) -> DFFModel:
    """Load an mmtracking `.pth` checkpoint (preset default r50_dc5), our `.safetensors` file, a `dff train`
    checkpoint (`latest.pth`, `epoch_K.pth`) or a zoo name (`dff_r50_dc5_imagenetvid`, ...: the official
    checkpoint, downloaded once and verified), its weights on `device` (runs place their network where
    `RunOptions.device` says); dff.checkpoint.read_model reads the file.

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
    return DFFModel(_on(net, device))
