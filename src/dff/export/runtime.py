"""The exported stages on onnxruntime: `ONNXNetwork` implements the network interface (models/network.py).

`dff.load("DIR/manifest.json")` returns a DFFModel whose weights are an ONNXNetwork: its runs use the onnx
backend, with the same video loop, key-frame policies, preprocessing, outputs and errors as any other. Every
stage runs in onnxruntime; on the host stay the preprocessing, the key-frame policy and the numpy copies between
the stages. Tensors cross as float32 / int64 CPU torch tensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from dff.config import DFFConfig
from dff.data.transforms import ImageMeta, ImageShapes, shapes_tensor
from dff.errors import CheckpointError, DFFError, InputError
from dff.export.onnx import FORMAT, FORMAT_VERSION, STAGES
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


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of an export, checked for its format and version and for the presence of each .onnx file."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f'{path}: not a dff ONNX manifest (no "format": "{FORMAT}")')
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: manifest format version {version!r}; this dff reads version {FORMAT_VERSION} (export again)"
        )
    for name in STAGES:
        file = path.parent / manifest["stages"][name]["file"]
        if not file.is_file():
            raise CheckpointError(f"{path}: missing {file.name} (expected beside the manifest)")
    return manifest


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().float().numpy())


def _shape(img_shape: tuple[int, int]) -> np.ndarray:
    return np.asarray([int(img_shape[0]), int(img_shape[1])], dtype=np.int64)


class ONNXNetwork:
    """The three stage graphs of an export in onnxruntime sessions, with the network interface's stage methods."""

    def __init__(self, manifest_path: str | os.PathLike, providers: list) -> None:
        ort = _onnxruntime()
        self.manifest_path = Path(manifest_path)
        self.manifest = read_manifest(self.manifest_path)
        self.cfg = DFFConfig.from_dict(self.manifest["config"])
        fixed = self.manifest.get("fixed_size")
        self.fixed_size = tuple(fixed) if fixed else None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()  # as PyTorch's (OMP_NUM_THREADS)
        self.providers = providers
        self.sessions = {}
        for name in STAGES:
            file = self.manifest_path.parent / self.manifest["stages"][name]["file"]
            try:
                self.sessions[name] = ort.InferenceSession(str(file), options, providers=providers)
            except Exception as e:  # onnxruntime raises its own exception types for unreadable models
                raise CheckpointError(f"{file}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
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
        shapes = _shapes(img_shapes, len(img))
        feeds = [{"img": _np(img[i : i + 1]), "img_shape": shapes[i]} for i in range(len(img))]
        rows = [self._run("key_features", feed) for feed in feeds]
        return KeyState(_stack(r[0] for r in rows), _stack(r[1] for r in rows))

    def propagate(self, img: torch.Tensor, key: KeyState, img_shapes: ImageShapes) -> tuple[torch.Tensor, torch.Tensor]:
        """propagate.onnx: the key features warped to these frames (N, C, h, w) and the flow (N, 2, Hp, Wp)."""
        self._check_size(img)
        shapes = _shapes(img_shapes, len(img))
        rows = [
            self._run(
                "propagate",
                {
                    "img": _np(img[i : i + 1]),
                    "key_feats": _np(key.feats[i : i + 1]),
                    "key_motion": _np(key.motion[i : i + 1]),
                    "img_shape": shapes[i],
                },
            )
            for i in range(len(img))
        ]
        return _stack(r[0] for r in rows), _stack(r[1] for r in rows)

    def detect(self, feats: torch.Tensor, metas: Sequence[ImageMeta]) -> list[Detections]:
        """detect.onnx: each frame's detections in original-image pixels, sorted by descending score."""
        out = []
        for i, meta in enumerate(metas):
            feed = {
                "feats": _np(feats[i : i + 1]),
                "img_shape": _shape(meta.img_shape),
                "scale_factor": np.asarray(meta.scale_factor, dtype=np.float32),
            }
            boxes, scores, labels = self._run("detect", feed)
            out.append(
                Detections(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels.astype(np.int64)))
            )
        return out


def _shapes(img_shapes: ImageShapes, n: int) -> list[np.ndarray]:
    shapes = shapes_tensor(img_shapes).numpy()
    return [shapes[i if len(shapes) > 1 else 0] for i in range(n)]


def _stack(arrays: Iterable[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(list(arrays)))


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
