"""The exported stages on onnxruntime: `ONNXNetwork` implements the network interface (models/network.py).

`dff.load("DIR/manifest.json")` returns a DFFModel whose weights are an ONNXNetwork: its runs use the onnx
backend, with the same video loop, key-frame policies, preprocessing, outputs and errors as any other. Every
stage runs in onnxruntime; on the host stay the preprocessing, the key-frame policy and the numpy copies between
the stages. Tensors cross as float32 / int64 CPU torch tensors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dff.config import DFFConfig
from dff.data.transforms import ImageMeta, ImageShapes, shapes_tensor
from dff.errors import CheckpointError, DFFError, InputError
from dff.export.manifest import STAGES, check_graph_file, check_graph_session, read_manifest
from dff.models.detector import KeyState
from dff.models.roi_head import Detections

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise DFFError('running an ONNX export needs onnxruntime: pip install "deep-feature-flow[onnx]"') from None
    return onnxruntime


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().float().numpy())


def _shapes(img_shapes: ImageShapes, n: int) -> np.ndarray:
    """Each frame's (h, w) as an (N, 2) int64 array (one shared pair repeated)."""
    return np.ascontiguousarray(np.broadcast_to(shapes_tensor(img_shapes).numpy(), (n, 2)))


class ONNXNetwork:
    """The three stage graphs of an export in onnxruntime sessions, with the network interface's stage methods;
    each stage runs once per batch of N frames (the graphs' batch axis)."""

    def __init__(self, manifest_path: str | os.PathLike, providers: list) -> None:
        ort = _onnxruntime()
        self.manifest_path = Path(manifest_path)
        self.manifest = read_manifest(self.manifest_path)
        self.cfg: DFFConfig = self.manifest.cfg
        self.fixed_size = self.manifest.fixed_size
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()  # as PyTorch's (OMP_NUM_THREADS)
        self.providers = providers
        self.sessions = {}
        for name in STAGES:
            file = check_graph_file(self.manifest, name)
            try:
                session = ort.InferenceSession(str(file), options, providers=providers)
            except Exception as e:  # onnxruntime raises its own exception types for unreadable models
                raise CheckpointError(f"{file}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
            check_graph_session(self.manifest, name, session)
            self.sessions[name] = session
        self._inputs = {name: {i.name for i in s.get_inputs()} for name, s in self.sessions.items()}

    def __repr__(self) -> str:
        return str(self.manifest_path)

    @property
    def device(self) -> torch.device:
        """Where the stages take their inputs: the CPU (onnxruntime copies them to its provider's device)."""
        return torch.device("cpu")

    @property
    def execution_device(self) -> torch.device:
        """The device of the first provider, chosen at load time (`load_onnx(..., device=)`)."""
        first = self.providers[0]
        if isinstance(first, tuple) and first[0] == CUDA:
            return torch.device("cuda", first[1].get("device_id", 0))
        return torch.device("cpu")

    def _run(self, stage: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        used = self._inputs[stage]
        return self.sessions[stage].run(None, {k: v for k, v in feed.items() if k in used})

    def _check_size(self, img: torch.Tensor) -> None:
        if self.fixed_size is not None and tuple(img.shape[-2:]) != self.fixed_size:
            h, w = self.fixed_size
            raise InputError(
                f"{self.manifest_path}: exported for a fixed {h}x{w} input, got a frame padded to "
                f"{img.shape[-2]}x{img.shape[-1]}"
            )

    def key_features(self, img: torch.Tensor, img_shapes: ImageShapes) -> KeyState:
        """key_features.onnx: the key states of key frames (N, 3, Hp, Wp)."""
        self._check_size(img)
        feats, motion = self._run("key_features", {"img": _np(img), "img_shape": _shapes(img_shapes, len(img))})
        return KeyState(torch.from_numpy(feats), torch.from_numpy(motion))

    def propagate(self, img: torch.Tensor, key: KeyState, img_shapes: ImageShapes) -> tuple[torch.Tensor, torch.Tensor]:
        """propagate.onnx: the key features warped to these frames (N, C, h, w) and the flow (N, 2, Hp, Wp)."""
        self._check_size(img)
        feed = {
            "img": _np(img),
            "key_feats": _np(key.feats),
            "key_motion": _np(key.motion),
            "img_shape": _shapes(img_shapes, len(img)),
        }
        feats, flow = self._run("propagate", feed)
        return torch.from_numpy(feats), torch.from_numpy(flow)

    def detect(self, feats: torch.Tensor, metas: Sequence[ImageMeta]) -> list[Detections]:
        """detect.onnx: each frame's detections in original-image pixels, sorted by descending score (the graph
        returns them by image, `batch_index`)."""
        feed = {
            "feats": _np(feats),
            "img_shape": np.asarray([m.img_shape for m in metas], dtype=np.int64).reshape(-1, 2),
            "scale_factor": np.asarray([m.scale_factor for m in metas], dtype=np.float32).reshape(-1, 4),
        }
        boxes, scores, labels, image = self._run("detect", feed)
        ends = np.cumsum(np.bincount(image, minlength=len(metas)))[:-1]
        return [
            Detections(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(lb))
            for b, s, lb in zip(np.split(boxes, ends), np.split(scores, ends), np.split(labels, ends), strict=True)
        ]


def providers_for(device: str | torch.device) -> list[str]:
    """onnxruntime providers for a device: CPU, or CUDA (then CPU for what CUDA lacks); DFFError if unavailable."""
    ort = _onnxruntime()
    device = torch.device(device)
    if device.type == "cpu":
        return [CPU]
    if device.type == "cuda":
        if CUDA not in ort.get_available_providers():
            raise DFFError(
                "device 'cuda' requested but this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
            )
        return [(CUDA, {"device_id": device.index or 0}), CPU]
    raise DFFError(f"device {device.type!r} is not supported by the ONNX runner (cpu or cuda)")


def load_onnx(
    path: str | os.PathLike, preset: str | DFFConfig | None = None, device: str | torch.device = "cpu"
) -> ONNXNetwork:
    """An export (`DIR/manifest.json`) on onnxruntime; `preset`, when given, must be the one it was exported from."""
    net = ONNXNetwork(path, providers_for(device))
    if preset is not None:
        name = preset.name if isinstance(preset, DFFConfig) else preset
        if name != net.cfg.name:
            raise CheckpointError(f"{path}: exported from preset {net.cfg.name!r}, not {name!r}")
    return net
