"""Faster R-CNN (single level, stride 16) and the DFF video detector that composes it with FlowNetSimple.

Module names mirror mmtracking's state dict: `detector.backbone`, `detector.neck`, `detector.rpn_head`,
`detector.roi_head.bbox_head`, `motion`.

Spec pitfalls handled here: 14, 18 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dff.config import DFFConfig
from dff.data.transforms import ImageMeta, ImageShapes
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

    def detect(self, feats: torch.Tensor, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Heads on N images' features (N, C, H, W) -> each image's detections in original pixels."""
        logits, deltas = self.rpn_head(feats)
        proposals = [self.proposal_generator(logits[i], deltas[i], m.img_shape) for i, m in enumerate(metas)]
        return self.roi_head.detect(feats, proposals, metas)


@dataclass
class KeyState:
    """What the frames after a key frame need from it: its features and its image as the motion network takes it.

    Batched like the stages: row i belongs to the i-th frame (key states of different videos may be stacked)."""

    feats: torch.Tensor  # (N, C, Hp/16, Wp/16)
    motion: torch.Tensor  # (N, ...) the motion network's `encode_key` of the key image

    def __len__(self) -> int:
        return self.feats.shape[0]

    def __getitem__(self, i: int) -> KeyState:
        """The key state of row `i` alone (batch of one; views, no copy)."""
        return KeyState(self.feats[i : i + 1], self.motion[i : i + 1])

    @staticmethod
    def cat(states: Sequence[KeyState]) -> KeyState:
        """Key states stacked in order (one state is returned as it is, without a copy)."""
        if len(states) == 1:
            return states[0]
        return KeyState(torch.cat([s.feats for s in states]), torch.cat([s.motion for s in states]))


class DFF(nn.Module):
    """Deep Feature Flow as three stateless stages; the video loop (dff.api) decides which frames are key frames.

    key_features: backbone features of a key frame.   propagate: flow to the key frame, key features warped by it.
    detect: RPN and RoI heads on either.   Every stage takes a batch of N frames of one padded size, each with its
    own content size (`img_shapes`) or `ImageMeta`, and equals N separate calls. Modules are injected
    (`fast_network` swaps in fast kernels) or built from `cfg`. This class is the `Network` of the reference and
    fast backends (models/network.py).
    """

    def __init__(
        self,
        cfg: DFFConfig,
        detector: FasterRCNN | None = None,
        motion: nn.Module | None = None,
        warp: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.detector = detector or FasterRCNN.from_config(cfg)
        self.motion = motion or FlowNetSimple(cfg.flow, cfg.preprocess.mean, cfg.preprocess.std)
        self.warp = warp or FlowWarp()

    @property
    def device(self) -> torch.device:
        """Where the weights are (inputs are moved here by the video loop)."""
        return next(self.parameters(), next(self.buffers())).device

    def key_features(self, img: torch.Tensor, img_shapes: ImageShapes) -> KeyState:
        """Key frames (N, 3, Hp, Wp): their backbone features, and their images encoded for the motion network."""
        return KeyState(self.detector.extract_feat(img), self.motion.encode_key(img, img_shapes))

    def propagate(self, img: torch.Tensor, key: KeyState, img_shapes: ImageShapes) -> tuple[torch.Tensor, torch.Tensor]:
        """Other frames: flow (N, 2, Hp, Wp) to their key frames (row i to `key`'s row i), and the key features
        warped by it (N, C, h, w)."""
        flow = self.motion(img, key.motion, img_shapes)
        return self.warp(key.feats, flow), flow

    def detect(self, feats: torch.Tensor, metas: Sequence[ImageMeta]) -> list[Detections]:
        """N frames' features (N, C, h, w) -> each frame's detections in original-image pixels."""
        return self.detector.detect(feats, metas)
