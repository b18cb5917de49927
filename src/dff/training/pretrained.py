"""Initialisation of a DFF from local pretrained files: an ImageNet ResNet/ResNeXt and FlowNetSimple.

Nothing is downloaded. The files the mmtracking recipe starts from (docs/mmtracking_spec.md §1.1-1.2) are:

- R-18 (tiny preset): https://download.pytorch.org/models/resnet18-f37072fd.pth
- R-50 (`torchvision://resnet50`): https://download.pytorch.org/models/resnet50-0676ba61.pth
- R-101 (`torchvision://resnet101`): https://download.pytorch.org/models/resnet101-63fe2227.pth
- X-101-64x4d (`open-mmlab://resnext101_64x4d`):
  https://download.openmmlab.com/pretrain/third_party/resnext101_64x4d-ee2c6f71.pth
- FlowNetSimple: https://download.openmmlab.com/mmtracking/pretrained_weights/flownet_simple.pth

Files are read with `torch.load(weights_only=True)` (via :func:`dff.checkpoint.read_pth`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from dff.checkpoint import read_pth
from dff.errors import CheckpointError
from dff.models.detector import DFF

log = logging.getLogger(__name__)


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Copy the entries of `state` that `module` has; every parameter of `module` must be present and fit."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        problems = ([f"{len(missing)} missing ({', '.join(missing[:5])}...)"] if missing else []) + (
            [f"{len(wrong)} mis-shaped ({', '.join(wrong[:5])})"] if wrong else []
        )
        raise CheckpointError(f"{path}: not {what} weights for this preset: " + "; ".join(problems))
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    log.info("initialised %s from %s (%d tensors)", what, path, sum(k in state for k in own))


def load_backbone(net: DFF, path: Path) -> None:
    """ImageNet classification weights (torchvision or open-mmlab layout) into `net.detector.backbone`."""
    state, _ = read_pth(Path(path))
    _load_into(net.detector.backbone, _strip(state, ("backbone.", "module.")), Path(path), "an ImageNet ResNet")


def load_flownet(net: DFF, path: Path) -> None:
    """FlowNetSimple weights (mmtracking `flownet_simple.pth`, keys with or without `motion.`) into `net.motion`."""
    state, _ = read_pth(Path(path))
    _load_into(net.motion, _strip(state, ("motion.",)), Path(path), "FlowNetSimple")
