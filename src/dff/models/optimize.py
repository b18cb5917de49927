"""The fast inference network: `optimize(net)` builds a separate, inference-only copy of a DFF network.

The copy has BatchNorm folded into the convs, oneDNN-packed convs with fused activations and residual adds,
channels_last activations, a FlowNet that reuses the key frame's half of conv1, the warp and RoIAlign as
multi-threaded weighted embedding bags, and NMS stopped at the number of boxes kept (see fast_trunks.py and
fast_heads.py). In fp32 its detections equal the
reference network's within the golden tolerances (tests/test_benchmark_optimize.py). The source network is not
modified: training keeps its BatchNorm modules, and `model.net` stays the mmtracking-equivalent reference.

`dtype=torch.bfloat16` / `torch.float16` casts the copy's weights and activations (opt-in: it changes numbers);
proposals, box decoding, NMS and the warp grid stay in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dff.config import DFFConfig
from dff.data.transforms import ImageMeta
from dff.models.detector import DFF, FasterRCNN, FrameOutput, KeyFrameCache
from dff.models.fast_heads import FastProposalGenerator, FastRoIHead, FastRPNHead
from dff.models.fast_trunks import (
    FastChannelMapper,
    FastFlowNet,
    FastFlowWarp,
    FastResNet,
)

# Modules whose inputs and outputs are the same in the fast copy as in the reference network: forward hooks
# registered on these modules of `model.net` also run on the copy (motion's inputs differ, so not its pre-hooks).
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


def fast_detector(detector: FasterRCNN, cfg: DFFConfig) -> FasterRCNN:
    """The detector part of the fast copy: the same FasterRCNN composition with inference-only modules."""
    return FasterRCNN(
        FastResNet(detector.backbone),
        FastChannelMapper(detector.neck),
        FastRPNHead(detector.rpn_head),
        FastProposalGenerator(cfg.rpn),
        FastRoIHead(detector.roi_head),
    )


@dataclass
class FastKeyFrameCache(KeyFrameCache):
    """KeyFrameCache plus what non-key frames reuse: the key image's 2x2 mean (if the preprocessing made it) and its
    part of FlowNet's conv1 (made at the first non-key frame)."""

    img_half: torch.Tensor | None = None
    flow_key: torch.Tensor | None = None


class FastDFF(nn.Module):
    """Inference-only DFF with the same `forward(img, meta, frame_id, key_interval, cache)` as DFF; `img_half`, the
    image's 2x2 mean made during preprocessing, saves FlowNet that step."""

    def __init__(self, net: DFF, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.cfg = net.cfg
        self.use_flow = getattr(net, "use_flow", True)
        self.dtype = dtype
        self.detector = fast_detector(net.detector, net.cfg)
        self.motion = FastFlowNet(net.motion)
        self.warp = FastFlowWarp()
        self.to(dtype=dtype)

    def new_cache(self) -> FastKeyFrameCache:
        return FastKeyFrameCache()

    def features(
        self,
        img: torch.Tensor,
        meta: ImageMeta,
        is_key: bool,
        cache: FastKeyFrameCache,
        img_half: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Key frame -> backbone features (cached); other frame -> FlowNet flow to the key frame, warped features."""
        if is_key:
            cache.img, cache.img_half, cache.feats = img, img_half, self.detector.extract_feat(img)
            cache.flow_key = None
            return cache.feats, None
        if not self.use_flow:
            return cache.feats, None
        flow = self.motion(img, meta.img_shape, cache, img_half).float()
        return self.warp(cache.feats, flow), flow

    def forward(
        self,
        img: torch.Tensor,
        meta: ImageMeta,
        frame_id: int,
        key_interval: int,
        cache: FastKeyFrameCache,
        img_half: torch.Tensor | None = None,
    ) -> FrameOutput:
        is_key = frame_id % key_interval == 0
        img = img.to(dtype=self.dtype, memory_format=torch.channels_last)
        feats, flow = self.features(img, meta, is_key, cache, img_half)
        return FrameOutput(self.detector.detect(feats, meta), is_key, flow)


def optimize(net: DFF, dtype: torch.dtype = torch.float32) -> FastDFF:
    """The fast inference copy of `net` (in eval mode, on net's device); `net` itself is left unchanged."""
    with torch.no_grad():
        fast = FastDFF(net, dtype).eval()
    share_stage_hooks(net, fast)
    return fast


def share_stage_hooks(src: nn.Module, dst: nn.Module) -> None:
    """Make hooks on src's STAGES modules (registered before or after this call) also run on dst's."""
    src_modules, dst_modules = dict(src.named_modules()), dict(dst.named_modules())
    for name in STAGES:
        s, d = src_modules[name], dst_modules[name]
        for attr in _HOOK_DICTS + (_PRE_HOOK_DICTS if name in _PRE_HOOK_STAGES else ()):
            if hasattr(s, attr):
                setattr(d, attr, getattr(s, attr))


def unshared_hooks(net: nn.Module) -> list[str]:
    """Names of modules of `net` with hooks that the fast copy would not run (so the reference path must)."""
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
