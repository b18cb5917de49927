"""What a `--weights` names, loaded: a checkpoint or zoo name (dff.api.load) or an ONNX export's manifest
(dff.export.runtime.load_onnx). This is `dff.load`; it sits above both, so neither imports the other."""

from __future__ import annotations

import os

import torch

from dff import api
from dff.config import DFFConfig
from dff.export.runtime import load_onnx


def load(
    path: str | os.PathLike, preset: str | DFFConfig | None = None, device: str | torch.device = "cpu"
) -> api.DFFModel:
    """An mmtracking `.pth`, our `.safetensors`, a zoo name, or `DIR/manifest.json` of `dff export` (run on
    onnxruntime); see dff.api.load and dff.export.runtime.load_onnx."""
    if os.fspath(path).lower().endswith(".json"):
        return api.DFFModel(load_onnx(path, preset, device))
    return api.load(path, preset, device)
