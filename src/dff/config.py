"""Typed configuration: one frozen dataclass per component and named presets.

Every constant of the mmtracking-compatible presets comes from docs/mmtracking_spec.md
(§1.1-1.3, 2.5-2.6, 3.3-3.5); nothing is inherited from elsewhere.
"""

from __future__ import annotations

import dataclasses
import math
import typing
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
        """Inverse of :meth:`to_dict`, for a config read from a file: every field is checked against the schema
        (`SCHEMA`: its type, and its range or allowed values) and a missing or unknown field is refused, except the
        fields added after the first saved files (`ADDED_LATER`), which take their defaults. Raises DFFError naming
        the field ("config field preprocess.size_divisor: must be an integer in [1, 1024], got 0")."""
        return _read(cls, d, "")


def _shown(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


@dataclass(frozen=True)
class Bound:
    """An interval of allowed numbers, closed unless `low_open`; for a tuple field, of each element."""

    low: float
    high: float
    low_open: bool = False

    def holds(self, x: float) -> bool:
        return (self.low < x if self.low_open else self.low <= x) and x <= self.high

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


UNIT, POSITIVE_UNIT = Bound(0, 1), Bound(0, 1, low_open=True)
CHANNELS = Bound(1, 2048)  # the widest layer a file may ask for (mmtracking's presets: 512 / 1024)
PROPOSALS = Bound(1, 100_000)
SCHEMA: dict[str, Bound | tuple] = {
    "backbone.frozen_stages": Bound(-1, 4),
    "backbone.num_stages": (3, 4),
    "backbone.output_stride": (8, 16),
    "neck.out_channels": CHANNELS,
    "rpn.stride": (8, 16),
    "rpn.anchor_base_size": Bound(1, 1024),
    "rpn.anchor_scales": Bound(0, 1024, low_open=True),
    "rpn.anchor_ratios": Bound(0, 100, low_open=True),
    "rpn.feat_channels": CHANNELS,
    "rpn.nms_iou": POSITIVE_UNIT,
    "rpn.test_nms_pre": PROPOSALS,
    "rpn.test_max_per_img": PROPOSALS,
    "rpn.train_nms_pre": PROPOSALS,
    "rpn.train_max_per_img": PROPOSALS,
    "rpn.pos_iou": UNIT,
    "rpn.neg_iou": UNIT,
    "rpn.min_pos_iou": UNIT,
    "rpn.num_samples": PROPOSALS,
    "rpn.pos_fraction": UNIT,
    "rpn.smooth_l1_beta": Bound(0, 1000),
    "roi.output_size": Bound(1, 32),
    "roi.sampling_ratio": Bound(1, 16),
    "roi.fc_channels": CHANNELS,
    "roi.target_stds": Bound(0, 100, low_open=True),
    "roi.score_thr": UNIT,
    "roi.nms_iou": POSITIVE_UNIT,
    "roi.max_per_img": Bound(1, 10_000),
    "roi.pos_iou": UNIT,
    "roi.neg_iou": UNIT,
    "roi.min_pos_iou": UNIT,
    "roi.num_samples": PROPOSALS,
    "roi.pos_fraction": UNIT,
    "roi.smooth_l1_beta": Bound(0, 1000),
    "flow.img_scale_factor": (0.5,),  # the FlowNet's half-resolution input (the fast path's 2x2 mean)
    "flow.flow_scale_factor": Bound(0, 1000, low_open=True),
    "flow.mean": Bound(-1e4, 1e4),
    "flow.std": Bound(0, 1e4, low_open=True),
    "flow.width_mult": Bound(0, 2, low_open=True),
    "preprocess.scale": Bound(1, 8192),
    "preprocess.mean": Bound(-1e4, 1e4),
    "preprocess.std": Bound(0, 1e4, low_open=True),
    "preprocess.size_divisor": Bound(1, 1024),
    "train.lr_per_8_images": Bound(0, 100, low_open=True),
    "train.momentum": UNIT,
    "train.weight_decay": UNIT,
    "train.grad_clip_norm": Bound(0, 1e6, low_open=True),
    "train.warmup_iters": Bound(0, 10_000_000),
    "train.warmup_ratio": POSITIVE_UNIT,
    "train.lr_steps": Bound(0, 1_000_000),
    "train.lr_gamma": POSITIVE_UNIT,
    "train.epochs": Bound(1, 1_000_000),
    "train.frame_range": Bound(0, 1000),
    "train.flip_ratio": UNIT,
    "train.min_img_size": Bound(1, 8192),
    "train.flow_lr_mult": Bound(0, 1000),
    "key_interval": Bound(1, 100_000),
}
"""Allowed values of the numeric fields (a Bound, or a tuple of the values allowed), by their dotted name."""

LENGTHS = {"rpn.anchor_scales": (1, 16), "rpn.anchor_ratios": (1, 16), "train.lr_steps": (0, 100)}
"""(fewest, most) elements of the variable-length tuple fields (`class_names`: `MAX_CLASSES`)."""
MAX_CLASSES = 10_000

ADDED_LATER = {"backbone.output_stride", "train.flow_lr_mult"}
"""Fields that files saved before they existed lack; their defaults are what those files meant."""


def _number(where: str, value: object, kind: type) -> int | float:
    """`value` as an int or a finite float (JSON numbers; bools are not numbers), else DFFError."""
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    name = "an integer" if kind is int else "a finite number"
    raise DFFError(f"config field {where}: must be {name}, got {_shown(value)}")


def _in_schema(where: str, x: int | float) -> None:
    rule = SCHEMA.get(where)
    if isinstance(rule, Bound) and not rule.holds(x):
        raise DFFError(f"config field {where}: must be in {rule}, got {_shown(x)}")
    if isinstance(rule, tuple) and x not in rule:
        raise DFFError(f"config field {where}: must be one of {', '.join(map(str, rule))}, got {_shown(x)}")


def _value(where: str, value: object, hint: object) -> object:
    """`value` checked against the field's type `hint` and its SCHEMA entry."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise DFFError(f"config field {where}: must be a non-empty string, got {_shown(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise DFFError(f"config field {where}: must be true or false, got {_shown(value)}")
        return value
    if origin is Literal:
        if value not in args:
            raise DFFError(f"config field {where}: must be one of {', '.join(args)}, got {_shown(value)}")
        return value
    if hint in (int, float):
        x = _number(where, value, hint)
        _in_schema(where, x)
        return x
    # a tuple: tuple[X, ...] of any length, or tuple[X, X, ...] of a fixed one
    if not isinstance(value, (list, tuple)):
        raise DFFError(f"config field {where}: must be a list, got {_shown(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        low, high = (1, MAX_CLASSES) if where == "class_names" else LENGTHS[where]
        if not low <= len(value) <= high:
            raise DFFError(f"config field {where}: must hold {low} to {high} values, got {len(value)}")
        items = tuple(_value(where, v, args[0]) for v in value)
        if where == "class_names" and len(set(items)) != len(items):
            twice = sorted({n for n in items if items.count(n) > 1})
            raise DFFError(f"config field {where}: names a class twice ({', '.join(twice[:3])})")
        return items
    if len(value) != len(args):
        raise DFFError(f"config field {where}: must be a list of {len(args)} numbers, got {_shown(value)}")
    return tuple(_value(where, v, a) for v, a in zip(value, args))


def _read(cls: type, d: object, prefix: str) -> object:
    """An instance of the config dataclass `cls` from the dict `d`, every field checked (see DFFConfig.from_dict)."""
    if not isinstance(d, dict):
        what = f"config field {prefix[:-1]}" if prefix else "config"
        raise DFFError(f"{what}: must be a JSON object, got {_shown(d)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names), key=str)
    if unknown:
        raise DFFError(f"config has an unknown field {prefix}{unknown[0]}")
    kwargs = {}
    for name in names:
        where = prefix + name
        if name not in d:
            if where in ADDED_LATER:
                continue
            raise DFFError(f"config field {where} is missing")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _read(hint, d[name], f"{where}.")
        else:
            kwargs[name] = _value(where, d[name], hint)
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
