"""Typed configuration: one frozen dataclass per component and named presets.

Every constant of the mmtracking-compatible presets comes from docs/mmtracking_spec.md
(§1.1-1.3, 2.5-2.6, 3.3-3.5); nothing is inherited from elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from dff.classes import VID_CLASSES
from dff.errors import DFFError

KEY_INTERVAL = 10
"""mmtracking's key frame interval (its configs' test `frame_stride`): the default of every key-frame schedule."""

BackboneArch = Literal["resnet18", "resnet50", "resnet101", "resnext101_64x4d"]


@dataclass(frozen=True)
class BackboneConfig:
    """A torchvision ResNet/ResNeXt truncated after layer4, with layer4 dilated (stride 16, "DC5").

    Light presets may stop after layer3 (natively stride 16) or dilate layer3 too (`output_stride` 8).
    """

    arch: BackboneArch = "resnet50"
    frozen_stages: int = 1  # stem + layer1 frozen, as mmdet's frozen_stages=1
    num_stages: int = 4  # 4: up to a dilated layer4 (DC5); 3: up to layer3
    output_stride: int = 16  # 8 only with num_stages 3: layer3 dilated instead of strided

    def __post_init__(self) -> None:
        if self.output_stride not in (8, 16) or (self.output_stride == 8 and self.num_stages != 3):
            raise DFFError(
                f"backbone output_stride {self.output_stride} with num_stages {self.num_stages}: "
                "supported are stride 16, and stride 8 with num_stages 3"
            )

    @property
    def out_channels(self) -> int:
        """Channels of the last stage's output."""
        per_stage = 64 if self.arch == "resnet18" else 256
        return per_stage * 2 ** (self.num_stages - 1)


@dataclass(frozen=True)
class NeckConfig:
    """mmdet ChannelMapper: ReLU(conv3x3(C5 -> out_channels))."""

    out_channels: int = 512


@dataclass(frozen=True)
class RPNConfig:
    """Single-level RPN (stride 16: the backbone's output stride), mmdet's unrounded anchors and proposal filtering."""

    stride: int = 16
    anchor_base_size: int = 16
    anchor_scales: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    feat_channels: int = 512
    nms_iou: float = 0.7
    test_nms_pre: int = 6000
    test_max_per_img: int = 300
    train_nms_pre: int = 6000
    train_max_per_img: int = 1000
    pos_iou: float = 0.7
    neg_iou: float = 0.3
    min_pos_iou: float = 0.3
    num_samples: int = 256
    pos_fraction: float = 0.5
    smooth_l1_beta: float = 1.0 / 9.0

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_scales) * len(self.anchor_ratios)


@dataclass(frozen=True)
class RoIConfig:
    """RoIAlign 7x7 (aligned, sampling 2) + Shared2FC box head, background class last."""

    output_size: int = 7
    sampling_ratio: int = 2
    fc_channels: int = 1024
    target_stds: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.2)
    score_thr: float = 1e-4
    nms_iou: float = 0.5
    max_per_img: int = 100
    pos_iou: float = 0.5
    neg_iou: float = 0.5
    min_pos_iou: float = 0.5
    match_low_quality: bool = True
    num_samples: int = 512
    pos_fraction: float = 0.25
    smooth_l1_beta: float = 1.0


@dataclass(frozen=True)
class FlowConfig:
    """FlowNetSimple on a half-resolution pair; output x8 upsampled and scaled by 8 * flow_scale_factor."""

    img_scale_factor: float = 0.5
    flow_scale_factor: float = 5.0
    mean: tuple[float, float, float] = (0.411, 0.432, 0.450)  # RGB, on x / 255
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    width_mult: float = 1.0  # 1.0 = the mmtracking FlowNetSimple; smaller for light presets


@dataclass(frozen=True)
class PreprocessConfig:
    """mmtracking's test pipeline: keep-ratio resize into `scale`, normalise (RGB), pad to `size_divisor`."""

    scale: tuple[int, int] = (1000, 600)  # (long edge max, short edge max)
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisor: int = 16


@dataclass(frozen=True)
class TrainConfig:
    """The mmtracking DFF recipe (docs/mmtracking_spec.md §1.1, 1.7, 2.3-2.4)."""

    lr_per_8_images: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip_norm: float = 35.0
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3.0
    lr_steps: tuple[int, ...] = (2, 5)
    lr_gamma: float = 0.1
    epochs: int = 7
    frame_range: int = 9
    flip_ratio: float = 0.5
    min_img_size: int = 32
    flow_lr_mult: float = 1.0  # the FlowNet's LR relative to the rest (mmtracking: one LR for all)


@dataclass(frozen=True)
class DFFConfig:
    """Everything that defines a DFF model; presets below are complete instances."""

    name: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi: RoIConfig = field(default_factory=RoIConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    key_interval: int = KEY_INTERVAL  # the test-time key frame schedule of mmtracking's configs
    class_names: tuple[str, ...] = VID_CLASSES

    def __post_init__(self) -> None:
        if self.rpn.stride != self.backbone.output_stride:
            raise DFFError(
                f"config {self.name!r}: rpn stride {self.rpn.stride} differs from the backbone's "
                f"output stride {self.backbone.output_stride}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DFFConfig:
        """Inverse of :meth:`to_dict`."""
        sub = {
            "backbone": BackboneConfig,
            "neck": NeckConfig,
            "rpn": RPNConfig,
            "roi": RoIConfig,
            "flow": FlowConfig,
            "preprocess": PreprocessConfig,
            "train": TrainConfig,
        }
        kwargs = {}
        for k, v in d.items():
            if k in sub:
                kwargs[k] = sub[k](**{kk: tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()})
            elif isinstance(v, list):
                kwargs[k] = tuple(v)
            else:
                kwargs[k] = v
        return cls(**kwargs)


def r50_dc5() -> DFFConfig:
    """mmtracking dff_faster_rcnn_r50_dc5_1x_imagenetvid (box AP@50 70.3)."""
    return DFFConfig(name="r50_dc5", backbone=BackboneConfig(arch="resnet50"))


def r101_dc5() -> DFFConfig:
    """mmtracking dff_faster_rcnn_r101_dc5_1x_imagenetvid (box AP@50 73.5)."""
    return DFFConfig(name="r101_dc5", backbone=BackboneConfig(arch="resnet101"))


def x101_dc5() -> DFFConfig:
    """mmtracking dff_faster_rcnn_x101_dc5_1x_imagenetvid (box AP@50 75.5)."""
    return DFFConfig(name="x101_dc5", backbone=BackboneConfig(arch="resnext101_64x4d"))


def tiny_synthetic() -> DFFConfig:
    """A light DFF for CPU: ResNet-18 up to layer3 (stride 16), narrow heads, a quarter-width FlowNet, 320x192 input.

    Trained on the synthetic ILSVRC-format set; its weights ship with the package for `dff demo`.
    Training differs from the mmtracking recipe only where 2 CPU cores and a random init need it (see
    docs/training.md): 128 sampled RoIs and 1000 pre-NMS / 300 training proposals (CPU time), a larger learning
    rate (0.08 per 8 pairs), a 200-iteration warm-up and 12 epochs with one step (no ImageNet weights). The
    FlowNet starts pre-trained, as mmtracking's does, and keeps mmtracking's rate per image (0.01 per 8 pairs,
    hence `flow_lr_mult` 0.125): at the detector's rate the end-to-end step undoes its pre-training.
    """
    return DFFConfig(
        name="tiny_synthetic",
        backbone=BackboneConfig(arch="resnet18", num_stages=3),
        neck=NeckConfig(out_channels=64),
        rpn=RPNConfig(
            anchor_scales=(2.0, 4.0, 8.0, 16.0),
            feat_channels=64,
            train_nms_pre=1000,
            train_max_per_img=300,
        ),
        roi=RoIConfig(fc_channels=256, num_samples=128),
        flow=FlowConfig(width_mult=0.25),
        preprocess=PreprocessConfig(scale=(320, 192)),
        train=TrainConfig(lr_per_8_images=0.08, warmup_iters=200, lr_steps=(9,), epochs=12, flow_lr_mult=0.125),
    )


PRESETS = {"r50_dc5": r50_dc5, "r101_dc5": r101_dc5, "x101_dc5": x101_dc5, "tiny_synthetic": tiny_synthetic}


def preset(name: str) -> DFFConfig:
    """The named preset's config; raises DFFError listing the known names."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise DFFError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
