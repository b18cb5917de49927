"""Faster R-CNN (single level, stride 16) and the DFF video detector that composes it with FlowNetSimple.

Module names mirror mmtracking's state dict: `detector.backbone`, `detector.neck`, `detector.rpn_head`,
`detector.roi_head.bbox_head`, `motion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dff.config import DFFConfig
from dff.data.transforms import ImageMeta
from dff.models.backbone import ResNetBackbone
from dff.models.flownet import FlowNetSimple
from dff.models.neck import ChannelMapper
from dff.models.roi_head import Detections, RoIHead
from dff.models.rpn import ProposalGenerator, RPNHead
from dff.models.warp import FlowWarp


class FasterRCNN(nn.Module):
    """backbone -> neck -> RPN -> RoI head, as mmdet's FasterRCNN with one feature level (modules injected)."""

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        rpn_head: nn.Module,
        proposal_generator: nn.Module,
        roi_head: nn.Module,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.proposal_generator = proposal_generator
        self.roi_head = roi_head

    @classmethod
    def from_config(cls, cfg: DFFConfig) -> FasterRCNN:
        """The detector of a preset, freshly initialised."""
        return cls(
            ResNetBackbone(cfg.backbone),
            ChannelMapper(cfg.backbone.out_channels, cfg.neck.out_channels),
            RPNHead(cfg.neck.out_channels, cfg.rpn),
            ProposalGenerator(cfg.rpn),
            RoIHead(cfg.neck.out_channels, cfg.num_classes, cfg.rpn.stride, cfg.roi),
        )

    def extract_feat(self, img: torch.Tensor) -> torch.Tensor:
        """(N, 3, Hp, Wp) normalised image -> (N, C, Hp/16, Wp/16) features."""
        return self.neck(self.backbone(img))

    def detect(self, feats: torch.Tensor, meta: ImageMeta) -> Detections:
        """Heads on one image's features (1, C, H, W) -> detections in original pixels."""
        logits, deltas = self.rpn_head(feats)
        proposals = self.proposal_generator(logits[0], deltas[0], meta.img_shape)
        return self.roi_head.detect(feats, proposals, meta.img_shape, meta.scale_factor)


@dataclass
class KeyFrameCache:
    """Per-video state: the last key frame's image tensor and features."""

    img: torch.Tensor | None = None
    feats: torch.Tensor | None = None


@dataclass
class FrameOutput:
    """Detections of one frame, whether it was a key frame, and the image-resolution flow used (if any)."""

    detections: Detections
    is_key_frame: bool
    flow: torch.Tensor | None


class DFF(nn.Module):
    """Deep Feature Flow: the backbone runs on key frames only; other frames warp the key features by flow."""

    def __init__(self, cfg: DFFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.detector = FasterRCNN.from_config(cfg)
        self.motion = FlowNetSimple(cfg.flow, cfg.preprocess.mean, cfg.preprocess.std)
        self.warp = FlowWarp()
        self.use_flow = True  # False: non-key frames reuse the key features unwarped (the zero-flow ablation)

    def features(
        self, img: torch.Tensor, meta: ImageMeta, is_key: bool, cache: KeyFrameCache
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The DFF step: key frame -> backbone features (cached); other frame -> flow to the key, warp."""
        if is_key:
            cache.img, cache.feats = img, self.detector.extract_feat(img)
            return cache.feats, None
        if not self.use_flow:
            return cache.feats, None
        flow = self.motion(torch.cat([img, cache.img], dim=1), meta.img_shape)
        return self.warp(cache.feats, flow), flow

    def forward(
        self, img: torch.Tensor, meta: ImageMeta, frame_id: int, key_interval: int, cache: KeyFrameCache
    ) -> FrameOutput:
        """One frame (1, 3, Hp, Wp) of a video at index `frame_id` -> its detections (frames in order)."""
        is_key = frame_id % key_interval == 0
        feats, flow = self.features(img, meta, is_key, cache)
        return FrameOutput(self.detector.detect(feats, meta), is_key, flow)
