"""The fast path, derived from the reference: `fast_network(net, device, dtype)` is the same DFF with fast kernels
swapped in.

A module-replacement pass over the reference network (as YOLOX's `fuse_model`): the result is a `DFF` with the same
three stages and the same `KeyState`, whose modules are inference-only equivalents of the reference's, chosen per
device from `KERNELS` (on CPU, oneDNN-packed convs and multi-threaded embedding-bag kernels; on CUDA, the standard
cuDNN / torchvision ops in channels_last):

| module | replaced by | CPU kernel | CUDA kernel |
|---|---|---|---|
| detector.backbone | FastResNet (BN folded in float64, fused ReLU / residual add) | PackedConv | FusedConv |
| detector.neck | FastChannelMapper (conv + ReLU) | PackedConv | FusedConv |
| detector.rpn_head | FastRPNHead (rpn_cls and rpn_reg as one 1x1 conv) | PackedConv | FusedConv |
| detector.roi_head.roi_align | - | ChannelsLastRoIAlign (embedding bag) | torchvision RoIAlign |
| detector.roi_head.bbox_head | FastBBoxHead (bin-major FC1, fused FC + ReLU) | PackedLinear | FusedLinear |
| motion | FastFlowNet (each image prepared alone; the key's half of conv1 once per key) | PackedConv | FusedConv |
| warp | - | FastFlowWarp (embedding bag) | FlowWarp (grid_sample) |

Proposal generation and the RoI post-processing (one NMS, models/nms.py) are shared, not replaced. In fp32 the
fast network's detections equal the reference's within the golden tolerances (tests/test_fast_path.py, which also
runs the CUDA table's kernels on CPU tensors); `dtype` bf16 / fp16 follows the policy of models/precision.py. The
source network is not modified: training keeps its BatchNorm modules, and `model.net` stays the
mmtracking-equivalent reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from dff.config import DFFConfig
from dff.models.detector import DFF, FasterRCNN
from dff.models.fast_heads import ChannelsLastRoIAlign, FastBBoxHead, FastRPNHead
from dff.models.fast_trunks import FastChannelMapper, FastFlowNet, FastFlowWarp, FastResNet
from dff.models.packed import FusedConv, FusedLinear, PackedConv, PackedLinear
from dff.models.roi_head import RoIHead
from dff.models.warp import FlowWarp


@dataclass(frozen=True)
class Kernels:
    """The kernels of one device: conv and FC kinds, RoIAlign (output size, spatial scale, sampling ratio) and warp."""

    conv: type[FusedConv]
    linear: type[FusedLinear]
    roi_align: Callable[[int, float, int], nn.Module]
    warp: Callable[[], nn.Module]


def _torchvision_roi_align(output_size: int, spatial_scale: float, sampling_ratio: int) -> nn.Module:
    return torchvision.ops.RoIAlign(output_size, spatial_scale, sampling_ratio, aligned=True)


KERNELS = {
    "cpu": Kernels(PackedConv, PackedLinear, ChannelsLastRoIAlign, FastFlowWarp),
    "cuda": Kernels(FusedConv, FusedLinear, _torchvision_roi_align, FlowWarp),
}
"""Device type -> its kernels (a device type not listed runs the CUDA column: standard ops only)."""


# Modules whose inputs and outputs are the same in the fast network as in the reference: forward hooks registered
# on these modules of `model.net` also run on the fast one (motion's inputs differ, so not its pre-hooks).
STAGES = (
    "detector.backbone",
    "detector.neck",
    "detector.rpn_head",
    "detector.proposal_generator",
    "detector.roi_head",
    "motion",
    "warp",
)
_PRE_HOOK_STAGES = tuple(s for s in STAGES if s != "motion")
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called")
_PRE_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


def _fast_roi_head(head: RoIHead, net_cfg: DFFConfig, kernels: Kernels) -> RoIHead:
    cfg = head.cfg
    return RoIHead(
        net_cfg.neck.out_channels,
        head.num_classes,
        net_cfg.rpn.stride,
        cfg,
        roi_align=kernels.roi_align(cfg.output_size, head.spatial_scale, cfg.sampling_ratio),
        bbox_head=FastBBoxHead(head.bbox_head, cfg.output_size, kernels.linear),
    )


def fast_network(
    net: DFF,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    kernels: Kernels | None = None,
) -> DFF:
    """The fast inference network of `net` on `device` (default: net's) with weights in `dtype`, its kernels
    `KERNELS[device type]` unless `kernels` are given; eval mode; `net` is unchanged."""
    device = torch.device(device) if device is not None else net.device
    kernels = kernels or KERNELS.get(device.type, KERNELS["cuda"])
    det = net.detector
    with torch.no_grad():
        fast = DFF(
            net.cfg,
            detector=FasterRCNN(
                FastResNet(det.backbone, kernels.conv),
                FastChannelMapper(det.neck, kernels.conv),
                FastRPNHead(det.rpn_head, kernels.conv),
                det.proposal_generator,
                _fast_roi_head(det.roi_head, net.cfg, kernels),
            ),
            motion=FastFlowNet(net.motion, kernels.conv),
            warp=kernels.warp(),
        )
    fast = fast.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if device.type != "cpu":
        fast = fast.to(memory_format=torch.channels_last)
    share_stage_hooks(net, fast)
    return fast


def share_stage_hooks(src: nn.Module, dst: nn.Module) -> None:
    """Make hooks on src's STAGES modules (registered before or after this call) also run on dst's."""
    src_modules, dst_modules = dict(src.named_modules()), dict(dst.named_modules())
    for name in STAGES:
        s, d = src_modules[name], dst_modules[name]
        if s is d:
            continue
        for attr in _HOOK_DICTS + (_PRE_HOOK_DICTS if name in _PRE_HOOK_STAGES else ()):
            if hasattr(s, attr):
                setattr(d, attr, getattr(s, attr))


def unshared_hooks(net: nn.Module) -> list[str]:
    """Names of modules of `net` with hooks that the fast network would not run (so the reference path must)."""
    found = []
    for name, m in net.named_modules():
        post = name in STAGES
        pre = name in _PRE_HOOK_STAGES
        if (
            (not post and any(getattr(m, a, None) for a in _HOOK_DICTS))
            or (not pre and any(getattr(m, a, None) for a in _PRE_HOOK_DICTS))
            or m._backward_hooks
        ):
            found.append(name or "<root>")
    return found


def weights_version(net: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of `net` is replaced or modified in place (e.g. by an optimizer)."""
    return tuple((id(t), t._version) for t in (*net.parameters(), *net.buffers()))
